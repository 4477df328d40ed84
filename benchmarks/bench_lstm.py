"""Training step of the seed's 7 x 128 LSTM: the fused C++ op against Paddle's nn.LSTM, side by side.

One step = forward + cross-entropy + backward + AdamW step of ``LSTM()`` (vocab 12, embed 32,
7 x 128; 877,452 parameters) on a fixed random batch. The two variants hold the same weights and
run interleaved in one process (round r times each once), at the same thread count: Paddle's
math library threads (``paddle.base.core.set_num_threads``) and the seqlab op threads
(``SEQLAB_NUM_THREADS``) are both set to each count of ``--threads`` in turn. Each figure is the
median over the timed rounds; the fused variant's step is also split into forward (with the
loss), backward and optimizer.

    python benchmarks/bench_lstm.py                        # B=32, T=128, threads 1 and 2
    python benchmarks/bench_lstm.py --threads 1 --repeats 15
    python benchmarks/bench_lstm.py --profile fused        # paddle.profiler's op table instead
    python benchmarks/bench_lstm.py --only fused --threads 1 --repeats 30   # one variant (for perf)
    python benchmarks/bench_lstm.py --gemm                 # sgemm speeds: OpenBLAS vs Paddle's MKL

Prints machine info, then Markdown tables (ready for benchmarks/RESULTS.md): wall-clock and
process-CPU-time medians side by side (CPU time is less disturbed by other processes on a shared
machine), then each variant's step split into forward, backward and AdamW beside the GEMM floor:
the step's matrix-multiply FLOPs (LSTM layers + head) at 100 GFLOP/s per thread, about what one
core of the machine we measured on reached with OpenBLAS for large shapes.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np
import paddle
import paddle.nn.functional as F

import seqlab  # noqa: F401  (quiet Paddle import)
from seqlab._paddle import configure_cpu_defaults
from seqlab.models.lstm import LSTM

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_models import machine_info  # noqa: E402

GEMM_GFLOPS_PER_THREAD = 100.0


class Variant:
    """One LSTM model with its optimizer and batch; ``step()`` times one training step."""

    def __init__(self, label: str, fused: bool, state: dict | None, batch, vocab: int):
        paddle.seed(0)
        self.label = label
        self.model = LSTM(vocab_size=vocab, fused_ops=fused)
        if state is not None:
            self.model.set_state_dict(state)
        self.model.train()
        self.x, self.y = batch
        self.vocab = vocab
        groups = self.model.param_groups()
        self.opt = paddle.optimizer.AdamW(
            learning_rate=1e-3,
            parameters=[
                {"params": groups["decay"], "weight_decay": 0.1},
                {"params": groups["no_decay"], "weight_decay": 0.0},
            ],
        )
        self.times: list[tuple[float, float, float]] = []  # (forward + loss, backward, optimizer)
        self.cpu_times: list[float] = []  # process CPU seconds (all threads) per step

    def step(self) -> tuple[float, float, float]:
        c0 = time.process_time()
        t0 = time.perf_counter()
        logits = self.model(self.x)
        loss = F.cross_entropy(logits.reshape([-1, self.vocab]), self.y.reshape([-1]))
        loss.item()
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        self.opt.step()
        self.opt.clear_grad()
        t3 = time.perf_counter()
        self.last_cpu = time.process_time() - c0
        return t1 - t0, t2 - t1, t3 - t2


def step_gflop(model: LSTM, B: int, T: int) -> float:
    """Matrix-multiply GFLOP of one training step (forward 2mnk, backward twice that)."""
    flop, width = 0, model.embedding.weight.shape[1]
    for hidden in model.hidden_sizes:
        flop += 2 * B * T * 4 * hidden * (width + hidden)  # input projection + recurrence
        width = hidden
    flop += 2 * B * T * width * model.vocab_size  # head
    return 3 * flop / 1e9


def set_threads(n: int) -> None:
    os.environ["SEQLAB_NUM_THREADS"] = str(n)
    paddle.base.core.set_num_threads(n)


def run(threads: int, args, batch) -> tuple[Variant, Variant]:
    set_threads(threads)
    ref = Variant("nn.LSTM", False, None, batch, args.vocab)
    fused = Variant("fused", True, ref.model.state_dict(), batch, args.vocab)
    variants = [ref, fused]
    for r in range(args.warmup + args.repeats):
        for v in variants if r % 2 == 0 else variants[::-1]:
            dt = v.step()
            if r >= args.warmup:
                v.times.append(dt)
                v.cpu_times.append(v.last_cpu)
        print(f"threads={threads}: round {r + 1}/{args.warmup + args.repeats} done", file=sys.stderr, flush=True)
    return ref, fused


def profile(batch, args) -> None:
    """paddle.profiler's operator summary for a few steps of one variant (1 thread).

    One variant per process: Paddle allows one profiler session per process.
    """
    from paddle import profiler

    set_threads(1)
    fused = args.profile == "fused"
    v = Variant(args.profile, fused, None, batch, args.vocab)
    v.step()
    prof = profiler.Profiler(targets=[profiler.ProfilerTarget.CPU], on_trace_ready=lambda _: None)
    prof.start()
    for _ in range(3):
        v.step()
        prof.step()
    prof.stop()
    print(f"\n### paddle.profiler, {v.label}, 3 steps, 1 thread\n")
    prof.summary(sorted_by=profiler.SortedKeys.CPUTotal, op_detail=False, thread_sep=False, time_unit="ms")


def gemm_speeds(repeats: int = 7) -> None:
    """Single-thread sgemm GFLOP/s of numpy's OpenBLAS (the op's BLAS) and Paddle's MKL, at the
    LSTM's shapes (B=32, T=128, I=H=128), via ctypes; best of ``repeats`` (thread CPU time)."""
    import ctypes

    from seqlab.ops.lstm._blas import find_blas

    blas = find_blas()
    ob = ctypes.CDLL(str(blas.path))
    getattr(ob, blas.set_threads)(1)
    ob_gemm = getattr(ob, blas.sgemm)
    int_t = ctypes.c_int64 if blas.int64 else ctypes.c_int
    mkl = ctypes.CDLL(os.path.join(os.path.dirname(paddle.__file__), "libs", "libmklml_intel.so"))
    mkl.MKL_Set_Num_Threads(1)
    mkl_gemm = mkl.cblas_sgemm
    for fn, it in ((ob_gemm, int_t), (mkl_gemm, ctypes.c_int)):
        fn.argtypes = (
            [ctypes.c_int] * 3
            + [it] * 3
            + [ctypes.c_float, ctypes.c_void_p, it, ctypes.c_void_p, it, ctypes.c_float, ctypes.c_void_p, it]
        )
    row_major, no_t, t_ = 101, 111, 112
    shapes = [  # name, trans A, trans B, M, N, K, calls per timing
        ("input projection x W_ih^T", False, True, 4096, 512, 128, 1),
        ("dx = dPRE W_ih", False, False, 4096, 128, 512, 1),
        ("dW = dPRE^T X", True, False, 512, 128, 4096, 1),
        ("recurrent h W_hh^T (x128 steps)", False, True, 32, 512, 128, 128),
        ("recurrent dPRE W_hh (x128 steps)", False, False, 32, 128, 512, 128),
    ]
    rng = np.random.default_rng(0)
    print(
        f"OpenBLAS: {blas.path.name}; MKL: libmklml_intel.so, MKL_DEBUG_CPU_TYPE="
        f"{os.environ.get('MKL_DEBUG_CPU_TYPE', 'unset')}\n"
    )
    print("| GEMM | M x N x K | OpenBLAS GFLOP/s | Paddle's MKL GFLOP/s |")
    print("|---|---|---:|---:|")
    for name, ta, tb, m, n, k, calls in shapes:
        a = rng.standard_normal((k, m) if ta else (m, k)).astype(np.float32)
        b = rng.standard_normal((n, k) if tb else (k, n)).astype(np.float32)
        c = np.zeros((m, n), np.float32)
        speeds = []
        for fn in (ob_gemm, mkl_gemm):
            call_args = (
                row_major,
                t_ if ta else no_t,
                t_ if tb else no_t,
                m,
                n,
                k,
                1.0,
                a.ctypes.data,
                a.shape[1],
                b.ctypes.data,
                b.shape[1],
                0.0,
                c.ctypes.data,
                n,
            )

            def call():  # includes ctypes' per-call cost (~1-2 us), which flatters no one
                for _ in range(calls):
                    fn(*call_args)

            call()
            best = float("inf")
            for _ in range(repeats):
                t0 = time.thread_time()
                call()
                best = min(best, time.thread_time() - t0)
            speeds.append(2 * m * n * k * calls / best / 1e9)
        print(f"| {name} | {m} x {n} x {k} | {speeds[0]:.1f} | {speeds[1]:.1f} |")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--vocab", type=int, default=12)
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    parser.add_argument("--warmup", type=int, default=2, help="untimed rounds first")
    parser.add_argument("--repeats", type=int, default=9, help="timed rounds (median reported)")
    parser.add_argument(
        "--only",
        choices=["fused", "nn.LSTM"],
        help="time only this variant at the first thread count (e.g. under perf record)",
    )
    parser.add_argument(
        "--gemm",
        action="store_true",
        help="only time single-thread sgemm of numpy's OpenBLAS and Paddle's MKL at the op's shapes",
    )
    parser.add_argument(
        "--profile",
        choices=["fused", "nn.LSTM"],
        help="only print paddle.profiler's table for this variant (3 steps, 1 thread)",
    )
    args = parser.parse_args(argv)
    configure_cpu_defaults(paddle)  # what a Trainer run gets (stride kernels off on CPU)

    rng = np.random.default_rng(0)
    data = paddle.to_tensor(rng.integers(0, args.vocab, (args.batch_size, args.seq_len + 1)), dtype="int64")
    batch = data[:, :-1], data[:, 1:]
    print(machine_info())
    print(f"MKL_DEBUG_CPU_TYPE={os.environ.get('MKL_DEBUG_CPU_TYPE', 'unset')}")
    print(
        f"shape: B={args.batch_size}, T={args.seq_len}, LSTM 7 x 128; {args.warmup} warmup + "
        f"{args.repeats} timed rounds, variants interleaved; median s/step\n",
        flush=True,
    )

    if args.gemm:
        gemm_speeds()
        return 0
    if args.profile:
        profile(batch, args)
        return 0
    if args.only:
        threads = int(args.threads.split(",")[0])
        set_threads(threads)
        v = Variant(args.only, args.only == "fused", None, batch, args.vocab)
        for r in range(args.warmup + args.repeats):
            dt = v.step()
            if r >= args.warmup:
                v.times.append(dt)
                v.cpu_times.append(v.last_cpu)
        print(
            f"{args.only}, {threads} thread(s): {statistics.median(sum(t) for t in v.times):.3f} s/step, "
            f"CPU {statistics.median(v.cpu_times):.3f} s/step (medians of {args.repeats})"
        )
        return 0
    rows = []
    for threads in [int(t) for t in args.threads.split(",") if t.strip()]:
        ref, fused = run(threads, args, batch)
        gflop = step_gflop(fused.model, args.batch_size, args.seq_len)
        rows.append((threads, ref, fused, gflop / (GEMM_GFLOPS_PER_THREAD * threads)))

    print(
        "| threads | nn.LSTM s/step | fused s/step | speedup | nn.LSTM CPU s/step | fused CPU s/step "
        "| speedup in CPU time |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for threads, ref, fused, _ in rows:
        r, f = (statistics.median(sum(t) for t in v.times) for v in (ref, fused))
        rc, fc = (statistics.median(v.cpu_times) for v in (ref, fused))
        print(f"| {threads} | {r:.3f} | {f:.3f} | **{r / f:.2f}x** | {rc:.3f} | {fc:.3f} | {rc / fc:.2f}x |")
    print(
        "\nWhere the time goes (median s/step; the floor is the step's GEMM work at "
        f"{GEMM_GFLOPS_PER_THREAD:.0f} GFLOP/s per thread):\n"
    )
    print("| threads | variant | forward + loss | backward | AdamW | GEMM floor |")
    print("|---:|---|---:|---:|---:|---:|")
    for threads, ref, fused, floor in rows:
        for v in (ref, fused):
            parts = [statistics.median(t[i] for t in v.times) for i in range(3)]
            print(f"| {threads} | {v.label} | {parts[0]:.3f} | {parts[1]:.3f} | {parts[2]:.3f} | {floor:.3f} |")
    print(
        f"\nstep GEMM work: {step_gflop(rows[0][2].model, args.batch_size, args.seq_len):.1f} GFLOP "
        f"(floor = that at {GEMM_GFLOPS_PER_THREAD:.0f} GFLOP/s per thread)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
