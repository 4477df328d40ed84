"""Two user callbacks, used from a recipe by ``class_path`` (see custom_callback.yaml).

    seqlab fit --recipe examples/custom_callback.yaml          (from the seqlab repo root)

* ``TargetAccuracyStop`` ends training early once a validation metric reaches a target.
* ``WeightNormLogger`` adds ``train/weight_norm`` to the step metrics, so VisualDL and
  metrics.csv get it without further code.

A callback overrides only the hooks it needs; each hook gets ``(trainer, task, model, ...)``
(order and Trainer attributes: docs/api.md). Its ``__init__`` arguments are typed with defaults,
so a recipe can set them under ``init_args`` and the CLI checks them.
"""

from __future__ import annotations

import logging
import math

import paddle

from seqlab import Callback

# A child of the "seqlab" logger: the CLI shows its messages with its own.
log = logging.getLogger("seqlab.examples.custom_callback")


class TargetAccuracyStop(Callback):
    """Stop training when a validation metric reaches a target.

    It judges the run, so it sets ``runs_last = True``: within a hook it
    runs after the others. The final test still runs, on the best (else last) checkpoint, and
    ``metrics.json`` reports the step training stopped at as ``steps``.

    Args:
        target: Stop once ``metric`` is at least this.
        metric: A validation metric, as passed to ``on_validation_end`` (e.g. ``val/masked_acc``).
    """

    runs_last = True

    def __init__(self, target: float = 0.9, metric: str = "val/masked_acc"):
        self.target = float(target)
        self.metric = metric
        self.stopped_step: int | None = None

    def on_validation_end(self, trainer, task, model, metrics) -> None:
        value = metrics.get(self.metric, math.nan)
        if not value >= self.target:  # NaN never reaches the target
            return
        self.stopped_step = trainer.global_step
        log.info(
            "%s: %s = %.4f reached the target %.4f at step %d; stopping.",
            trainer.run_name,
            self.metric,
            value,
            self.target,
            trainer.global_step,
        )
        trainer.should_stop = True  # the Trainer ends the loop after this step

    def on_train_start(self, trainer, task, model) -> None:
        # Restored from the checkpoint: a run resumed after it stopped does not train on.
        if self.stopped_step is not None:
            trainer.should_stop = True

    # Saved in checkpoints, so a resumed run knows it had already stopped.
    def state_dict(self):
        return {"stopped_step": self.stopped_step}

    def load_state_dict(self, state) -> None:
        self.stopped_step = state.get("stopped_step")


class WeightNormLogger(Callback):
    """Log the L2 norm of all trainable weights as ``train/weight_norm``.

    ``trainer.log`` adds a value to the current step's metrics, which every logger receives in
    ``on_train_batch_end``: VisualDL plots it beside ``train/loss``, metrics.csv gets a
    ``weight_norm`` column. It is measured before the step's update.

    Args:
        every: Log every this many steps (the norm costs one pass over the weights).
    """

    logged_metrics = ("train/weight_norm",)  # so a monitor may watch it (checked before step 1)

    def __init__(self, every: int = 10):
        if every < 1:
            raise ValueError(f"WeightNormLogger: every must be >= 1, got {every}.")
        self.every = int(every)

    def on_before_optimizer_step(self, trainer, task, model, optimizer) -> None:
        step = trainer.global_step + 1  # the 1-based number of the step about to run
        if step % self.every:
            return
        squares = [(p.astype("float32") ** 2).sum() for p in model.parameters() if not p.stop_gradient]
        trainer.log("train/weight_norm", float(paddle.add_n(squares).sqrt()))
