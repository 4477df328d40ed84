"""MQAR data generation: seqlab's vectorised generator against a per-row loop in Zoology's style.

Zoology's ``multiquery_ar`` draws each row's keys, values and query gaps with
``np.apply_along_axis(np.random.choice, ...)``: one Python call per row and per draw. seqlab's
:func:`seqlab.tasks.mqar.multiquery_ar` draws all rows at once (distinct draws by redrawing
repeats, the gaps by Gumbel top-k). Both run here, interleaved, on the same shapes; the loop runs
on ``--loop_rows`` rows and its time is scaled to ``--rows`` (it is linear in the rows). The loop
below is written for this benchmark to the same definition; it is not Zoology's code.

    python benchmarks/bench_mqar.py --rows 100000 --seq_len 256 --pairs 16 --repeats 5
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from seqlab.tasks.mqar import multiquery_ar, power_law  # noqa: E402


def per_row_loop(rng: np.random.RandomState, rows: int, vocab: int, seq_len: int, pairs: int, power_a: float):
    """The same rows, drawn one row at a time with ``apply_along_axis`` (the reference style)."""
    context, half = 2 * pairs, vocab // 2
    keys = np.apply_along_axis(rng.choice, 1, np.tile(np.arange(1, half), (rows, 1)), replace=False, size=pairs)
    values = np.apply_along_axis(rng.choice, 1, np.tile(np.arange(half, vocab), (rows, 1)), replace=False, size=pairs)
    space = (seq_len - context) // 2
    p = power_law(space, power_a)
    gaps = np.apply_along_axis(rng.choice, 1, np.tile(np.arange(space), (rows, 1)), replace=False, p=p, size=pairs)
    inputs = np.zeros((rows, seq_len), dtype=np.int64)
    inputs[:, 0:context:2], inputs[:, 1:context:2] = keys, values
    np.put_along_axis(inputs, context + 2 * gaps, keys, axis=1)
    targets = np.full((rows, seq_len), -100, dtype=np.int64)
    np.put_along_axis(targets, context + 2 * gaps, values, axis=1)
    return inputs, targets


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--loop_rows", type=int, default=10_000)
    ap.add_argument("--vocab", type=int, default=8192)
    ap.add_argument("--seq_len", type=int, default=256)
    ap.add_argument("--pairs", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    ours, loop = [], []
    for r in range(args.repeats):
        start = time.perf_counter()
        multiquery_ar(np.random.default_rng(r), args.rows, args.vocab, args.seq_len, args.pairs, 0.01, False)
        ours.append(time.perf_counter() - start)
        start = time.perf_counter()
        per_row_loop(np.random.RandomState(r), args.loop_rows, args.vocab, args.seq_len, args.pairs, 0.01)
        loop.append((time.perf_counter() - start) * args.rows / args.loop_rows)
    a, b = statistics.median(ours), statistics.median(loop)
    print(f"machine: {platform.processor() or platform.machine()}, numpy {np.__version__}, {args.repeats} repeats")
    print(f"MQAR rows: {args.rows:,} x {args.seq_len} tokens, {args.pairs} pairs, vocabulary {args.vocab}")
    print(f"  seqlab (vectorised)      {a:7.2f} s   (median)")
    print(f"  per-row loop (scaled)    {b:7.2f} s   (median, {args.loop_rows:,} rows timed)")
    print(f"  ratio                    {b / a:7.1f}x")


if __name__ == "__main__":
    main()
