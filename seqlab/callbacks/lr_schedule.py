"""Learning-rate schedules, as callbacks that attach a Paddle ``LRScheduler`` to the optimizer."""

from __future__ import annotations

import warnings
from typing import Any

import paddle

from seqlab.callback import Callback
from seqlab.errors import SeqlabError


class CosineWarmupLR(Callback):
    """Linear warmup from 0 to the optimizer's lr, then cosine annealing down to ``min_lr``.

    With ``warmup_steps=0`` this is exactly the seed's schedule,
    ``CosineAnnealingDecay(lr0, T_max=max_steps, eta_min=min_lr)``. The lr used by step ``k``
    (0-based) is ``lr0 * k / warmup_steps`` during warmup, then
    ``min_lr + (lr0 - min_lr) * (1 + cos(pi * (k - warmup_steps) / (max_steps - warmup_steps))) / 2``.

    Args:
        warmup_steps: linear warmup: a number of steps (int, 0: none), or a fraction of the
            schedule (float in (0, 1), e.g. 0.05), which keeps working when ``max_steps`` is
            overridden for a short run.
        min_lr: the lr reached at the last step.
        max_steps: length of the schedule; defaults to the Trainer's ``max_steps``.
    """

    def __init__(self, warmup_steps: int | float = 0, min_lr: float = 1e-6, max_steps: int | None = None):
        if warmup_steps < 0 or (isinstance(warmup_steps, float) and warmup_steps >= 1):
            raise SeqlabError(
                f"CosineWarmupLR: warmup_steps must be a step count >= 0 or a fraction in (0, 1), got {warmup_steps}."
            )
        self.warmup = warmup_steps
        self.warmup_steps = int(warmup_steps) if isinstance(warmup_steps, int) else 0
        self.min_lr = float(min_lr)
        self.max_steps = max_steps
        self.scheduler = None

    def build(self, base_lr: float, max_steps: int):
        """The Paddle scheduler for a peak lr and a schedule length (also used by tests)."""
        if isinstance(self.warmup, float):
            self.warmup_steps = int(round(self.warmup * max_steps))
        decay_steps = max_steps - self.warmup_steps
        if decay_steps <= 0:
            raise SeqlabError(
                f"CosineWarmupLR: warmup_steps ({self.warmup_steps}) must be smaller than "
                f"max_steps ({max_steps}); lower warmup_steps or raise max_steps."
            )
        lr = paddle.optimizer.lr
        cosine = lr.CosineAnnealingDecay(learning_rate=float(base_lr), T_max=decay_steps, eta_min=self.min_lr)
        if self.warmup_steps == 0:
            return cosine
        return lr.LinearWarmup(cosine, warmup_steps=self.warmup_steps, start_lr=0.0, end_lr=float(base_lr))

    def setup(self, trainer, task, model) -> None:
        max_steps = self.max_steps if self.max_steps is not None else trainer.max_steps
        self.scheduler = self.build(trainer.base_lr, int(max_steps))
        trainer.optimizer.set_lr_scheduler(self.scheduler)

    def on_train_batch_end(self, trainer, task, model, metrics) -> None:
        # After optimizer.step(), as in the seed: step k used the lr of scheduler epoch k.
        self.scheduler.step()

    def state_dict(self) -> dict[str, Any]:
        return {} if self.scheduler is None else dict(self.scheduler.state_dict())

    def load_state_dict(self, state: dict[str, Any]) -> None:
        # The checkpoint is restored after setup, so the scheduler exists by now.
        if state and self.scheduler is not None:
            problem = _state_problem(state, self.scheduler.state_dict())
            if problem:
                raise SeqlabError(
                    f"CosineWarmupLR: its saved scheduler state {problem}; the checkpoint was saved with "
                    "another schedule (warmup) or is corrupt: resume with the checkpoint's schedule or start a new run."
                )
            with warnings.catch_warnings():
                # LinearWarmup keeps its inner scheduler's state under an extra key, which the
                # base class reports as "unused" before LinearWarmup reads it.
                warnings.filterwarnings("ignore", message="There are some unused values")
                self.scheduler.set_state_dict(state)


def _state_problem(saved: dict[str, Any], fresh: dict[str, Any]) -> str | None:
    """How a saved scheduler state differs in form from this scheduler's own (same keys, numbers where it has numbers)."""
    if set(saved) != set(fresh):
        return f"has the keys {sorted(saved)}, where this schedule has {sorted(fresh)}"
    for key, value in fresh.items():
        if isinstance(value, dict):
            inner = _state_problem(saved[key], value) if isinstance(saved[key], dict) else "is not a dict"
            if inner:
                return f"at '{key}' {inner}"
        elif isinstance(saved[key], bool) or not isinstance(saved[key], (int, float)):
            return f"has {key} = {saved[key]!r}, not a number"
    return None


class ConstantLR(Callback):
    """Keep the optimizer's configured lr for the whole run (the seed's LSTM).

    It does nothing; it exists so that a recipe states the schedule explicitly instead of
    relying on the absence of one.
    """
