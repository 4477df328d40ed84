"""Run folders and the checkpoint aliases in them: ``last``, ``best``, or a path.

A run keeps its checkpoints in ``<run_dir>/checkpoints/{last,best}.safetensors``. This module
names those files, claims a folder for a fresh run, and maps ``--ckpt_path last|best|PATH`` and a
run's ``test_checkpoint`` rule to a file.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from seqlab.checkpoint.format import CONVERT_COMMAND, LEGACY_SUFFIX, SUFFIX
from seqlab.errors import SeqlabError

log = logging.getLogger(__name__)

LAST, BEST = "last", "best"  # the two checkpoints a run folder holds
ALIASES = (LAST, BEST)


def checkpoint_file(directory: str | os.PathLike, alias: str) -> Path:
    """``directory/<alias>.safetensors``: the one place checkpoint file names are built."""
    return Path(directory) / f"{alias}{SUFFIX}"


def prepare_run_dir(run_dir: Path, fresh: bool, overwrite: bool) -> None:
    """Before a fit writes: a fresh run claims its folder (see :func:`claim_run_dir`); make checkpoints/."""
    if fresh:
        claim_run_dir(run_dir, overwrite)
    (Path(run_dir) / "checkpoints").mkdir(parents=True, exist_ok=True)


def claim_run_dir(run_dir: Path, overwrite: bool) -> None:
    """A fresh fit must not mix with (or test) an earlier run's files in the same folder."""
    checkpoints = run_dir / "checkpoints"
    if not any(checkpoints.glob(f"*{SUFFIX}")) and not any(checkpoints.glob(f"*{LEGACY_SUFFIX}")):
        return
    if not overwrite:
        raise SeqlabError(
            f"run folder '{run_dir}' already holds checkpoints of an earlier run; resume it with "
            "--ckpt_path last, start over with --trainer.overwrite true, or choose another "
            "--trainer.root_dir."
        )
    shutil.rmtree(run_dir)


def best_or_last(checkpoint_dir: Path) -> tuple[Path, str] | None:
    """The weights a finished run is tested on: its best checkpoint if it saved one, else its last."""
    for name in (BEST, LAST):
        path = checkpoint_file(checkpoint_dir, name)
        if path.is_file():
            return path, name
    return None


def tested_weights(checkpoint_dir: Path, rule: str) -> tuple[Path, str]:
    """The checkpoint a finished fit is tested on: ``best`` (its best, else its last) or ``last``."""
    found = best_or_last(checkpoint_dir) if rule == BEST else None
    return found or (checkpoint_file(checkpoint_dir, LAST), LAST)


def resolve_ckpt_path(ckpt_path: str | None, checkpoint_dir: Path, resume: bool = False) -> Path | None:
    """Map ``last`` / ``best`` to files in ``checkpoint_dir``; any other value is a path.

    With ``resume`` (fit), ``last`` falls back to ``best`` (a run killed before its first
    periodic save), and to a fresh start with a warning when the run has no checkpoint yet, as
    Lightning's ``ckpt_path="last"`` does: the same resume command then works for every run of a
    recipe, started or not.
    """
    if ckpt_path in (None, ""):
        return None
    if ckpt_path not in ALIASES:
        return Path(ckpt_path)
    path = checkpoint_file(checkpoint_dir, ckpt_path)
    if path.is_file():
        return path
    legacy = Path(checkpoint_dir) / f"{ckpt_path}{LEGACY_SUFFIX}"
    if legacy.is_file():
        raise SeqlabError(
            f"--ckpt_path {ckpt_path}: there is no '{path}', only '{legacy}' in the old pickle "
            "format, which seqlab no longer opens because loading it can run code; if you "
            f"trust it, convert it with `{CONVERT_COMMAND} {legacy} {path} --trust` and run again."
        )
    if resume and ckpt_path == LAST:
        best = checkpoint_file(checkpoint_dir, BEST)
        if best.is_file():
            log.info("no %s; resuming from %s", path, best)
            return best
        log.warning("--ckpt_path last: no checkpoint in '%s' yet; starting this run from step 0.", checkpoint_dir)
        return None
    raise SeqlabError(f"--ckpt_path {ckpt_path}: there is no '{path}'; train this run first or pass a path.")
