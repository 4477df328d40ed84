"""What a Trainer's checkpoint holds: writing it, restoring it, and refusing one that does not fit.

:func:`trainer_checkpoint` gathers everything a run needs to continue exactly (weights,
optimizer, precision scaler, callbacks, task, RNG, counters, config); :func:`restore_trainer` puts
it back. :func:`check_compatible` runs first on every load, so a checkpoint of another model,
task or configuration is refused with the mismatch named before anything is changed.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from seqlab.checkpoint.format import FORMAT_VERSION
from seqlab.checkpoint.optimizer_state import load_optimizer_state, optimizer_state
from seqlab.errors import SeqlabError
from seqlab.ops.settings import run_settings
from seqlab.registry import MODELS, TASKS
from seqlab.rng import capture_rng_state, restore_rng_state

log = logging.getLogger(__name__)


def trainer_checkpoint(trainer, meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """Everything needed to continue ``trainer``'s run exactly, as one dict (before callbacks add theirs)."""
    return {
        "format_version": FORMAT_VERSION,
        "step": trainer.global_step,
        "model": trainer.model.state_dict(),
        "optimizer": optimizer_state(trainer.optimizer, trainer.model),
        "precision": trainer.precision.state_dict(),
        "callbacks": {cb.state_key: cb.state_dict() for cb in trainer.callbacks},
        "task": trainer.task.state_dict(),
        "rng": capture_rng_state(),
        "trainer": {
            **trainer.counters,
            "wall_time_s": trainer.wall_time_s(),
            "last_val_metrics": trainer.last_val_metrics,
        },
        "config": trainer.config,
        "settings": run_settings(),
        "meta": dict(meta or {}),
        "model_name": MODELS.name_of(type(trainer.model)),
        "task_name": TASKS.name_of(type(trainer.task)),
    }


def weights_checkpoint(model) -> dict[str, Any]:
    """The smallest valid checkpoint: ``model``'s weights at step 0, no optimizer state, this
    process's RNG state (what ``seqlab.testing``'s save/load check writes and reads back)."""
    return {
        "format_version": FORMAT_VERSION,
        "step": 0,
        "model": model.state_dict(),
        "optimizer": {"accumulators": {}, "other": {}},
        "rng": capture_rng_state(),
    }


def restore_trainer(trainer, ckpt: dict[str, Any]) -> None:
    """Inverse of :func:`trainer_checkpoint`: weights, optimizer, callbacks, task, RNG, counters."""
    trainer.model.set_state_dict(ckpt["model"])
    load_optimizer_state(trainer.optimizer, trainer.model, ckpt["optimizer"])
    trainer.precision.load_state_dict(ckpt.get("precision") or {})
    states = ckpt.get("callbacks", {})
    for cb in trainer.callbacks:
        if cb.state_key in states:
            cb.load_state_dict(states[cb.state_key])
    trainer.task.load_state_dict(ckpt.get("task", {}))
    restore_rng_state(ckpt["rng"])
    saved = dict(ckpt.get("trainer", {}))
    trainer.last_val_metrics = saved.pop("last_val_metrics", {})
    trainer.counters.update({k: v for k, v in saved.items() if k in trainer.counters})
    trainer.global_step = int(ckpt["step"])
    saved_settings, now = ckpt.get("settings"), run_settings()
    if isinstance(saved_settings, dict) and saved_settings != now:
        changed = ", ".join(
            f"{k}={saved_settings.get(k)}->{now.get(k)}" for k in sorted(now) if saved_settings.get(k) != now.get(k)
        )
        log.warning(
            "resuming with other run settings than the checkpoint's (%s): the run continues "
            "exactly only up to float rounding.",
            changed,
        )


def check_compatible(
    ckpt: dict[str, Any],
    path: str | os.PathLike,
    model_name: str | None,
    task_name: str | None,
    model_state: dict[str, Any],
    config: dict[str, Any] | None = None,
) -> None:
    """Refuse a checkpoint made for another model, task or configuration, naming the mismatch.

    With ``config`` (the resolved config of the run), the model's and the task's ``init_args``
    must equal the checkpoint's: resuming with another ``digit_max`` or ``batch_size`` would
    silently continue a different experiment. Trainer settings (``max_steps``...) may change.
    The optimizer's accumulators must belong to this model's parameters and have their shapes
    (or be scalars such as Adam's beta powers), so restoring them cannot fail half-way.
    """
    for what, expected in (("model", model_name), ("task", task_name)):
        found = ckpt.get(f"{what}_name")
        if expected and found and found != expected:
            raise SeqlabError(
                f"checkpoint '{path}' was written for {what} '{found}', but this run's {what} is "
                f"'{expected}'; pass a checkpoint of this run or change --{what}."
            )
    saved_config = ckpt.get("config") or {}
    for section in ("model", "task"):
        ours = ((config or {}).get(section) or {}).get("init_args") or {}
        theirs = (saved_config.get(section) or {}).get("init_args") or {}
        if ours and theirs:
            for key in sorted(set(ours) | set(theirs)):
                if ours.get(key) != theirs.get(key):
                    raise SeqlabError(
                        f"checkpoint '{path}' was trained with {section}.init_args.{key}="
                        f"{theirs.get(key)!r}, but this run sets {ours.get(key)!r}; resume with the "
                        "checkpoint's settings or start a new run."
                    )
    saved = ckpt.get("model", {})
    missing = sorted(set(model_state) - set(saved))
    unexpected = sorted(set(saved) - set(model_state))
    if missing or unexpected:
        raise SeqlabError(
            f"checkpoint '{path}' does not fit this model (missing {missing[:3]}, unexpected "
            f"{unexpected[:3]}); it was saved with another architecture or config."
        )
    for key, value in model_state.items():
        if list(saved[key].shape) != list(value.shape):
            raise SeqlabError(
                f"checkpoint '{path}' does not fit this model: '{key}' has shape "
                f"{list(saved[key].shape)} in the file and {list(value.shape)} in the model; "
                "the model config differs from the one it was saved with."
            )
    for owner, accumulators in (ckpt.get("optimizer") or {}).get("accumulators", {}).items():
        if owner not in model_state:
            raise SeqlabError(
                f"checkpoint '{path}' has optimizer state for '{owner}', which this model "
                "does not have; it was saved with another architecture or config."
            )
        shape = list(model_state[owner].shape)
        for suffix, value in accumulators.items():
            if list(value.shape) not in (shape, [1], []):
                raise SeqlabError(
                    f"checkpoint '{path}' does not fit this model: optimizer state '{owner}{suffix}' has "
                    f"shape {list(value.shape)}, the parameter {shape}; the file is corrupt or "
                    "was saved with another config."
                )
