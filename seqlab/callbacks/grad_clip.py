"""Global-norm gradient clipping."""

from __future__ import annotations

import paddle

from seqlab.callback import Callback
from seqlab.errors import SeqlabError


class GradientClip(Callback):
    """Scale all gradients together so their global L2 norm is at most ``max_norm`` (seed: 1.0).

    Logs the norm *before* clipping as ``train/grad_norm``: that is the number that tells you
    whether clipping is active and whether training is stable.

    Args:
        max_norm: the largest global gradient norm allowed.
    """

    logged_metrics = ("train/grad_norm",)  # a monitor may watch it (checked before step 1)

    def __init__(self, max_norm: float = 1.0):
        if max_norm <= 0:
            raise SeqlabError(f"GradientClip: max_norm must be > 0, got {max_norm}; set a positive max_norm.")
        self.max_norm = float(max_norm)
        self._params = None

    def on_train_start(self, trainer, task, model) -> None:
        # A list, not a generator: clip_grad_norm_ walks the parameters twice.
        self._params = [p for p in model.parameters() if not p.stop_gradient]

    def on_before_optimizer_step(self, trainer, task, model, optimizer) -> None:
        if self._params is None:
            self.on_train_start(trainer, task, model)
        total_norm = paddle.nn.utils.clip_grad_norm_(self._params, self.max_norm)
        trainer.log("train/grad_norm", float(total_norm.item()))
