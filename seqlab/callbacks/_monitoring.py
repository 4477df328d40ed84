"""The rules shared by monitoring callbacks (best checkpoint, early stopping): which value is
better, and whether the monitored metric is one the run reports at all.

A typo in ``monitor`` would otherwise be silent: no best checkpoint written, no early stop. As
Lightning's ``strict=True``, a monitor must name a reported metric. Here it is checked in the
callback's ``setup``, before step 1, against the names a run declares:

* at every step: the Trainer's own ``train/...`` metrics (:data:`TRAINER_METRICS`) and each
  callback's ``logged_metrics`` (what it adds with ``trainer.log``);
* at validation: ``val/`` + the name of each of the task's ``metrics()``, and nothing when
  ``trainer.val_every`` is 0. A task with its own ``evaluate`` declares no names, so there the
  check waits for the first validation's metrics.

``strict=False`` turns the check into one warning, for a metric that appears only sometimes or
that a callback logs without declaring it.
"""

from __future__ import annotations

import difflib
import logging
import math

from seqlab.errors import SeqlabError

log = logging.getLogger(__name__)

MODES = ("min", "max")

#: The Trainer's step metrics (``train/skipped_steps`` from the first step dropped under ``nonfinite: skip``).
TRAINER_METRICS = ("train/loss", "train/lr", "train/tokens_per_s", "train/skipped_steps")


def check_mode(owner: str, mode: str) -> str:
    if mode not in MODES:
        raise SeqlabError(f"{owner}: mode must be 'min' or 'max', got {mode!r}.")
    return mode


def check_saved_rule(owner: str, what: str, state: dict, monitor: str, mode: str) -> None:
    """Refuse a saved state made under another ``monitor`` or ``mode``: its best value measures
    another metric, or in the other direction. ``what`` names the saved decision in the sentence."""
    for key, ours in (("monitor", monitor), ("mode", mode)):
        if key in state and state[key] != ours:
            raise SeqlabError(
                f"{owner}: the checkpoint's {what} with {key} {state[key]!r}, but this run sets {ours!r}; "
                f"resume with {key}: {state[key]!r} or start a new run."
            )


def is_number(value) -> bool:
    """A saved number (int or float, not bool): what a callback's state may hold as a value."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_count(value) -> bool:
    """A saved count or step: a non-negative int, not bool."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def improves(value: float, best: float | None, mode: str, min_delta: float = 0.0) -> bool:
    """Whether ``value`` beats ``best`` by more than ``min_delta`` (NaN never does)."""
    if math.isnan(value):
        return False
    if best is None:
        return True
    return value < best - min_delta if mode == "min" else value > best + min_delta


def step_metrics(trainer) -> list[str]:
    """The names every training step reports: the Trainer's and the callbacks' declared ones."""
    declared = [name for cb in trainer.callbacks for name in getattr(cb, "logged_metrics", ())]
    return [*TRAINER_METRICS, *declared]


def validation_metrics(trainer, task) -> list[str] | None:
    """The names a validation reports, or None when the task does not declare them (its own ``evaluate``)."""
    from seqlab.task import Task

    if not trainer.val_every:
        return []
    if type(task).evaluate is not Task.evaluate:
        return None
    return [f"val/{metric.name}" for metric in task.metrics()]


class MonitoredMetric:
    """The metric a monitoring callback reads, checked once against what the run reports.

    Args:
        owner: the callback's name, for messages.
        name: the metric (``monitor``).
        strict: a name the run does not report is an error (else one warning).
        at_validation: it is read from ``on_validation_end`` (else from every step's metrics).
    """

    def __init__(self, owner: str, name: str, strict: bool, at_validation: bool):
        self.owner, self.name, self.strict, self.at_validation = owner, name, bool(strict), at_validation
        self._pending = False  # checked at the first metrics it is read from (no names declared)

    def setup(self, trainer, task) -> None:
        """Check the name against the declared ones (see the module's docstring); before step 1."""
        self._pending = False
        if self.at_validation and not trainer.val_every:
            self._refuse(
                f"{self.owner}: monitor '{self.name}' is read at validation, but trainer.val_every is 0; "
                "set trainer.val_every above 0 or monitor a train/ metric."
            )
            return
        names = validation_metrics(trainer, task) if self.at_validation else step_metrics(trainer)
        if names is None:
            self._pending = True
        elif self.name not in names:
            self._refuse(self._unknown(names))

    def read(self, metrics: dict[str, float]) -> float | None:
        """The monitored value in ``metrics``, or None when they do not hold it."""
        if self._pending:
            self._pending = False
            if self.name not in metrics:
                self._refuse(self._unknown(list(metrics)))
        value = metrics.get(self.name)
        return None if value is None else float(value)

    def _unknown(self, names: list[str]) -> str:
        where = "at validation" if self.at_validation else "at every step"
        close = difflib.get_close_matches(self.name, names, n=1, cutoff=0.5)
        hint = f"the closest is '{close[0]}'" if close else f"it reports {', '.join(names) or 'none'}"
        return (
            f"{self.owner}: monitor '{self.name}' names no metric this run reports {where} ({hint}); fix the "
            "name, or set strict: false for a metric a callback logs without listing it in logged_metrics."
        )

    def _refuse(self, message: str) -> None:
        if self.strict:
            raise SeqlabError(message)
        log.warning("%s", message)
