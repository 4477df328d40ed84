"""Deploy a trained model: its static graphs for Paddle Inference or ONNX, checked before they are kept.

::

    from seqlab.export import export_model
    meta = export_model(model, "exports/rwkv7", "paddle", info={"model": {...}, "checkpoint": {...}})

:func:`export_model` traces every graph of :mod:`seqlab.export.graphs` (``full``: tokens ->
logits; ``step``: one token + state -> logits + state) with ``paddle.jit.save`` and, for
``onnx``, converts each with paddle2onnx. Before anything is kept it loads each graph in its
runtime (:mod:`seqlab.export.runtime`) and compares the logits with the model's own (its
default form, fused C++ ops included) on a fixed batch; a difference above :data:`TOLERANCE`
fails the export. The folder is built beside ``output`` and renamed into place only when all of
that passed, so a failed export writes nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import sys
import warnings
from pathlib import Path

import numpy as np
import paddle

from seqlab.errors import SeqlabError, first_line
from seqlab.evaluation import inference_mode
from seqlab.export.graphs import Graph, graphs_of
from seqlab.export.runtime import META, load_export

FORMATS = ("paddle", "onnx")
#: Largest |logit difference| an export may show against the model it came from (float32).
TOLERANCE = 1e-4
#: The ONNX opset paddle2onnx writes (onnxruntime 1.32 runs it).
OPSET = 17
#: The check batch: rows and (at most) tokens, drawn from a fixed seed.
CHECK_ROWS, CHECK_TOKENS = 2, 24
STEP_PROTOCOL = (
    "feed tokens (one per sequence) and the other inputs, zeros before the first token (position 0); "
    "each output new_X is the next step's input X, and position grows by one"
)
ONNX_EXTRA = "pip install 'seqlab[onnx]' (paddle2onnx and onnxruntime)"

log = logging.getLogger(__name__)

__all__ = ["FORMATS", "META", "TOLERANCE", "check_output", "export_model", "file_sha256", "load_export"]


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise SeqlabError(f"--format {fmt!r} is not an export format; use one of {', '.join(FORMATS)}.")
    if fmt == "onnx":
        try:
            import onnx  # noqa: F401
            import onnxruntime  # noqa: F401
            import paddle2onnx  # noqa: F401
        except ImportError as exc:
            raise SeqlabError(f"--format onnx needs {exc.name}, which is not installed: {ONNX_EXTRA}.") from None
    return fmt


def check_output(output: str | os.PathLike, overwrite: bool) -> Path:
    """``output`` may be written: it does not exist, or ``overwrite`` and it is an earlier export
    (or an empty folder). Anything else is left alone, with one sentence saying why."""
    output = Path(output)
    if not output.exists():
        return output
    if not overwrite:
        raise SeqlabError(
            f"--output {output} already exists; pass --overwrite to replace it, or choose another folder."
        )
    if not output.is_dir() or (any(output.iterdir()) and not (output / META).is_file()):
        raise SeqlabError(
            f"--output {output} exists and is not a seqlab export (no {META}), so --overwrite "
            "will not replace it; choose another folder."
        )
    return output


def export_model(
    model,
    output: str | os.PathLike,
    fmt: str,
    info: dict | None = None,
    cache_len: int | None = None,
    overwrite: bool = False,
) -> dict:
    """Write ``model``'s graphs to the folder ``output`` in format ``fmt`` (``paddle`` | ``onnx``).

    ``info`` goes into ``seqlab-export.json`` as given (the model's name and settings, the
    vocabulary, the checkpoint). ``cache_len``: positions of an exported KV cache where the
    model has no limit of its own. Returns the metadata written. Raises :class:`SeqlabError`
    (nothing written) for a model seqlab cannot export, a graph the format cannot carry, or an
    export whose logits differ from the model's.
    """
    check_format(fmt)
    output = check_output(output, overwrite)
    graphs = graphs_of(model, cache_len)
    if graphs is None:
        raise SeqlabError(
            f"seqlab export knows no static graphs for model {type(model).__name__}; the built-in "
            "models (rwkv7, transformer, transformer_modern, lstm, mlp) can be exported."
        )
    created = next((p for p in reversed(output.absolute().parents) if not p.exists()), None)
    output.parent.mkdir(parents=True, exist_ok=True)
    work = output.parent / f".{output.name}.export-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    done = False
    try:
        with inference_mode(model), _native_stdout_to_stderr():
            tokens, expected = _check_batch(model, graphs)
            entries = {}
            for graph in graphs:
                _save_paddle(graph, work / "paddle" if fmt == "onnx" else work)
                entries[graph.name] = _entry(graph, fmt)
            if fmt == "onnx":
                _to_onnx(work, graphs)
                shutil.rmtree(work / "paddle")
            meta = {
                "seqlab_export": 1,
                "format": fmt,
                **(info or {}),
                "graphs": entries,
                "reference_form": (
                    "The graphs run Paddle's own ops: the model's plain-Paddle form, not seqlab's C++ ops "
                    "(the fused RWKV-7 ops, the C++ WKV7 and LSTM ops), which ONNX cannot carry and Paddle "
                    "Inference could run only with seqlab's compiled extension. max_abs_diff: the largest "
                    "logit difference against the trained model's own form on a fixed batch, in this runtime."
                ),
                "versions": _versions(fmt),
            }
            (work / META).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
            try:
                deltas = _check(work, tokens, expected)
            except SeqlabError:
                raise
            except Exception as exc:  # noqa: BLE001  (a runtime that rejects the graph, or fails running it)
                first = first_line(exc)
                raise SeqlabError(
                    f"the exported graphs do not run in the {fmt} runtime: {first}; nothing was written."
                ) from None
        for name, delta in deltas.items():
            meta["graphs"][name]["max_abs_diff"] = delta
        (work / META).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        _put_in_place(work, output)
        done = True
    except OSError as exc:  # a full disk, a quota, a folder not writable: nothing half-written stays
        raise SeqlabError(
            f"could not write the export in {output.parent}: {exc.strerror or exc}; nothing was written. "
            "Free some space or fix the folder's permissions, then run the command again."
        ) from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if not done and created is not None:  # parent folders made for this export only
            shutil.rmtree(created, ignore_errors=True)
    return meta


@contextlib.contextmanager
def _native_stdout_to_stderr():
    """paddle2onnx and Paddle Inference print progress from C++ to file descriptor 1, and Paddle
    from Python ("Compiling user custom op"); send both to stderr, so that stdout holds only
    what the command reports."""
    sys.stdout.flush()
    try:
        saved = os.dup(1)
    except OSError:  # no file descriptor 1 (embedded): only Python's stdout to redirect
        saved = None
    try:
        if saved is not None:
            os.dup2(2, 1)
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stdout.flush()
        if saved is not None:
            os.dup2(saved, 1)
            os.close(saved)


def _check_batch(model, graphs: list[Graph]):
    """A fixed batch of tokens and the model's own logits on it (before tracing touches it)."""
    vocab = graphs[0].outputs[0].shape[-1]
    length = CHECK_TOKENS
    for graph in graphs:
        if "capacity" in graph.notes:
            length = min(length, int(graph.notes["capacity"]))
    tokens = np.random.default_rng(0).integers(0, vocab, size=(CHECK_ROWS, length), dtype=np.int64)
    return tokens, model(paddle.to_tensor(tokens)).numpy()


