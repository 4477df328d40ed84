"""Stop training when a validation metric has stopped improving."""

from __future__ import annotations

from typing import Any

from seqlab.callback import Callback
from seqlab.callbacks._monitoring import MonitoredMetric, check_mode, check_saved_rule, improves, is_count, is_number
from seqlab.errors import SeqlabError


class EarlyStopping(Callback):
    """End the run after ``patience`` validations without improvement of ``monitor``.

    An improvement is a change by more than ``min_delta`` in the right direction over the best
    value so far. Stopping sets ``trainer.should_stop``: the Trainer finishes the current step,
    validates, saves its last checkpoint and tests the best checkpoint as usual (in a
    data-parallel run every rank stops at that step). A ``monitor`` that validation does not
    report is an error before step 1 (see :mod:`seqlab.callbacks._monitoring`).

    The stop is part of the run: the Trainer saves ``should_stop``, so a stopped run resumed with
    ``--ckpt_path last`` ends at once (no further steps) and is tested as before.

    Args:
        monitor: a metric of ``on_validation_end``, e.g. ``val/masked_acc`` or ``val/loss``.
        mode: ``max`` (higher is better) or ``min``.
        patience: validations without improvement before stopping.
        min_delta: the smallest change that counts as an improvement.
        strict: a ``monitor`` validation does not report stops the run before training (else: a warning).
    """

    runs_last = True

    def __init__(
        self,
        monitor: str = "val/loss",
        mode: str = "min",
        patience: int = 3,
        min_delta: float = 0.0,
        strict: bool = True,
    ):
        check_mode("EarlyStopping", mode)
        if patience < 1:
            raise SeqlabError(f"EarlyStopping: patience must be at least 1, got {patience}.")
        self.monitor = monitor
        self.mode = mode
        self.patience = int(patience)
        self.min_delta = abs(float(min_delta))
        self.strict = bool(strict)
        self._metric = MonitoredMetric("EarlyStopping", monitor, strict, at_validation=True)
        self.best_value: float | None = None
        self.bad_validations = 0
        self.stopped_step: int | None = None

    def setup(self, trainer, task, model) -> None:
        self._metric.setup(trainer, task)

    def on_validation_end(self, trainer, task, model, metrics) -> None:
        value = self._metric.read(metrics)
        if value is None:
            return
        if improves(value, self.best_value, self.mode, self.min_delta):
            self.best_value, self.bad_validations = value, 0
            return
        self.bad_validations += 1
        if self.bad_validations >= self.patience and self.stopped_step is None:
            self.stopped_step = trainer.global_step
            trainer.should_stop = True

    def state_dict(self) -> dict[str, Any]:
        return {
            "monitor": self.monitor,
            "mode": self.mode,
            "best_value": self.best_value,
            "bad_validations": self.bad_validations,
            "stopped_step": self.stopped_step,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a saved state; one made with another ``monitor`` or ``mode`` is refused (its best
        value measures something else). ``patience`` and ``min_delta`` may change."""
        if not state:
            return
        check_saved_rule("EarlyStopping", "run monitored", state, self.monitor, self.mode)
        best, bad, stopped = state.get("best_value"), state.get("bad_validations", 0), state.get("stopped_step")
        if not ((best is None or is_number(best)) and is_count(bad) and (stopped is None or is_count(stopped))):
            raise SeqlabError(
                "EarlyStopping: its saved state is malformed (best_value must be a number or null, "
                "bad_validations a count, stopped_step a step or null); the file is corrupt: pass another --ckpt_path."
            )
        self.best_value = None if best is None else float(best)
        self.bad_validations = int(bad)
        self.stopped_step = None if stopped is None else int(stopped)
