"""What a Trainer's checkpoint holds: writing it, restoring it, and refusing one that does not fit.

:func:`trainer_checkpoint` gathers everything a run needs to continue exactly (weights,
optimizer, precision scaler, callbacks, task, RNG, counters, config); :func:`restore_trainer` puts
it back. :func:`check_compatible` runs first on every load, so a checkpoint of another model,
task or configuration is refused with the mismatch named before anything is changed.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import paddle

from seqlab.checkpoint.format import FORMAT_VERSION, read_metadata
from seqlab.checkpoint.optimizer_state import (
    accumulator_name,
    expected_accumulators,
    load_optimizer_state,
    optimizer_state,
)
from seqlab.checkpoint.run_dir import ALIASES, checkpoint_file
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
            "should_stop": bool(trainer.should_stop),  # a callback's stop holds on resume
            "run_id": trainer.run_id,  # which run wrote it: see check_resume
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
    trainer.should_stop = bool(saved.pop("should_stop", False))
    trainer.run_id = saved.pop("run_id", None) or trainer.run_id
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
        want = numpy_dtype(value)
        if want is not None and saved[key].dtype != want:
            raise SeqlabError(
                f"checkpoint '{path}' does not fit this model: '{key}' is {saved[key].dtype} in the file "
                f"and {want} in the model; the file is corrupt or was saved with another precision."
            )
    for owner, accumulators in (ckpt.get("optimizer") or {}).get("accumulators", {}).items():
        if owner not in model_state:
            raise SeqlabError(
                f"checkpoint '{path}' has optimizer state for '{owner}', which this model "
                "does not have; it was saved with another architecture or config."
            )
        shape = list(model_state[owner].shape)
        param_dtype = numpy_dtype(model_state[owner])
        for suffix, value in accumulators.items():
            if list(value.shape) not in (shape, [1], []):
                raise SeqlabError(
                    f"checkpoint '{path}' does not fit this model: optimizer state '{owner}{suffix}' has "
                    f"shape {list(value.shape)}, the parameter {shape}; the file is corrupt or "
                    "was saved with another config."
                )
            # Paddle keeps moments in float32 (float64 for a float64 parameter); anything else
            # would fail inside Paddle's update at the first step.
            allowed = {np.dtype(np.float32), param_dtype if param_dtype in _FLOATS else np.dtype(np.float32)}
            if value.dtype not in allowed:
                raise SeqlabError(
                    f"checkpoint '{path}' does not fit this model: optimizer state '{owner}{suffix}' is "
                    f"{value.dtype}, where the optimizer keeps {' or '.join(sorted(map(str, allowed)))}; "
                    "the file is corrupt or was not written by seqlab."
                )


_FLOATS = {np.dtype(np.float32), np.dtype(np.float64)}


def numpy_dtype(value) -> np.dtype | None:
    """The numpy dtype a tensor or array is stored as (Paddle's bfloat16: uint16), or None if unknown."""
    if isinstance(value, np.ndarray):
        return value.dtype
    name = str(getattr(value, "dtype", "")).rsplit(".", 1)[-1]
    try:
        return np.dtype(np.uint16) if name == "bfloat16" else np.dtype(name)
    except TypeError:
        return None


# ---------------------------------------------------------------- resuming: the run's decisions


def check_resume(trainer, ckpt: dict[str, Any], path: str | os.PathLike) -> None:
    """Refuse a resume that would not continue the checkpoint's run as it was decided, before
    anything is written (the Trainer calls it after its callbacks' ``setup``).

    The rules:

    * the optimizer state has, for each parameter, exactly the accumulators this optimizer keeps;
    * ``trainer.seed`` is the checkpoint's: it sets the data order of every later step;
    * an LR schedule is present in both runs or in neither: adding one would start it at step 0
      in the middle of a run, dropping one would jump the lr back to its peak;
    * every callback state in the file loads into this run's callback of that ``state_key`` (a
      best-checkpoint callback with another ``monitor``, ``mode`` or ``window`` refuses its state);
    * the run folder holds no ``last``/``best`` checkpoint of another run, which ``--ckpt_path
      last`` or the final test would otherwise read.

    A changed callback list is only a warning: added callbacks start fresh, dropped ones' state is
    not restored.
    """
    _check_accumulators(trainer.optimizer, ckpt, path)
    seed = ((ckpt.get("config") or {}).get("trainer") or {}).get("seed")
    if seed is not None and seed != trainer.seed:
        raise SeqlabError(
            f"checkpoint '{path}' was trained with trainer.seed={seed}, but this run sets {trainer.seed}, "
            f"which would change the data order from step {ckpt['step'] + 1} on; resume with "
            f"--trainer.seed {seed} or start a new run."
        )
    had = "LR_Scheduler" in ((ckpt.get("optimizer") or {}).get("other") or {})
    has = isinstance(getattr(trainer.optimizer, "_learning_rate", None), paddle.optimizer.lr.LRScheduler)
    if had != has:
        raise SeqlabError(
            f"checkpoint '{path}' was trained {'with' if had else 'without'} an LR schedule, but this run "
            f"{'has none' if had else 'adds one'}, which would change the lr in the middle of the run; resume "
            "with the checkpoint's trainer.callbacks or start a new run."
        )
    _check_callback_states(trainer.callbacks, ckpt.get("callbacks", {}), path)
    _check_run_folder(trainer, ckpt, Path(path))


def _check_accumulators(optimizer, ckpt: dict[str, Any], path) -> None:
    expected = expected_accumulators(optimizer)
    if expected is None:
        return
    for owner, accumulators in (ckpt.get("optimizer") or {}).get("accumulators", {}).items():
        names = sorted(accumulator_name(suffix) for suffix in accumulators)
        if names != sorted(expected):
            missing = sorted(expected - set(names))
            extra = sorted(set(names) - expected)
            raise SeqlabError(
                f"checkpoint '{path}' has optimizer state for '{owner}' that does not fit "
                f"{type(optimizer).__name__} (missing {missing}, unexpected {extra}); the file is "
                "corrupt or was saved with another optimizer: pass another --ckpt_path."
            )


def _check_callback_states(callbacks, states: dict[str, Any], path) -> None:
    keys = [cb.state_key for cb in callbacks]
    added, dropped = sorted(set(keys) - set(states)), sorted(set(states) - set(keys))
    if states and (added or dropped):
        log.warning(
            "resuming from '%s' with other callbacks than its run had (added: %s; dropped: %s): added "
            "ones start fresh, dropped ones' state is not restored.",
            path,
            ", ".join(added) or "none",
            ", ".join(dropped) or "none",
        )
    for cb in callbacks:
        state = states.get(cb.state_key)
        if not state:
            continue
        try:  # on a copy: nothing is restored before the whole checkpoint is known to fit
            trial = copy.deepcopy(cb)
        except Exception:
            continue  # a callback that cannot be copied is checked when it is restored
        try:
            with _quiet():  # its warnings (e.g. another window) come once, from the real restore
                trial.load_state_dict(state)
        except SeqlabError as exc:
            raise SeqlabError(f"checkpoint '{path}': {exc}") from None
        except Exception as exc:
            raise SeqlabError(
                f"checkpoint '{path}' holds a state for callback '{cb.state_key}' that it cannot load "
                f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'no detail'}); the file is "
                "corrupt or was written by another version of the callback: pass another --ckpt_path."
            ) from None


