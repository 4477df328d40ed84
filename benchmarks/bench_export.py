"""Per-token latency of RWKV-7's exported step graph in onnxruntime and Paddle Inference, against
seqlab's own steps, at batch 1, side by side in one process.

    python benchmarks/bench_export.py                       # the RESULTS.md run
    python benchmarks/bench_export.py --settings default --rounds 5

Paths, per setting:

* ``seqlab step (fused C++)``: ``RWKV7.step`` under ``no_grad``, the one-op C++ step seqlab's
  ``generate`` and ``seqlab predict`` use on CPU;
* ``seqlab step_plain (eager)``: the same maths in Paddle's eager ops, the form the export traces;
* ``Paddle Inference``: the ``paddle`` export's step graph through ``seqlab.export.runtime``
  (``paddle.inference`` predictor, IR optimisation on, the state copied in and out as numpy);
* ``onnxruntime``: the ``onnx`` export's step graph (CPU execution provider), the same way.

The exports are written by :func:`seqlab.export.export_model` from a freshly initialised model
(latency does not depend on the weights' values), into a temporary folder. The paths alternate
in blocks of ``--block`` steps, round after round (the order rotated each round); the first
``--settle`` steps of a block are not counted (caches re-warm after a switch). Medians of the
rest, as the process's CPU time (``time.process_time``: the work of a step on all of the
process's threads, less sensitive than wall time to what the shared machine does meanwhile) and
as wall time. One thread everywhere (``--threads``): Paddle's CPU
math, seqlab's C++ ops, each Paddle Inference predictor and each onnxruntime session.

Settings: ``default`` (the seed's 2 layers, C = 32) and ``wide`` (4 layers, C = 256, 4 heads of
64, LoRA ranks 32/32/32/64), as in ``bench_generate.py``. The state bytes are the float32 state
one sequence carries between steps (``[1, n_layer, 2C + H N^2]``), the same in every path.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

import seqlab  # noqa: E402,F401  (quiet Paddle import)
from seqlab._paddle import configure_cpu_defaults, import_paddle  # noqa: E402

paddle = import_paddle()

SETTINGS = {
    "default": {},
    "wide": dict(n_layer=4, n_embd=256, head_size=64, rank_w=32, rank_a=32, rank_v=32, rank_g=64),
}


def _timed(fn):
    """(wall seconds, the process's CPU seconds, result). Process CPU time, not this thread's:
    Paddle Inference runs part of a step on threads of its own, even with one math thread
    (its thread time was ~60% of its process time here)."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, out


def _fmt_bytes(n: int) -> str:
    return f"{n / 1024:.2f} KiB" if n >= 1024 else f"{n} B"


def paths_for(setting: str, folder: Path, threads: int):
    """The four step paths of one setting: name -> (step(token) -> logits), and the state bytes."""
    from seqlab.export import export_model
    from seqlab.export.runtime import load_export
    from seqlab.models.rwkv7 import RWKV7

    paddle.seed(0)
    model = RWKV7(**SETTINGS[setting])
    model.eval()
    for fmt in ("paddle", "onnx"):
        export_model(model, folder / f"{setting}-{fmt}", fmt)
    exports = {fmt: load_export(folder / f"{setting}-{fmt}", threads=threads) for fmt in ("paddle", "onnx")}

    def seqlab_step(step):
        state = [model.init_state(1)]
        token = paddle.to_tensor([1], dtype="int64")

        def run():
            logits, state[0] = step(token, state[0])
            return logits

        return run

    def exported(ex):
        feeds = [ex.start(1)]
        token = np.array([1], dtype=np.int64)

        def run():
            logits, feeds[0] = ex.step(token, feeds[0])
            return logits

        return run

    paths = {
        "seqlab step (fused C++)": seqlab_step(model.step),
        "seqlab step_plain (eager)": seqlab_step(model.step_plain),
        "Paddle Inference": exported(exports["paddle"]),
        "onnxruntime": exported(exports["onnx"]),
    }
    state_bytes = int(model.init_state(1).numel()) * 4
    return paths, state_bytes, model.num_parameters()


def measure(paths: dict, rounds: int, block: int, settle: int) -> dict:
    times = {name: ([], []) for name in paths}
    names = list(paths)
    with paddle.no_grad():
        for fn in paths.values():  # first calls build kernels and caches
            for _ in range(5):
                fn()
        for r in range(rounds):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                for i in range(block):
                    wall, cpu, _ = _timed(paths[name])
                    if i >= settle:
                        times[name][0].append(cpu)
                        times[name][1].append(wall)
    return {name: (statistics.median(c) * 1e3, statistics.median(w) * 1e3, len(c)) for name, (c, w) in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", default="default,wide")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--block", type=int, default=20)
    parser.add_argument("--settle", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    os.environ["SEQLAB_NUM_THREADS"] = str(args.threads)
    paddle.base.core.set_num_threads(args.threads)
    configure_cpu_defaults(paddle)  # what a seqlab run sets (strided-view kernels off)
    import onnxruntime
    import paddle2onnx

    start = time.time()
    print(
        f"# bench_export {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}; "
        f"Python {platform.python_version()}, Paddle {paddle.__version__}, paddle2onnx {paddle2onnx.__version__}, "
        f"onnxruntime {onnxruntime.__version__}; threads {args.threads}; rounds {args.rounds}, "
        f"blocks of {args.block} (first {args.settle} not counted)"
    )
    print("\n| setting | params | path | ms/token CPU | ms/token wall | vs fused step (CPU) | state bytes |")
    print("|---|---:|---|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for setting in args.settings.split(","):
            paths, state_bytes, params = paths_for(setting, Path(tmp), args.threads)
            results = measure(paths, args.rounds, args.block, args.settle)
            base = results["seqlab step (fused C++)"][0]
            for name, (cpu, wall, n) in results.items():
                print(
                    f"| {setting} | {params:,} | {name} | {cpu:.3f} | {wall:.3f} | {cpu / base:.1f}x | "
                    f"{_fmt_bytes(state_bytes)} |"
                )
            sys.stdout.flush()
    print(f"\n# {time.time() - start:.0f} s, load {os.getloadavg()[0]:.1f} at the end; {n} timed steps per path")


if __name__ == "__main__":
    main()
