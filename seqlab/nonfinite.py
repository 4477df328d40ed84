"""What a step with a NaN or infinite loss or gradient does: stop the run, or drop the update.

One bad batch can put NaN into every weight, and every checkpoint after it. ``stop`` (the
default) ends the run before that update, keeping the last good checkpoint; ``skip`` drops the
update, counts it (``train/skipped_steps``, ``skipped_steps`` in metrics.json) and goes on.
"""

from __future__ import annotations

import math

import paddle

from seqlab.errors import TrainingDiverged


def update_is_finite(trainer, loss_value: float) -> bool:
    """Whether the step's loss and gradients are finite; raises TrainingDiverged under ``stop``."""
    finite = math.isfinite(loss_value)
    # The fp16 scaler checks the gradients itself and skips an overflowed step (that is normal
    # loss scaling, not a diverged run), so only the loss is checked then.
    if finite and trainer.precision.scaler is None:
        grads = [p.grad for p in trainer.model.parameters() if p.grad is not None]
        # One reduction per tensor: a sum is NaN/inf iff an element is (or the sum overflows).
        finite = not grads or bool(paddle.isfinite(paddle.stack([g.sum() for g in grads])).all().item())
    if not finite and trainer.nonfinite == "stop":
        raise TrainingDiverged(
            f"step {trainer.global_step + 1} of run '{trainer.run_name}' has a non-finite loss or "
            f"gradient (loss {loss_value}); the last good checkpoint is kept in "
            f"'{trainer.checkpoint_dir}'. Lower the lr, clip gradients, or set "
            "--trainer.nonfinite skip."
        )
    return finite
