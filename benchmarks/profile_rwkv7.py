"""CPU profile of one RWKV-7 training step (forward + cross-entropy + backward + AdamW).

    python benchmarks/profile_rwkv7.py                 # B=256, T=128, fused ops on
    python benchmarks/profile_rwkv7.py --no-fused      # the pure-Paddle formulas
    python benchmarks/profile_rwkv7.py --model transformer

Runs 2 warmup steps, then profiles ``--steps`` steps with ``paddle.profiler`` (CPU) and prints
the top ops by total time (forward ops and their ``_grad`` kernels are separate rows).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import paddle
import paddle.nn.functional as F
import paddle.profiler as profiler

import seqlab  # noqa: F401  (quiet Paddle import, CPU defaults)
from seqlab import MODELS
from seqlab._paddle import configure_cpu_defaults


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="rwkv7")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--top", type=int, default=30)
    p.add_argument("--no-fused", action="store_true", help="rwkv7 with fused_ops=False")
    args = p.parse_args(argv)
    configure_cpu_defaults(paddle)  # what a Trainer run gets (stride kernels off on CPU)

    paddle.seed(0)
    kw = {"fused_ops": False} if args.no_fused and args.model == "rwkv7" else {}
    model = MODELS.get(args.model)(**kw)
    vocab = int(getattr(model, "vocab_size", 12))
    rng = np.random.default_rng(0)
    data = paddle.to_tensor(rng.integers(0, vocab, (args.batch_size, args.seq_len + 1)), dtype="int64")
    x, y = data[:, :-1], data[:, 1:]
    groups = model.param_groups()
    opt = paddle.optimizer.AdamW(
        learning_rate=1e-3,
        parameters=[
            {"params": groups["decay"], "weight_decay": 0.1},
            {"params": groups["no_decay"], "weight_decay": 0.0},
        ],
    )

    def step():
        logits = model(x)
        loss = F.cross_entropy(logits.reshape([-1, vocab]), y.reshape([-1]))
        loss.backward()
        opt.step()
        opt.clear_grad()
        return loss.item()

    for _ in range(2):
        step()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    print(
        f"{args.model}{' (no fused)' if args.no_fused else ''}: "
        f"{(time.perf_counter() - t0) / args.steps:.3f} s/step unprofiled"
    )
    # on_trace_ready: no chrome trace written to ./profiler_log (the summary needs none)
    prof = profiler.Profiler(targets=[profiler.ProfilerTarget.CPU], on_trace_ready=lambda p: None)
    prof.start()
    for _ in range(args.steps):
        step()
        prof.step()
    prof.stop()
    prof.summary(
        sorted_by=profiler.SortedKeys.CPUTotal,
        op_detail=False,
        thread_sep=False,
        time_unit="ms",
        views=[profiler.SummaryView.OperatorView],
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
