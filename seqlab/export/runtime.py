"""Run an export of ``seqlab export`` in the runtime it was written for: what a server does.

::

    from seqlab.export.runtime import load_export
    exported = load_export("exports/rwkv7")            # reads seqlab-export.json
    logits, = exported.run("full", {"tokens": ids})    # int64 [B, T] -> float32 [B, T, V]
    exported.greedy([[1, 2, 3, 10]], max_new_tokens=4, stop_token=11)   # through the step graph

A ``paddle`` export runs in Paddle Inference (``paddle.inference``), an ``onnx`` one in
onnxruntime. Neither needs seqlab's models or C++ ops: only the files of the export folder and
the shapes ``seqlab-export.json`` records. The step protocol is the same for every model: feed
``tokens`` (one per sequence), the state inputs (zeros before the first token) and ``position``
where the graph has one (0 first); each output ``new_X`` is the next step's input ``X``, and
``position`` grows by one.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from seqlab.errors import SeqlabError

META = "seqlab-export.json"


class _PaddleGraph:
    """One graph in Paddle Inference (CPU)."""

    def __init__(self, folder: Path, name: str, threads: int | None):
        from paddle import inference

        config = inference.Config(str(folder / f"{name}.json"), str(folder / f"{name}.pdiparams"))
        config.disable_gpu()
        config.disable_glog_info()  # one line per optimisation pass otherwise
        # oneDNN (on by default in the CPU build) made RWKV-7's exported step several times
        # slower at batch 1, where its per-op set-up dominates: the measurement is in
        # benchmarks/RESULTS.md, "Export and serve".
        config.disable_mkldnn()
        if threads:
            config.set_cpu_math_library_num_threads(threads)
        self.predictor = inference.create_predictor(config)
        self.inputs = self.predictor.get_input_names()
        self.outputs = self.predictor.get_output_names()

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        for name in self.inputs:
            handle = self.predictor.get_input_handle(name)
            value = np.ascontiguousarray(feeds[name])
            handle.reshape(list(value.shape))
            handle.copy_from_cpu(value)
        self.predictor.run()
        return [self.predictor.get_output_handle(name).copy_to_cpu() for name in self.outputs]


class _OnnxGraph:
    """One graph in onnxruntime (CPU execution provider)."""

    def __init__(self, folder: Path, name: str, threads: int | None):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3  # paddle2onnx leaves unused constants, which ORT lists
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            str(folder / f"{name}.onnx"), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self.inputs = [i.name for i in self.session.get_inputs()]

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self.session.run(None, {name: feeds[name] for name in self.inputs})


class Export:
    """An export folder, loaded: its metadata and a runtime session per graph.

    Attributes:
        folder: the export folder.
        meta: ``seqlab-export.json``, as a dict.
    """

    def __init__(self, folder: str | Path, threads: int | None = None):
        self.folder = Path(folder)
        try:
            self.meta = json.loads((self.folder / META).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise SeqlabError(
                f"'{self.folder}' is not a seqlab export ({META} unreadable: {exc.__class__.__name__}); "
                "write one with `seqlab export`."
            ) from None
        runtime = {"paddle": _PaddleGraph, "onnx": _OnnxGraph}[self.meta["format"]]
        self._graphs = {name: runtime(self.folder, name, threads) for name in self.meta["graphs"]}

    def has(self, graph: str) -> bool:
        return graph in self._graphs

    def run(self, graph: str, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Run ``graph`` (``full`` or ``step``) on ``feeds`` (by input name); the outputs in order."""
        return self._graphs[graph].run(feeds)

    def start(self, batch_size: int) -> dict[str, np.ndarray]:
        """The step graph's inputs other than ``tokens`` before the first token: zeros."""
        feeds = {}
        for spec in self.meta["graphs"]["step"]["inputs"]:
            if spec["name"] != "tokens":
                shape = [batch_size if d == "batch" else d for d in spec["shape"]]
                feeds[spec["name"]] = np.zeros(shape, dtype=spec["dtype"])
        return feeds

    def step(self, tokens: np.ndarray, feeds: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """One token per sequence through the step graph: ``(logits [B, V], the next feeds)``."""
        outs = self.run("step", {**feeds, "tokens": np.ascontiguousarray(tokens, dtype=np.int64)})
        names = [spec["name"] for spec in self.meta["graphs"]["step"]["outputs"]]
        nxt = {name.removeprefix("new_"): value for name, value in zip(names[1:], outs[1:])}
        if "position" in feeds:
            nxt["position"] = feeds["position"] + 1
        return outs[0], nxt

    def greedy(self, prompts: list[list[int]], max_new_tokens: int, stop_token: int | None = None) -> list[list[int]]:
        """Greedy continuations through the step graph, the prompts decoded in lockstep as
        :func:`seqlab.generate.generate` decodes them (a sequence generates once its prompt is read)."""
        lengths = [len(p) for p in prompts]
        total = max(lengths) + max_new_tokens - 1
        tokens = np.zeros((len(prompts), total), dtype=np.int64)
        for i, prompt in enumerate(prompts):
            tokens[i, : len(prompt)] = prompt
        outs: list[list[int]] = [[] for _ in prompts]
        done = [False] * len(prompts)
        feeds = self.start(len(prompts))
        for t in range(total):
            logits, feeds = self.step(tokens[:, t], feeds)
            for i in range(len(prompts)):
                if done[i] or t < lengths[i] - 1:
                    continue
                token = int(np.argmax(logits[i]))
                outs[i].append(token)
                if t + 1 < total:
                    tokens[i, t + 1] = token
                done[i] = len(outs[i]) == max_new_tokens or token == stop_token
            if all(done):
                break
        return outs


def load_export(folder: str | Path, threads: int | None = None) -> Export:
    """Load the export in ``folder`` into its runtime (``threads``: CPU threads per graph; None:
    the runtime's default)."""
    return Export(folder, threads)