def _save_paddle(graph: Graph, folder: Path) -> None:
    static = paddle.jit.to_static(graph.layer, input_spec=[t.spec() for t in graph.inputs], full_graph=True)
    try:
        with warnings.catch_warnings():
            # Paddle's own attention asks its inputs for a device while tracing; harmless.
            warnings.filterwarnings("ignore", message=".*'place' interface for pir graph mode.*")
            paddle.jit.save(static, str(folder / graph.name))
    except OSError:
        raise  # a full disk or a permission error is not a tracing failure: export_model says so
    except Exception as exc:  # dy2static's errors are long tracebacks; the first line says it
        first = first_line(exc)
        raise SeqlabError(f"Paddle could not trace the {graph.name} graph to a static program: {first}") from None


# paddle2onnx aborts the whole process (SIGABRT, no Python exception) on an operator it cannot
# convert, so it runs in a child process (one for all the graphs: each start imports Paddle),
# and the command can say which graph failed and exit 2. optimize_tool "none": paddle2onnx's
# default (polygraphy) pip-installs its missing dependencies at run time.
_CONVERT = """
import sys, paddle2onnx
opset, folder = int(sys.argv[1]), sys.argv[2]
for name in sys.argv[3:]:
    data = paddle2onnx.export(f"{folder}/paddle/{name}.json", f"{folder}/paddle/{name}.pdiparams", None,
                              opset_version=opset, enable_onnx_checker=True, optimize_tool="none")
    open(f"{folder}/{name}.p2o.onnx", "wb").write(data)
"""