@contextlib.contextmanager
def _quiet():
    """Warnings and lower are dropped for the duration (a trial load repeats the real one)."""
    before = logging.root.manager.disable
    logging.disable(max(before, logging.WARNING))
    try:
        yield
    finally:
        logging.disable(before)


def _check_run_folder(trainer, ckpt: dict[str, Any], path: Path) -> None:
    """A resume into a folder whose ``last``/``best`` another run wrote would test (or resume) those."""
    run_id = (ckpt.get("trainer") or {}).get("run_id")
    source = path.resolve()
    own_folder = source.parent == Path(trainer.checkpoint_dir).resolve()
    for alias in ALIASES:
        other = checkpoint_file(trainer.checkpoint_dir, alias)
        if not other.is_file() or other.resolve() == source:
            continue
        theirs = (read_metadata(other).get("trainer") or {}).get("run_id")
        same = theirs == run_id if (run_id or theirs) else own_folder  # files from before run ids: by place
        if not same:
            raise SeqlabError(
                f"run folder '{trainer.run_dir}' holds '{other.name}' of another run than checkpoint '{path}', "
                f"which the final test or --ckpt_path {alias} would read; fit into a folder of its own "
                f"(another --trainer.run_name or --trainer.root_dir) or delete '{other}'."
            )
