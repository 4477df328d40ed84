"""Benchmark the fused RWKV-7 block ops against the Paddle formulas they replace (CPU).

Forward + backward at the seed's shapes (B=256, T=128, C=32), ops interleaved, medians::

    python benchmarks/bench_fused.py [--repeats 9]
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import sys
import time
import warnings

warnings.filterwarnings("ignore", message=".*ccache.*")
import paddle  # noqa: E402
import paddle.nn.functional as F  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_wkv7 import cpu_model  # noqa: E402

from seqlab.ops._build import num_threads  # noqa: E402
from seqlab.ops.fused import l2_normalize, squared_relu, token_shift_mix  # noqa: E402


def timed(fn, inputs) -> float:
    t0 = time.perf_counter()
    y = fn(*inputs)
    paddle.grad([y], inputs, [paddle.ones_like(y)])
    return (time.perf_counter() - t0) * 1e3


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=9)
    args = p.parse_args()
    paddle.set_device("cpu")
    paddle.set_flags({"FLAGS_use_stride_kernel": False})  # as seqlab configures CPU runs
    B, T, C, K = 256, 128, 32, 6
    print(f"date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}")
    print(
        f"cpu: {cpu_model()}; cores usable: {len(os.sched_getaffinity(0))}; op threads: "
        f"{num_threads()}; paddle {paddle.__version__}; load average {os.getloadavg()[0]:.2f}"
    )

    x = paddle.randn([B, T, C])
    x.stop_gradient = False
    params = [paddle.rand([1, 1, C]) for _ in range(K)]  # the seed's x_r, x_w, x_k, x_v, x_a, x_g
    for q in params:
        q.stop_gradient = False
    mixes = paddle.rand([K, C])
    mixes.stop_gradient = False
    h = paddle.randn([B, T, 4 * C])
    h.stop_gradient = False
    kk = paddle.randn([B, T, 2, 16])
    kk.stop_gradient = False

    def seed_token_shift(x, *ps):  # the seed: six broadcast multiplies by [1,1,C] parameters
        xx = F.pad(x, [1, 0], data_format="NLC")[:, :-1] - x
        return paddle.stack([x + xx * q for q in ps])

    cases = {
        f"token_shift K={K} [paddle, seed formula]": (seed_token_shift, [x, *params]),
        f"token_shift K={K} [fused C++]": (lambda x, m: token_shift_mix(x, m), [x, mixes]),
        "token_shift K=1 [paddle, seed formula]": (seed_token_shift, [x, params[0]]),
        "token_shift K=1 [fused C++]": (lambda x, m: token_shift_mix(x, m), [x, mixes[:1].detach()]),
        "relu(x)**2 [paddle pow]": (lambda t: paddle.pow(F.relu(t), 2), [h]),
        "relu(x)**2 [paddle r*r]": (lambda t: F.relu(t) * F.relu(t), [h]),
        "relu(x)**2 [fused C++]": (squared_relu, [h]),
        "normalize [paddle F.normalize]": (lambda t: F.normalize(t, axis=-1), [kk]),
        "normalize [fused C++]": (l2_normalize, [kk]),
    }
    cases["token_shift K=1 [fused C++]"][1][1].stop_gradient = False
    times = {name: [] for name in cases}
    for name, (fn, inp) in cases.items():
        timed(fn, inp)  # warm-up / build
    for _ in range(args.repeats):
        for name, (fn, inp) in cases.items():
            times[name].append(timed(fn, inp))
    print(f"forward+backward, B={B} T={T} C={C}, median of {args.repeats}:")
    for name, ts in times.items():
        print(f"  {name:<40} {statistics.median(ts):8.2f} ms   (min {min(ts):.2f})")


if __name__ == "__main__":
    main()
