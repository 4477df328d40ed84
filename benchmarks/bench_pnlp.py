"""Training-step time of the PaddleNLP plugins at the CPU recipe's shape (B = 32, T = 128).

Needs the `paddlenlp` extra (run it with .venv-nlp/bin/python). Compares, side by side in one
process (interleaved rounds, medians; see bench_models.py for the step):

  * pnlp_mamba with its time-major scan (the default) and with PaddleNLP's own fallback loop
    (``fast_scan=False``): why the plugin replaces that loop on CPU;
  * pnlp_llama beside transformer_modern, seqlab's own model of the same shape and size: what
    the PaddleNLP wrapper costs.

    .venv-nlp/bin/python benchmarks/bench_pnlp.py [--repeats 3] [--batch-size 32]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import paddle  # noqa: E402
from bench_models import Runner, machine_info, time_interleaved  # noqa: E402

from seqlab._paddle import configure_cpu_defaults  # noqa: E402

SPECS = [
    ("pnlp_mamba [time-major scan]", "pnlp_mamba", {}),
    ("pnlp_mamba [PaddleNLP loop]", "pnlp_mamba", {"fast_scan": False}),
    ("pnlp_llama", "pnlp_llama", {}),
    ("transformer_modern", "transformer_modern", {}),
]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    configure_cpu_defaults(paddle)
    print(machine_info())
    print(
        f"shape: B={args.batch_size}, T={args.seq_len}; {args.warmup} warmup + {args.repeats} timed "
        f"rounds, interleaved; median s/step (forward, loss, backward, AdamW)\n",
        flush=True,
    )
    runners = [Runner(label, name, init, args.batch_size, args.seq_len) for label, name, init in SPECS]
    median = time_interleaved(runners, args.warmup, args.repeats)
    print("| model | params | s/step | tokens/s |")
    print("|---|---:|---:|---:|")
    for runner in runners:
        s = median[runner.label]
        print(f"| {runner.label} | {runner.params:,} | {s:.3f} | {args.batch_size * args.seq_len / s:,.0f} |")
    print(
        f"\ntime-major scan vs PaddleNLP loop: "
        f"{median['pnlp_mamba [PaddleNLP loop]'] / median['pnlp_mamba [time-major scan]']:.1f}x faster; "
        f"pnlp_llama / transformer_modern: "
        f"{median['pnlp_llama'] / median['transformer_modern']:.2f}x the time"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
