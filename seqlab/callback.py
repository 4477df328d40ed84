"""The callback contract and the list of events, in the order the Trainer fires them.

Like Composer's ``Event`` enum, the events are data: the Trainer dispatches an event by calling
``getattr(callback, event.value)`` on every callback. Every hook receives
``(trainer, task, model, *extra)``; a callback overrides only the hooks it needs.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

from seqlab._init_args import record_init_args


class Event(str, Enum):
    """Hook names, in firing order. Users depend on this order; see docs/api.md."""

    SETUP = "setup"  # before step 1; may reject the configuration (raise SeqlabError); must not write files
    ON_LOAD_CHECKPOINT = "on_load_checkpoint"  # extra: the checkpoint dict (resume only)
    ON_FIT_START = "on_fit_start"
    ON_TRAIN_START = "on_train_start"
    # once per optimizer step
    ON_TRAIN_BATCH_START = "on_train_batch_start"  # extra: batch (this rank's rows)
    ON_BEFORE_BACKWARD = "on_before_backward"  # extra: loss (a Tensor); once per micro-batch
    ON_AFTER_BACKWARD = "on_after_backward"  # once per micro-batch
    ON_BEFORE_OPTIMIZER_STEP = "on_before_optimizer_step"  # extra: optimizer; grads unscaled
    ON_TRAIN_BATCH_END = "on_train_batch_end"  # extra: step metrics (dict)
    # every val_every steps
    ON_VALIDATION_START = "on_validation_start"
    ON_VALIDATION_END = "on_validation_end"  # extra: metrics (dict)
    # whenever a checkpoint is written (periodic, best, last, on a signal)
    ON_SAVE_CHECKPOINT = "on_save_checkpoint"  # extra: the checkpoint dict, before it is written
    ON_TRAIN_END = "on_train_end"
    ON_TEST_END = "on_test_end"  # extra: metrics (dict)
    ON_FIT_END = "on_fit_end"
    ON_EXCEPTION = "on_exception"  # extra: the exception
    TEARDOWN = "teardown"


class Callback:
    """Base class of every callback; every hook is a no-op.

    Hooks get ``(trainer, task, model, ...)``; see :class:`Event` for the extra arguments.

    * Set ``runs_last = True`` on callbacks that judge the run (best checkpoint, early
      stopping): within each event they run after all the others, so they see what the others
      logged.
    * A stateful callback implements ``state_dict()``/``load_state_dict()``; its state is saved in
      every checkpoint under ``state_key``, which must be unique among a trainer's callbacks.
      ``on_save_checkpoint(checkpoint)`` / ``on_load_checkpoint(checkpoint)`` see the whole
      checkpoint, for anything else a callback wants to add or read (and for loggers to flush,
      so that what a checkpoint covers is on disk before it exists).
    * ``setup`` may raise :class:`seqlab.SeqlabError` to reject a configuration; it must not
      write files, because the CLI sets up every run of a recipe before any of them trains.
    * A callback that adds step metrics with ``trainer.log`` lists their keys in
      ``logged_metrics``: monitoring callbacks check their ``monitor`` against them before step 1.
    """

    runs_last: bool = False
    #: The keys this callback adds to every step's metrics with ``trainer.log`` (e.g. ``train/grad_norm``).
    logged_metrics: tuple[str, ...] = ()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        record_init_args(cls)  # so a run driven from Python can write its config.yaml

    @property
    def state_key(self) -> str:
        """Key of this callback's state in a checkpoint; override when two instances may coexist."""
        return type(self).__qualname__

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    def setup(self, trainer, task, model) -> None: ...
    def on_load_checkpoint(self, trainer, task, model, checkpoint: dict[str, Any]) -> None: ...
    def on_fit_start(self, trainer, task, model) -> None: ...
    def on_train_start(self, trainer, task, model) -> None: ...
    def on_train_batch_start(self, trainer, task, model, batch) -> None: ...
    def on_before_backward(self, trainer, task, model, loss) -> None: ...
    def on_after_backward(self, trainer, task, model) -> None: ...
    def on_before_optimizer_step(self, trainer, task, model, optimizer) -> None: ...
    def on_train_batch_end(self, trainer, task, model, metrics: dict[str, float]) -> None: ...
    def on_validation_start(self, trainer, task, model) -> None: ...
    def on_validation_end(self, trainer, task, model, metrics: dict[str, float]) -> None: ...
    def on_save_checkpoint(self, trainer, task, model, checkpoint: dict[str, Any]) -> None: ...
    def on_train_end(self, trainer, task, model) -> None: ...
    def on_test_end(self, trainer, task, model, metrics: dict[str, float]) -> None: ...
    def on_fit_end(self, trainer, task, model) -> None: ...
    def on_exception(self, trainer, task, model, exception: BaseException) -> None: ...
    def teardown(self, trainer, task, model) -> None: ...
