"""The digit-reversal comparison from Python, without the CLI or a recipe.

    python examples/python_api.py                                  # recipes/reverse_digits_cpu.yaml's budget
    python examples/python_api.py --steps 20 --models mlp,lstm      # a quick look

Each model gets the settings of recipes/reverse_digits_cpu.yaml: the same task, data and token
budget, its own optimizer and callbacks. Runs land in <root-dir>/python_api/<model>/, with the
report (report.md, loss.png, accuracy.png) beside them; `visualdl --logdir runs/python_api`
overlays the runs.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from seqlab import MODELS, Trainer
from seqlab.callbacks import ConstantLR, CosineWarmupLR, GradientClip
from seqlab.optim import AdamW
from seqlab.tasks.reverse_digits import ReverseDigits
from seqlab.trainer import seed_everything


def settings(model: str):
    """(optimizer, callbacks) of one model, as in recipes/reverse_digits_cpu.yaml."""
    cosine = CosineWarmupLR(warmup_steps=0.05, min_lr=1e-6)  # 5% warmup, then cosine to 1e-6
    return {
        "rwkv7": (AdamW(lr=6e-3, weight_decay=0.1), [cosine, GradientClip(max_norm=1.0)]),
        "transformer": (AdamW(lr=3.2e-2, weight_decay=0.01, decay_all=True), [cosine]),
        "transformer_modern": (AdamW(lr=1.6e-2, weight_decay=0.1), [cosine, GradientClip(max_norm=1.0)]),
        "lstm": (AdamW(lr=4e-3, weight_decay=0.01, decay_all=True), [ConstantLR(), GradientClip(max_norm=1.0)]),
        "mlp": (AdamW(lr=4e-3, weight_decay=0.1), [cosine, GradientClip(max_norm=1.0)]),
    }[model]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=1300, help="optimizer steps per model")
    parser.add_argument("--batch-size", type=int, default=32, help="rows of 128 tokens per step")
    parser.add_argument("--root-dir", default="runs", help="runs go to ROOT_DIR/python_api/<model>")
    parser.add_argument("--models", default="rwkv7,transformer,transformer_modern,lstm,mlp", help="comma-separated")
    parser.add_argument("--val-every", type=int, default=325, help="validate every N steps")
    args = parser.parse_args()

    experiment = "python_api"
    for name in args.models.split(","):
        seed_everything(42)  # before the model is built: its initialisation is seeded
        task = ReverseDigits(digit_max=60, seq_len=129, batch_size=args.batch_size, eval_samples=100, test_samples=1000)
        model = MODELS.get(name)(vocab_size=task.vocab_size)
        optimizer, callbacks = settings(name)
        trainer = Trainer(
            max_steps=args.steps,
            val_every=args.val_every,
            log_every=100,
            save_every=250,
            seed=42,
            root_dir=args.root_dir,
            experiment=experiment,
            run_name=name,
            optimizer=optimizer,
            callbacks=callbacks,
        )
        trainer.fit(task, model)  # test metrics also land in <run>/metrics.json

    root = Path(args.root_dir) / experiment
    from seqlab.report import write_report

    written = write_report(root)  # [] when no run finished
    print("report:", written[0] if written else "none (no finished runs)")

    print(f"\n{'model':<12} {'params':>9} {'state':>7} {'masked_acc':>10} {'exact_acc':>9} {'tok/s':>8}")
    for name in args.models.split(","):
        m = json.loads((root / name / "metrics.json").read_text())
        print(
            f"{name:<12} {m['params']:>9,} {m.get('state_size', 0):>7,} {m['masked_acc']:>10.2%} "
            f"{m['exact_acc']:>9.2%} {m['tokens_per_s']:>8,.0f}"
        )


if __name__ == "__main__":
    main()
