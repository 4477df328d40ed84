"""Run folders and the checkpoint aliases in them: ``last``, ``best``, or a path.

A run keeps its checkpoints in ``<run_dir>/checkpoints/{last,best}.safetensors``. This module
names those files, claims a folder for a fresh run, and maps ``--ckpt_path last|best|PATH`` and a
run's ``test_checkpoint`` rule to a file.

One writer per run folder: a fit holds ``fcntl.flock`` on ``<run_dir>/.seqlab.lock`` (which names
its pid) from before its first write to its end, so a second fit of the same folder is refused;
the OS drops the lock with its process, so a kill -9 leaves none behind. A folder seqlab creates
for a run carries ``.seqlab-run``; ``overwrite`` empties only such a folder.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
from pathlib import Path

from seqlab.checkpoint.format import CONVERT_COMMAND, LEGACY_SUFFIX, SUFFIX
from seqlab.errors import SeqlabError
from seqlab.io import remove_dead_temp_files

log = logging.getLogger(__name__)

LAST, BEST = "last", "best"  # the two checkpoints a run folder holds
ALIASES = (LAST, BEST)
LOCK_FILE = ".seqlab.lock"  # flock-ed by the fit writing the folder; holds its pid
MARKER_FILE = ".seqlab-run"  # written by seqlab in a run folder it created: overwrite may empty it
_held: dict[str, int] = {}  # run folders this process holds the lock of -> the lock file's descriptor


def checkpoint_file(directory: str | os.PathLike, alias: str) -> Path:
    """``directory/<alias>.safetensors``: the one place checkpoint file names are built."""
    return Path(directory) / f"{alias}{SUFFIX}"


def prepare_run_dir(run_dir: Path, fresh: bool, overwrite: bool) -> None:
    """Before a fit writes: lock the folder (:func:`lock_run_dir`), a fresh run claims it (see
    :func:`claim_run_dir`), mark a folder seqlab made, make checkpoints/ and remove what writers
    killed mid-write left there (a best checkpoint, say, that is not written again)."""
    run_dir = Path(run_dir)
    made = _is_empty(run_dir)  # seqlab makes it now (an empty folder holds nothing to lose)
    lock_run_dir(run_dir)
    if fresh:
        claim_run_dir(run_dir, overwrite)
    if made:
        (run_dir / MARKER_FILE).write_text("a run folder seqlab created; --trainer.overwrite may empty it\n")
    (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    remove_dead_temp_files(run_dir / "checkpoints")


def check_claim(run_dir: Path, overwrite: bool) -> None:
    """What :func:`claim_run_dir` would refuse, without changing anything: an earlier run's
    checkpoints without ``overwrite``, or with it in a folder seqlab did not mark as its own."""
    run_dir = Path(run_dir)
    checkpoints = run_dir / "checkpoints"
    if not any(checkpoints.glob(f"*{SUFFIX}")) and not any(checkpoints.glob(f"*{LEGACY_SUFFIX}")):
        return
    if not overwrite:
        raise SeqlabError(
            f"run folder '{run_dir}' already holds checkpoints of an earlier run; resume it with "
            "--ckpt_path last, start over with --trainer.overwrite true, or choose another "
            "--trainer.root_dir."
        )
    if not (run_dir / MARKER_FILE).is_file():
        raise SeqlabError(
            f"run folder '{run_dir}' holds an earlier run but no '{MARKER_FILE}' marker (it was made "
            "by an older seqlab or by hand), so --trainer.overwrite will not delete it; delete it by "
            "hand, or choose another --trainer.root_dir."
        )


def claim_run_dir(run_dir: Path, overwrite: bool) -> None:
    """A fresh fit must not mix with (or test) an earlier run's files in the same folder:
    with ``overwrite`` the folder seqlab made is emptied (its lock and marker kept)."""
    run_dir = Path(run_dir)
    checkpoints = run_dir / "checkpoints"
    if not any(checkpoints.glob(f"*{SUFFIX}")) and not any(checkpoints.glob(f"*{LEGACY_SUFFIX}")):
        return
    check_claim(run_dir, overwrite)
    for entry in run_dir.iterdir():
        if entry.name in (LOCK_FILE, MARKER_FILE):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def _is_empty(folder: Path) -> bool:
    """``folder`` does not exist, or holds nothing but its lock file."""
    try:
        return all(entry.name == LOCK_FILE for entry in folder.iterdir())
    except FileNotFoundError:
        return True


def lock_run_dir(run_dir: Path) -> None:
    """Hold the run folder's lock for this process until :func:`release_run_dir` (or its end).

    Another process holding it is one sentence naming its pid; this process taking it again is a no-op.
    """
    run_dir = Path(run_dir)
    key = str(run_dir.resolve())
    if _holds(key, run_dir):
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = _pid_in(fd)
        os.close(fd)
        raise _busy(run_dir, holder) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _held[key] = fd


def release_run_dir(run_dir: Path | None = None) -> None:
    """Let go of the lock of ``run_dir`` (of every run folder this process holds when None)."""
    keys = list(_held) if run_dir is None else [str(Path(run_dir).resolve())]
    for key in keys:
        fd = _held.pop(key, None)
        if fd is not None:
            os.close(fd)  # closing the descriptor releases the flock


def check_run_dir_free(run_dir: Path) -> None:
    """Refuse a run folder whose lock another live process holds (its fit is writing there);
    probes without creating or changing anything."""
    run_dir = Path(run_dir)
    lock = run_dir / LOCK_FILE
    if _holds(str(run_dir.resolve()), run_dir) or not lock.is_file():
        return
    try:
        fd = os.open(lock, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return  # unreadable: the lock taken before the first write says what is wrong
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise _busy(run_dir, _pid_in(fd)) from None
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _holds(key: str, run_dir: Path) -> bool:
    """This process holds the lock of ``run_dir``, on the lock file that is there now (a folder
    deleted and made again since holds a new file, which the old lock does not cover)."""
    fd = _held.get(key)
    if fd is None:
        return False
    try:
        held, there = os.fstat(fd), os.stat(run_dir / LOCK_FILE)
        if (held.st_dev, held.st_ino) == (there.st_dev, there.st_ino):
            return True
    except OSError:
        pass
    release_run_dir(run_dir)
    return False


def _pid_in(fd: int) -> int | None:
    try:
        return int(os.pread(fd, 32, 0).decode().strip())
    except (OSError, ValueError):
        return None  # the holder has not written its pid yet


def _busy(run_dir: Path, pid: int | None) -> SeqlabError:
    who = f"seqlab process {pid}" if pid else "another seqlab process"
    return SeqlabError(
        f"run folder '{run_dir}' is in use by {who}, which is writing it; wait for it to end or stop it, "
        "or choose another --trainer.root_dir."
    )


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
