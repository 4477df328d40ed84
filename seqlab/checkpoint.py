"""Checkpoint files: one file per checkpoint, written atomically, checked when loaded.

A checkpoint is a ``paddle.save``d dict. It is first written to ``<path>.tmp``, fsynced, then
renamed over ``<path>``: a crash mid-write leaves the previous checkpoint intact, never a torn one.
"""

from __future__ import annotations

import logging
import os
import pickle
import random
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from seqlab._paddle import import_paddle
from seqlab.errors import SeqlabError

paddle = import_paddle()
log = logging.getLogger(__name__)

FORMAT_VERSION = 1
SUFFIX = ".pdckpt"


def capture_rng_state() -> np.ndarray:
    """Python, numpy and Paddle generator states, pickled into one uint8 array.

    ``paddle.save`` accepts neither Paddle's GeneratorState objects nor ``bytes``, and walking
    Python's 625-int state object by object made every save ~4 ms slower; one array is cheap.
    """
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "paddle": paddle.get_rng_state()}
    return np.frombuffer(pickle.dumps(state), dtype=np.uint8).copy()


def restore_rng_state(blob: np.ndarray) -> None:
    state = pickle.loads(np.asarray(blob, dtype=np.uint8).tobytes())
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    paddle.set_rng_state(state["paddle"])


def optimizer_state(optimizer, model) -> dict[str, Any]:
    """The optimizer's state keyed by the model's structural names (``e.weight``).

    Paddle keys accumulators by auto-generated parameter names (``embedding_2.w_0_moment1_0``)
    that depend on how many layers the process created before, so they differ between the
    process that saved and the one that resumes. Paddle requires the LR scheduler's state
    (``LR_Scheduler``) beside them, so it is kept as is.
    """
    by_name = {p.name: key for key, p in model.state_dict().items()}
    names = sorted(by_name, key=len, reverse=True)  # longest first: no prefix ambiguity
    state: dict[str, Any] = {"accumulators": {}, "other": {}}
    for key, value in optimizer.state_dict().items():
        owner = next((n for n in names if key.startswith(n + "_")), None)
        if owner is None:
            state["other"][key] = value
        else:
            state["accumulators"].setdefault(by_name[owner], {})[key[len(owner):]] = value
    return state


def load_optimizer_state(optimizer, model, state: dict[str, Any]) -> None:
    """Inverse of :func:`optimizer_state` for this process's parameter names."""
    params = model.state_dict()
    restored = dict(state.get("other", {}))
    for structural, accumulators in state.get("accumulators", {}).items():
        name = params[structural].name
        for suffix, value in accumulators.items():
            restored[name + suffix] = value
    with warnings.catch_warnings():
        # LinearWarmup keeps its inner scheduler's state under an extra key, which Paddle's base
        # scheduler reports as "unused" before LinearWarmup reads it.
        warnings.filterwarnings("ignore", message="There are some unused values")
        optimizer.set_state_dict(restored)


def atomic_save(obj: dict[str, Any], path: str | os.PathLike) -> Path:
    """``paddle.save`` ``obj`` to ``path`` through a fsynced temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    paddle.save(obj, str(tmp))
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)
    return path


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint, turning every way it can be wrong into one clear :class:`SeqlabError`."""
    path = Path(path)
    if not path.is_file():
        raise SeqlabError(f"checkpoint '{path}' does not exist; check the path or pass --ckpt_path last|best.")
    try:
        ckpt = paddle.load(str(path))
    except Exception as exc:  # paddle raises many types for a truncated or foreign file
        raise SeqlabError(
            f"checkpoint '{path}' is unreadable ({type(exc).__name__}); it is corrupt or not a "
            "seqlab checkpoint: pass another --ckpt_path or delete it."
        ) from None
    if not isinstance(ckpt, dict) or "format_version" not in ckpt:
        raise SeqlabError(f"'{path}' is not a seqlab checkpoint (no format_version); pass a .pdckpt written by seqlab.")
    if ckpt["format_version"] > FORMAT_VERSION:
        raise SeqlabError(
            f"checkpoint '{path}' has format {ckpt['format_version']}, newer than this seqlab "
            f"understands ({FORMAT_VERSION}); upgrade seqlab to load it."
        )
    return ckpt


