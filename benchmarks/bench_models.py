"""Training-step time of every registered model at the seed's shape (B = 256, T = 128).

One step = forward + cross-entropy + backward + AdamW step, on a fixed random batch. Models are
interleaved (round r times every model once), so load from other processes on a shared machine
hits all of them alike; each figure is the median over the timed rounds.

    python benchmarks/bench_models.py                      # all models, 2 warmup + 5 timed rounds
    python benchmarks/bench_models.py --models rwkv7,transformer --repeats 9
    python benchmarks/bench_models.py --with-reference     # adds rwkv7 on the Python-loop WKV7
    python benchmarks/bench_models.py --models rwkv7,transformer --with-unfused  # + fused_ops=False

Prints machine info, then a Markdown table (ready for benchmarks/RESULTS.md) with s/step and
tokens/s side by side, each model's time relative to the Transformer, and for rwkv7 (with
``--with-reference``) its speedup over the reference WKV7 back end.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import time

import numpy as np
import paddle
import paddle.nn.functional as F

import seqlab  # noqa: F401  (quiet Paddle import)
from seqlab import MODELS
from seqlab._paddle import configure_cpu_defaults
from seqlab.ops._build import num_threads
from seqlab.registry import missing_requirement


def machine_info() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    stride = paddle.get_flags(["FLAGS_use_stride_kernel"])["FLAGS_use_stride_kernel"]
    return (
        f"date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}\n"
        f"machine: {platform.node()} {platform.system()} {platform.machine()}, {cpu}, "
        f"{os.cpu_count()} logical CPUs, load average {load}\n"
        f"python {platform.python_version()}, paddle {paddle.__version__} "
        f"({'CUDA' if paddle.is_compiled_with_cuda() else 'CPU'} build, device {paddle.get_device()}), "
        f"FLAGS_use_stride_kernel={stride}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, "
        f"seqlab C++ op threads={num_threads()}"
    )


class Runner:
    """One model, its optimizer and a fixed batch; ``step()`` times one training step."""

    def __init__(self, label: str, name: str, init_args: dict, batch_size: int, seq_len: int):
        paddle.seed(0)
        self.label, self.name = label, name
        self.model = MODELS.get(name)(**init_args)
        self.model.train()
        self.params = self.model.num_parameters()
        self.vocab = int(getattr(self.model, "vocab_size", 12))
        rng = np.random.default_rng(0)
        data = paddle.to_tensor(rng.integers(0, self.vocab, (batch_size, seq_len + 1)), dtype="int64")
        self.x, self.y = data[:, :-1], data[:, 1:]
        groups = self.model.param_groups()
        self.opt = paddle.optimizer.AdamW(
            learning_rate=1e-3,
            parameters=[
                {"params": groups["decay"], "weight_decay": 0.1},
                {"params": groups["no_decay"], "weight_decay": 0.0},
            ],
        )
        self.times: list[float] = []

    def step(self) -> float:
        t0 = time.perf_counter()
        logits = self.model(self.x)
        loss = F.cross_entropy(logits.reshape([-1, self.vocab]), self.y.reshape([-1]))
        loss.backward()
        self.opt.step()
        self.opt.clear_grad()
        loss.item()  # wait for the result (matters on GPU)
        return time.perf_counter() - t0


def time_interleaved(runners: list[Runner], warmup: int, repeats: int) -> dict[str, float]:
    """Round by round, one step of each runner (so load changes hit all alike); returns each
    runner's median s/step over the rounds after ``warmup``."""
    for r in range(warmup + repeats):
        for runner in runners:
            dt = runner.step()
            if r >= warmup:
                runner.times.append(dt)
        print(f"round {r + 1}/{warmup + repeats} done", file=sys.stderr, flush=True)
    return {runner.label: statistics.median(runner.times) for runner in runners}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="", help="comma-separated names (default: all registered)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--warmup", type=int, default=2, help="untimed rounds first")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds (median reported)")
    parser.add_argument("--wkv-backend", default=None, help="rwkv7's WKV7 back end (default: automatic)")
    parser.add_argument(
        "--with-reference",
        action="store_true",
        help="also time rwkv7 on the 'reference' (Python loop) WKV7 back end; slow, ~5 s/step",
    )
    parser.add_argument(
        "--with-unfused",
        action="store_true",
        help="also time rwkv7 with fused_ops=False (its plain Paddle formulas; ~1 s/step)",
    )
    args = parser.parse_args(argv)
    configure_cpu_defaults(paddle)  # what a Trainer run gets (stride kernels off on CPU)

    # By default every model that can be built here (the PaddleNLP plugins need their extra).
    names = [n.strip() for n in args.models.split(",") if n.strip()] or [
        n for n in MODELS.names() if not missing_requirement(MODELS.get(n))
    ]
    specs = []
    for name in names:
        init_args = {"wkv_backend": args.wkv_backend} if name == "rwkv7" and args.wkv_backend else {}
        specs.append((name, name, init_args))
    if args.with_unfused:
        specs.append(("rwkv7 [unfused]", "rwkv7", {"fused_ops": False}))
    if args.with_reference:
        specs.append(("rwkv7 [reference wkv7]", "rwkv7", {"wkv_backend": "reference"}))

    print(machine_info())
    if "rwkv7" in names:
        from seqlab.ops.wkv7 import resolve_backend

        print(f"rwkv7 WKV7 back end: {resolve_backend(args.wkv_backend)}")
    print(
        f"shape: B={args.batch_size}, T={args.seq_len}; {args.warmup} warmup + {args.repeats} timed "
        f"rounds, models interleaved; median s/step\n",
        flush=True,
    )

    runners = [Runner(label, name, init, args.batch_size, args.seq_len) for label, name, init in specs]
    median = time_interleaved(runners, args.warmup, args.repeats)

    tokens = args.batch_size * args.seq_len
    base = median.get("transformer")
    print("| model | params | s/step (median) | min | tokens/s | time vs transformer |")
    print("|---|---:|---:|---:|---:|---:|")
    for rn in runners:
        m = median[rn.label]
        rel = f"{m / base:.2f}x" if base else "n/a"
        print(f"| {rn.label} | {rn.params:,} | {m:.3f} | {min(rn.times):.3f} | {tokens / m:,.0f} | {rel} |")
    if "rwkv7" in median and base:
        print(f"\nrwkv7 / transformer step time: {median['rwkv7'] / base:.2f}")
    ref = median.get("rwkv7 [reference wkv7]")
    if "rwkv7" in median and ref:
        print(f"rwkv7 speedup over the reference WKV7 back end: {ref / median['rwkv7']:.1f}x")
    unfused = median.get("rwkv7 [unfused]")
    if "rwkv7" in median and unfused:
        print(f"rwkv7 speedup of the fused ops over its plain Paddle formulas: {unfused / median['rwkv7']:.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