def _to_onnx(folder: Path, graphs: list[Graph]) -> None:
    """Convert ``folder/paddle/<graph>.json`` to ``folder/<graph>.onnx`` for every graph."""
    import subprocess

    import onnx
    import paddle2onnx

    names = [g.name for g in graphs]
    child = subprocess.run(
        [sys.executable, "-c", _CONVERT, str(OPSET), str(folder), *names],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    for graph in graphs:
        raw = folder / f"{graph.name}.p2o.onnx"
        if not raw.is_file():
            output = child.stdout + child.stderr
            log.debug("paddle2onnx on the %s graph:\n%s", graph.name, output)
            ops = sorted(set(re.findall(r"\bpd_op\.\w+", output)) - {"pd_op.data", "pd_op.fetch"})
            why = (
                "it has operators paddle2onnx does not support" + (f" ({', '.join(ops)})" if ops else "")
                if "unsupported operator" in output
                else f"paddle2onnx stopped (exit {child.returncode})"
            )
            raise SeqlabError(
                f"the {graph.name} graph of this model cannot go to ONNX with paddle2onnx "
                f"{paddle2onnx.__version__}: {why}; export it with --format paddle instead."
            )
        proto = onnx.load(str(raw))
        raw.unlink()
        # Name the outputs as seqlab-export.json does (paddle2onnx calls them fetch_name_N).
        renames = {out.name: spec.name for out, spec in zip(proto.graph.output, graph.outputs)}
        for node in proto.graph.node:
            node.output[:] = [renames.get(n, n) for n in node.output]
            node.input[:] = [renames.get(n, n) for n in node.input]
        for out in proto.graph.output:
            out.name = renames[out.name]
        _drop_unused_initializers(proto.graph)
        onnx.save_model(proto, str(folder / f"{graph.name}.onnx"))


def _drop_unused_initializers(graph) -> set[str]:
    """Remove the nodes and constants nothing reads: paddle2onnx leaves hundreds of unused
    ``Constant`` nodes, and onnxruntime warns about each when it loads the model. Returns the
    names ``graph`` and its subgraphs read (a loop body may read the graph around it)."""
    while True:
        used = {out.name for out in graph.output}
        for node in graph.node:
            used.update(node.input)
            for attr in node.attribute:
                for sub in [attr.g] if attr.HasField("g") else list(attr.graphs):
                    used |= _drop_unused_initializers(sub)
        used.discard("")  # an omitted optional input
        keep = [node for node in graph.node if any(name in used for name in node.output)]
        if len(keep) == len(graph.node):
            break
        del graph.node[:]
        graph.node.extend(keep)
    kept = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    return used


def _entry(graph: Graph, fmt: str) -> dict:
    files = [f"{graph.name}.onnx"] if fmt == "onnx" else [f"{graph.name}.json", f"{graph.name}.pdiparams"]
    entry = {
        "files": files,
        "inputs": [t.as_dict() for t in graph.inputs],
        "outputs": [t.as_dict() for t in graph.outputs],
    }
    if fmt == "paddle":  # Paddle Inference names outputs by position
        for i, out in enumerate(entry["outputs"]):
            out["runtime_name"] = f"fetch_name_{i}"
    if graph.name == "step":
        entry["protocol"] = STEP_PROTOCOL
    if graph.notes:
        entry["notes"] = graph.notes
    return entry


def _check(folder: Path, tokens: np.ndarray, expected: np.ndarray) -> dict[str, float]:
    """Load the export in its runtime and compare its logits with the model's, graph by graph."""
    exported = load_export(folder)
    deltas = {"full": float(np.abs(exported.run("full", {"tokens": tokens})[0] - expected).max())}
    if exported.has("step"):
        feeds, worst = exported.start(tokens.shape[0]), 0.0
        for t in range(tokens.shape[1]):
            logits, feeds = exported.step(tokens[:, t], feeds)
            worst = max(worst, float(np.abs(logits - expected[:, t]).max()))
        deltas["step"] = worst
    for name, delta in deltas.items():
        if not delta <= TOLERANCE:  # NaN fails too
            raise SeqlabError(
                f"the exported {name} graph's logits differ from the model's by {delta:.3g} (more than "
                f"{TOLERANCE:g}), so the export was not written; please report it."
            )
    return deltas


def _versions(fmt: str) -> dict:
    import seqlab

    versions = {"seqlab": seqlab.__version__, "paddle": paddle.__version__}
    if fmt == "onnx":
        import onnxruntime
        import paddle2onnx

        versions.update(paddle2onnx=paddle2onnx.__version__, onnxruntime=onnxruntime.__version__, onnx_opset=OPSET)
    return versions


def _put_in_place(work: Path, output: Path) -> None:
    """Rename the finished folder to ``output`` (replacing an earlier export, already checked)."""
    old = None
    if output.exists():
        old = output.parent / f".{output.name}.old-{os.getpid()}"
        os.replace(output, old)
    try:
        os.replace(work, output)
    except OSError as exc:  # e.g. another export created `output` meanwhile: put the earlier one back
        if old is not None:
            os.replace(old, output)
        raise SeqlabError(f"could not move the export into {output}: {exc.strerror}; nothing was changed.") from None
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