def check_compatible(ckpt: dict[str, Any], path: str | os.PathLike, model_name: str | None,
                     task_name: str | None, model_state: dict[str, Any],
                     config: dict[str, Any] | None = None) -> None:
    """Refuse a checkpoint made for another model, task or configuration, naming the mismatch.

    With ``config`` (the resolved config of the run), the model's and the task's ``init_args``
    must equal the checkpoint's: resuming with another ``digit_max`` or ``batch_size`` would
    silently continue a different experiment. Trainer settings (``max_steps``...) may change.
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


def write_text_atomic(path: Path, text: str) -> None:
    """Write a small text file (config, metrics) so readers never see half of it."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def claim_run_dir(run_dir: Path, overwrite: bool) -> None:
    """A fresh fit must not mix with (or test) an earlier run's files in the same folder."""
    if not any((run_dir / "checkpoints").glob(f"*{SUFFIX}")):
        return
    if not overwrite:
        raise SeqlabError(
            f"run folder '{run_dir}' already holds checkpoints of an earlier run; resume it with "
            "--ckpt_path last, start over with --trainer.overwrite true, or choose another "
            "--trainer.root_dir."
        )
    shutil.rmtree(run_dir)


LAST, BEST = "last", "best"  # the two checkpoint names a run folder holds


def checkpoint_file(checkpoint_dir: Path, name: str) -> Path:
    """``checkpoints/last.pdckpt`` and ``checkpoints/best.pdckpt``: the one place names are made."""
    return Path(checkpoint_dir) / f"{name}{SUFFIX}"


def best_or_last(checkpoint_dir: Path) -> tuple[Path, str] | None:
    """The weights a finished run is tested on: its best checkpoint if it saved one, else its last."""
    for name in (BEST, LAST):
        path = checkpoint_file(checkpoint_dir, name)
        if path.is_file():
            return path, name
    return None


def resolve_ckpt_path(ckpt_path: str | None, checkpoint_dir: Path, resume: bool = False) -> Path | None:
    """Map ``last`` / ``best`` to files in ``checkpoint_dir``; any other value is a path.

    With ``resume`` (fit), ``last`` falls back to ``best`` (a run killed before its first
    periodic save), and to a fresh start with a warning when the run has no checkpoint yet, as
    Lightning's ``ckpt_path="last"`` does: the same resume command then works for every run of a
    recipe, started or not.
    """
    if ckpt_path in (None, ""):
        return None
    if ckpt_path in (LAST, BEST):
        path = checkpoint_file(checkpoint_dir, ckpt_path)
        if path.is_file():
            return path
        if resume and ckpt_path == LAST:
            best = checkpoint_file(checkpoint_dir, BEST)
            if best.is_file():
                log.info("no %s; resuming from %s", path, best)
                return best
            log.warning("--ckpt_path last: no checkpoint in '%s' yet; starting this run from step 0.",
                        checkpoint_dir)
            return None
        raise SeqlabError(
            f"--ckpt_path {ckpt_path}: there is no '{path}'; train this run first or pass a path."
        )
    return Path(ckpt_path)


def trainer_checkpoint(trainer, meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """Everything needed to continue ``trainer``'s run exactly, as one dict (before callbacks add theirs)."""
    from seqlab.registry import MODELS, TASKS

    return {
        "format_version": FORMAT_VERSION,
        "step": trainer.global_step,
        "model": trainer.model.state_dict(),
        "optimizer": optimizer_state(trainer.optimizer, trainer.model),
        "precision": trainer.precision.state_dict(),
        "callbacks": {cb.state_key: cb.state_dict() for cb in trainer.callbacks},
        "task": trainer.task.state_dict(),
        "rng": capture_rng_state(),
        "trainer": {**trainer.counters, "wall_time_s": trainer.wall_time_s(),
                    "last_val_metrics": trainer.last_val_metrics},
        "config": trainer.config,
        "meta": dict(meta or {}),
        "model_name": MODELS.name_of(type(trainer.model)),
        "task_name": TASKS.name_of(type(trainer.task)),
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
