"""Keep the checkpoint with the best moving average of a metric (the seed's 100-step rule)."""

from __future__ import annotations

import logging
import math
from collections import deque
from typing import Any

from seqlab.callback import Callback
from seqlab.callbacks._monitoring import MonitoredMetric, check_mode, check_saved_rule, improves, is_count, is_number
from seqlab.checkpoint import BEST, checkpoint_file
from seqlab.errors import SeqlabError

log = logging.getLogger(__name__)


class MovingAverageCheckpoint(Callback):
    """Save a checkpoint whenever the moving average of a metric reaches a new best.

    The seed keeps the model whose average training loss over the last 100 steps is lowest: a
    single step's loss is noisy, and its minimum is often a lucky batch, not a better model.
    Nothing is saved until ``window`` values have been seen; after that, a checkpoint is written
    each time the average improves strictly. Its ``meta`` holds ``best_step``, ``best_value`` and
    ``monitor``, which the final test reports.

    A ``train/...`` metric is read at every step, a ``val/...`` metric at every validation (use a
    small ``window``, e.g. 1, for those). A ``monitor`` the run does not report is an error
    before step 1 (see :mod:`seqlab.callbacks._monitoring` for how the names are known).

    On resume the saved ``monitor`` and ``mode`` must be this callback's: another is refused
    before step 1 (the saved best was chosen by the old rule), so change them only in a new run.
    Another ``window`` is a warning.

    Args:
        monitor: the metric to watch, e.g. ``train/loss`` or ``val/masked_acc``.
        window: how many recent values are averaged.
        mode: ``min`` (lower is better) or ``max``.
        strict: a ``monitor`` the run does not report stops it before training (else: a warning).
    """

    runs_last = True

    def __init__(
        self,
        monitor: str = "train/loss",
        window: int = 100,
        mode: str = "min",
        strict: bool = True,
    ):
        check_mode("MovingAverageCheckpoint", mode)
        if window < 1:
            raise SeqlabError(f"MovingAverageCheckpoint: window must be at least 1, got {window}.")
        self.monitor = monitor
        self.window = int(window)
        self.mode = mode
        self.strict = bool(strict)
        self._metric = MonitoredMetric("MovingAverageCheckpoint", monitor, strict, monitor.startswith("val/"))
        self.values: deque[float] = deque(maxlen=self.window)
        self.best_value: float | None = None
        self.best_step: int | None = None

    def update(self, value: float, step: int) -> bool:
        """Add one value; return True when the average just reached a new best.

        A NaN or infinite value (a step skipped under ``nonfinite: skip``) is ignored: it would
        poison the average for a whole window.
        """
        if not math.isfinite(value):
            return False
        self.values.append(float(value))
        if len(self.values) < self.window:
            return False
        avg = sum(self.values) / self.window
        if not improves(avg, self.best_value, self.mode):
            return False
        self.best_value, self.best_step = avg, int(step)
        return True

    def setup(self, trainer, task, model) -> None:
        self._metric.setup(trainer, task)

    def _observe(self, trainer, metrics: dict[str, float]) -> None:
        value = self._metric.read(metrics)
        if value is None:
            return
        # Every rank calls save_checkpoint (it writes on rank 0 and waits for all ranks).
        if self.update(value, trainer.global_step):
            trainer.save_checkpoint(
                checkpoint_file(trainer.checkpoint_dir, BEST),  # what the final test and --ckpt_path best read
                meta={"best_step": self.best_step, "best_value": self.best_value, "monitor": self.monitor},
            )

    def on_train_batch_end(self, trainer, task, model, metrics) -> None:
        if not self._metric.at_validation:
            self._observe(trainer, metrics)

    def on_validation_end(self, trainer, task, model, metrics) -> None:
        if self._metric.at_validation:
            self._observe(trainer, metrics)

    def state_dict(self) -> dict[str, Any]:
        return {
            "monitor": self.monitor,
            "mode": self.mode,
            "window": self.window,
            "values": list(self.values),
            "best_value": self.best_value,
            "best_step": self.best_step,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a saved state; one that was not made with this ``monitor`` and ``mode`` is refused.

        The saved average and best value measure the saved metric in the saved direction:
        continuing them under another would keep (or skip) a best checkpoint for the wrong reason.
        Another ``window`` is a warning (the same metric, averaged over more or fewer steps). A
        checkpoint written before ``mode`` was saved is checked on ``monitor`` alone.
        """
        if not state:
            return
        check_saved_rule("MovingAverageCheckpoint", "best was chosen", state, self.monitor, self.mode)
        if state.get("window", self.window) != self.window:
            log.warning(
                "MovingAverageCheckpoint: the checkpoint's averages were over window %s, this run's are over "
                "%d; its last values and its best average carry over as the bar to beat.",
                state["window"],
                self.window,
            )
        values, best, step = state.get("values", []), state.get("best_value"), state.get("best_step")
        if not (
            isinstance(values, list)
            and all(is_number(v) for v in values)
            and (best is None or is_number(best))
            and (step is None or is_count(step))
        ):
            raise SeqlabError(
                "MovingAverageCheckpoint: its saved state is malformed (values must be numbers, "
                "best_value a number or null, best_step a step or null); the file is corrupt: pass another --ckpt_path."
            )
        self.values = deque((float(v) for v in values), maxlen=self.window)
        self.best_value = None if best is None else float(best)
        self.best_step = None if step is None else int(step)
