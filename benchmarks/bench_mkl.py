"""MKL's generic kernels against its AVX2 kernels on this CPU: one training step per model.

    python benchmarks/bench_mkl.py [--models transformer,mlp,rwkv7,lstm] [--repeats 3]

Paddle's CPU wheel ships MKL 2019, which picks its generic kernels on AMD CPUs unless
``MKL_DEBUG_CPU_TYPE=5`` is set before its first call; seqlab sets it on AMD CPUs with AVX2
(seqlab/_paddle.py). MKL keeps what it read, so each measurement is a fresh
process (``--child``) timing one model's forward + backward + AdamW step (B=32, T=128, one
thread, CPU time, median of 8 steps after 2 warm-up steps); the two settings alternate, and the
table gives medians over the repeats and their ratio. The LSTM is Paddle's ``nn.LSTM``
(``fused_ops=False``): the fused op uses numpy's OpenBLAS, which this switch does not touch.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys


def child(name: str) -> None:
    import time

    avx2 = os.environ.get("MKL_DEBUG_CPU_TYPE")  # what the parent chose
    import paddle

    import seqlab  # noqa: F401
    from seqlab._paddle import configure_cpu_defaults

    # MKL reads the switch at its first call, not when Paddle loads it, and importing seqlab sets
    # it on AMD CPUs: put back the parent's choice before the first matrix product.
    if avx2 is None:
        os.environ.pop("MKL_DEBUG_CPU_TYPE", None)
    from seqlab.registry import MODELS
    from seqlab.tasks.reverse_digits import ReverseDigits

    configure_cpu_defaults(paddle)
    paddle.seed(0)
    model = MODELS.get(name)(**({"fused_ops": False} if name == "lstm" else {}))
    optimizer = paddle.optimizer.AdamW(parameters=model.parameters())
    task = ReverseDigits(batch_size=32)
    task.setup(0)
    batch = task.train_batch(0)
    times = []
    for _ in range(10):
        start = time.process_time()
        task.loss(model(batch.inputs), batch).backward()
        optimizer.step()
        optimizer.clear_grad()
        times.append(time.process_time() - start)
    print(statistics.median(times[2:]))


def measure(name: str, avx2: bool) -> float:
    env = dict(os.environ, OMP_NUM_THREADS="1", SEQLAB_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    env.pop("MKL_DEBUG_CPU_TYPE", None)
    if avx2:
        env["MKL_DEBUG_CPU_TYPE"] = "5"
    out = subprocess.run(
        [sys.executable, __file__, "--child", name], capture_output=True, text=True, env=env, check=True
    )
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="transformer,transformer_modern,mlp,rwkv7,lstm")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    print("| model | MKL's default (CPU s/step) | MKL_DEBUG_CPU_TYPE=5 (CPU s/step) | speed-up |")
    print("|---|---:|---:|---:|")
    for name in args.models.split(","):
        runs = {False: [], True: []}
        for _ in range(args.repeats):
            for avx2 in (False, True):
                runs[avx2].append(measure(name, avx2))
        base, fast = statistics.median(runs[False]), statistics.median(runs[True])
        print(f"| {name} | {base:.4f} | {fast:.4f} | {base / fast:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
