"""Benchmark the WKV7 back ends: forward + backward at the seed's shape (B=256, T=128, H=2, N=16).

Back ends run interleaved (one repeat of each in turn), so background load on a shared machine
hits them alike; we report medians. Usage::

    python benchmarks/bench_wkv7.py [--repeats 7] [--ref-repeats 3] [--backends reference,chunked,cpp,cpp@1]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import time
import warnings

warnings.filterwarnings("ignore", message=".*ccache.*")
import numpy as np  # noqa: E402
import paddle  # noqa: E402

from seqlab.ops import wkv7  # noqa: E402
from seqlab.ops._build import num_threads  # noqa: E402


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def make_inputs(B, T, H, N, seed=0):
    rng = np.random.default_rng(seed)
    shape = (B, T, H, N)
    w = np.exp(-np.exp(-0.6065 - np.logaddexp(0, -rng.normal(-1.0, 2.0, shape))))
    q, k, v = (rng.normal(size=shape) for _ in range(3))
    kk = rng.normal(size=shape)
    kk /= np.linalg.norm(kk, axis=-1, keepdims=True)
    iclr = 1 / (1 + np.exp(-rng.normal(size=shape)))
    xs = [paddle.to_tensor(x.astype("float32"), stop_gradient=False) for x in (w, q, k, v, -kk, kk * iclr)]
    dy = paddle.to_tensor(rng.normal(size=shape).astype("float32"))
    return xs, dy


def fwd_bwd_ms(backend, xs, dy) -> tuple[float, float]:
    """One forward + backward -> (wall ms, process CPU ms).

    ``cpp@1`` means the cpp back end with SEQLAB_NUM_THREADS=1. CPU time barely depends on
    what else runs on the machine, so for single-threaded runs it is the steadier measure.
    """
    name, _, threads = backend.partition("@")
    old = os.environ.get("SEQLAB_NUM_THREADS")
    if threads:
        os.environ["SEQLAB_NUM_THREADS"] = threads
    try:
        c0, t0 = time.process_time(), time.perf_counter()
        y = wkv7(*xs, backend=name)
        paddle.grad([y], xs, [dy])
        return (time.perf_counter() - t0) * 1e3, (time.process_time() - c0) * 1e3
    finally:
        if threads:
            if old is None:
                os.environ.pop("SEQLAB_NUM_THREADS")
            else:
                os.environ["SEQLAB_NUM_THREADS"] = old


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shape", default="256,128,2,16", help="B,T,H,N")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--ref-repeats", type=int, default=3)
    p.add_argument(
        "--backends", default="reference,chunked,cpp,cpp@1", help="comma list; cpp@1 = cpp with SEQLAB_NUM_THREADS=1"
    )
    args = p.parse_args()
    B, T, H, N = (int(x) for x in args.shape.split(","))
    backends = args.backends.split(",")

    paddle.set_device("cpu")
    print(f"date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}")
    print(
        f"cpu: {cpu_model()}; cores usable: {len(os.sched_getaffinity(0))}; "
        f"op threads: {num_threads()}; paddle {paddle.__version__}; python {platform.python_version()}"
    )
    print(f"shape B={B} T={T} H={H} N={N} float32, forward+backward (all six input grads)")
    print(f"load average before: {os.getloadavg()[0]:.2f} (other users of this machine)")
    xs, dy = make_inputs(B, T, H, N)
    times: dict[str, list[float]] = {b: [] for b in backends}
    cpu: dict[str, list[float]] = {b: [] for b in backends}
    for b in backends:  # warm-up (builds/loads the C++ op)
        fwd_bwd_ms(b, xs, dy)
    for r in range(max(args.repeats, args.ref_repeats)):
        for b in backends:
            if b == "reference" and r >= args.ref_repeats:
                continue
            if b != "reference" and r >= args.repeats:
                continue
            wall, cpu_ms = fwd_bwd_ms(b, xs, dy)
            times[b].append(wall)
            cpu[b].append(cpu_ms)
    med = {b: statistics.median(ts) for b, ts in times.items()}
    cmed = {b: statistics.median(ts) for b, ts in cpu.items()}
    print("wall time:")
    for b in backends:
        ts = times[b]
        line = f"{b:>10}: median {med[b]:9.2f} ms  (min {min(ts):.2f}, max {max(ts):.2f}, n={len(ts)})"
        if "reference" in med and b != "reference":
            line += f"   {med['reference'] / med[b]:7.1f}x faster than reference"
        print(line)
    print("process CPU time (all threads summed; fair for single-threaded runs):")
    for b in backends:
        line = f"{b:>10}: median {cmed[b]:9.2f} ms"
        if "reference" in cmed and b != "reference":
            line += f"   {cmed['reference'] / cmed[b]:7.1f}x less CPU than reference"
        print(line)
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
