"""The tiny digit-reversal recipe that the command-line tests train in seconds: one definition.

Numbers of up to 8 digits in rows of 33 tokens, 8 rows a batch, 16 held-out rows, a probe of
9-12 digit numbers; a small MLP and a 2 x 16 LSTM. ``tiny_recipe`` returns a fresh copy, so a
test may change its own.
"""

from __future__ import annotations

import copy
import sys

SEQLAB = [sys.executable, "-m", "seqlab.cli"]

TASK = {
    "class_path": "reverse_digits",
    "init_args": {
        "digit_max": 8,
        "seq_len": 33,
        "batch_size": 8,
        "eval_samples": 16,
        "probe_digit_min": 9,
        "probe_digit_max": 12,
        "probe_samples": 8,
    },
}
TRAINER = {"max_steps": 6, "val_every": 3, "save_every": 3, "log_every": 2, "optimizer": {"lr": 3e-3}}
MLP = {"model": {"class_path": "mlp", "init_args": {"embed_dim": 8, "window": 4, "hidden_dim": 16}}}
LSTM = {"model": {"class_path": "lstm", "init_args": {"hidden_sizes": [16, 16]}}}
RWKV7 = {"model": "rwkv7"}


def tiny_recipe(runs: dict | None = None, name: str = "tiny", trainer: dict | None = None) -> dict:
    """The recipe with ``runs`` (default: the MLP alone) and ``trainer`` replacing the shared
    trainer settings (default: 6 steps, validation and checkpoints every 3)."""
    return copy.deepcopy({"name": name, "task": TASK, "trainer": trainer or TRAINER, "runs": runs or {"mlp": MLP}})
