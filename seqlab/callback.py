"""The callback contract and the list of events, in the order the Trainer fires them.

Like Composer's ``Event`` enum, the events are data: the Trainer dispatches an event by calling
``getattr(callback, event.value)`` on every callback. Every hook receives
``(trainer, task, model, *extra)``; a callback overrides only the hooks it needs.
"""

from __future__ import annotations

from enum import Enum
from typing import Any


class Event(str, Enum):
    """Hook names, in firing order. Users depend on this order; see docs/api.md."""

    SETUP = "setup"
    ON_FIT_START = "on_fit_start"
    ON_TRAIN_START = "on_train_start"
    # once per optimizer step
    ON_TRAIN_BATCH_START = "on_train_batch_start"  # extra: batch
    ON_BEFORE_BACKWARD = "on_before_backward"  # extra: loss (a Tensor)
    ON_AFTER_BACKWARD = "on_after_backward"
    ON_BEFORE_OPTIMIZER_STEP = "on_before_optimizer_step"  # extra: optimizer
    ON_TRAIN_BATCH_END = "on_train_batch_end"  # extra: step metrics (dict)
    # every val_every steps
    ON_VALIDATION_START = "on_validation_start"
    ON_VALIDATION_END = "on_validation_end"  # extra: metrics (dict)
    ON_TRAIN_END = "on_train_end"
    ON_TEST_END = "on_test_end"  # extra: metrics (dict)
    ON_FIT_END = "on_fit_end"
    ON_EXCEPTION = "on_exception"  # extra: the exception
    TEARDOWN = "teardown"


class Callback:
    """Base class of every callback; every hook is a no-op.

    Hooks get ``(trainer, task, model, ...)``; see :class:`Event` for the extra arguments.

    * Set ``monitor = True`` on callbacks that judge the run (best checkpoint, early stopping):
      within each event they run after all the others, so they see what the others logged.
    * A stateful callback implements ``state_dict()``/``load_state_dict()``; its state is saved in
      every checkpoint under ``state_key``, which must be unique among a trainer's callbacks.
    """

    monitor: bool = False

    @property
    def state_key(self) -> str:
        """Key of this callback's state in a checkpoint; override when two instances may coexist."""
        return type(self).__qualname__

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    def setup(self, trainer, task, model) -> None: ...
    def on_fit_start(self, trainer, task, model) -> None: ...
    def on_train_start(self, trainer, task, model) -> None: ...
    def on_train_batch_start(self, trainer, task, model, batch) -> None: ...
    def on_before_backward(self, trainer, task, model, loss) -> None: ...
    def on_after_backward(self, trainer, task, model) -> None: ...
    def on_before_optimizer_step(self, trainer, task, model, optimizer) -> None: ...
    def on_train_batch_end(self, trainer, task, model, metrics: dict[str, float]) -> None: ...
    def on_validation_start(self, trainer, task, model) -> None: ...
    def on_validation_end(self, trainer, task, model, metrics: dict[str, float]) -> None: ...
    def on_train_end(self, trainer, task, model) -> None: ...
    def on_test_end(self, trainer, task, model, metrics: dict[str, float]) -> None: ...
    def on_fit_end(self, trainer, task, model) -> None: ...
    def on_exception(self, trainer, task, model, exception: BaseException) -> None: ...
    def teardown(self, trainer, task, model) -> None: ...
