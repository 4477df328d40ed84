"""Training throughput of 1 process against 2 data-parallel processes (gloo), through the CLI.

    python benchmarks/bench_distributed.py [--models rwkv7,mlp] [--steps 60] [--repeats 3]

Each measurement is a real `seqlab fit --trainer.devices N` of the CPU recipe's task (rows of
129 tokens, the recipe's batch as the global batch), and its throughput is the run's own
tokens_per_s from metrics.json (time inside training steps, all ranks' tokens). 1- and 2-process
runs alternate, and the table gives medians and the 2-vs-1 ratio. On a machine with 2 cores,
2 processes each with 1 thread compete with 1 process that may use both cores: expect little gain.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def fit(model: str, devices: int, steps: int, batch: int, root: Path, threads: int) -> float:
    env = dict(os.environ, PYTHONWARNINGS="ignore", SEQLAB_NUM_THREADS=str(threads))
    cmd = [
        sys.executable,
        "-m",
        "seqlab.cli",
        "fit",
        "--recipe",
        str(ROOT / "recipes/reverse_digits_cpu.yaml"),
        "--runs",
        model,
        "--parallel",
        "1",
        "--trainer.max_steps",
        str(steps),
        "--trainer.val_every",
        "0",
        "--trainer.save_every",
        "0",
        "--task.init_args.batch_size",
        str(batch),
        "--trainer.devices",
        str(devices),
        "--trainer.root_dir",
        str(root),
        "--no_report",
    ]
    subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    metrics = json.loads((root / "reverse_digits_cpu" / model / "metrics.json").read_text())
    return float(metrics["tokens_per_s"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="rwkv7,mlp,transformer")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch", type=int, default=32, help="global batch (rows of 129 tokens)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    cores = os.cpu_count()
    print(f"{cores} CPU cores; {args.steps} steps of {args.batch} rows; medians of {args.repeats} alternating runs\n")
    print(
        f"| model | 1 process, {cores} threads (tok/s) | 1 process, 1 thread (tok/s) | 2 processes, 1 thread each (tok/s) | 2 proc / best 1 proc |"
    )
    print("|---|---:|---:|---:|---:|")
    for model in args.models.split(","):
        got: dict[str, list[float]] = {"1x": [], "1x1": [], "2x1": []}
        for r in range(args.repeats):
            with tempfile.TemporaryDirectory() as tmp:
                got["1x"].append(fit(model, 1, args.steps, args.batch, Path(tmp) / "a", cores))
                got["1x1"].append(fit(model, 1, args.steps, args.batch, Path(tmp) / "b", 1))
                got["2x1"].append(fit(model, 2, args.steps, args.batch, Path(tmp) / "c", 1))
        med = {k: statistics.median(v) for k, v in got.items()}
        best_one = max(med["1x"], med["1x1"])
        print(
            f"| {model} | {med['1x']:,.0f} | {med['1x1']:,.0f} | {med['2x1']:,.0f} | {med['2x1'] / best_one:.2f}x |",
            flush=True,
        )


if __name__ == "__main__":
    main()
