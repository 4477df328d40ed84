"""Atomic file writes: a reader sees the old file or the new one, never half of one.

Every file seqlab writes for later reading (checkpoints, config.yaml, metrics.json) goes through
here. The data is written to ``<name>.<pid>.<random>.tmp`` beside the target (a name of its own,
so two writers never write into one temporary file), fsynced, renamed over the target
(``os.replace`` is atomic on POSIX and Windows), and the folder is fsynced so that the rename
itself survives a power cut. If anything fails before the rename, the temporary file is removed
and the previous file is untouched; what a killed writer left (its pid no longer runs) is removed
by the next write of the same file. A write that fails because the disk is full (or a file-size
limit, ``ulimit -f``, is reached) becomes one sentence naming the folder (:class:`DiskFull`).

It also holds :func:`check_name`, the rule for names that become paths under a folder.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
from collections.abc import Callable
from pathlib import Path

from seqlab.errors import SeqlabError

TMP_SUFFIX = ".tmp"

# ENOSPC (no space left), EFBIG (a file-size limit: RLIMIT_FSIZE, with SIGXFSZ ignored as Python
# does), EDQUOT (a quota). Rust writers (safetensors) report them as "... (os error N)".
_DISK_FULL = {errno.ENOSPC, errno.EFBIG} | ({errno.EDQUOT} if hasattr(errno, "EDQUOT") else set())
_OS_ERROR = re.compile(r"\(os error (\d+)\)")


class DiskFull(SeqlabError):
    """A write failed because the disk is full or a file-size limit was reached."""


def disk_full_reason(exc: BaseException | None) -> str | None:
    """The system's words (e.g. "No space left on device") when ``exc``, or an exception it was
    raised from, is a full disk, a quota or a file-size limit; None otherwise."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in _DISK_FULL:
            return os.strerror(exc.errno)
        found = _OS_ERROR.search(str(exc)) if not isinstance(exc, OSError) else None
        if found and int(found.group(1)) in _DISK_FULL:
            return os.strerror(int(found.group(1)))
        exc = exc.__cause__ or exc.__context__
    return None


def disk_full(exc: BaseException, folder: str | os.PathLike) -> DiskFull | None:
    """``exc`` as one sentence naming ``folder`` when it is a full disk (else None; a
    :class:`SeqlabError` already says what happened and is left as it is)."""
    reason = None if isinstance(exc, SeqlabError) else disk_full_reason(exc)
    if reason is None:
        return None
    return DiskFull(
        f"could not write in {folder}: disk full or file-size limit ({reason}); every file there "
        "was written whole or not at all, and the last checkpoint written is intact. Free some space "
        "(or raise the limit), then resume with --ckpt_path last."
    )


def temp_name(path: Path) -> Path:
    """``<path>.<pid>.<random>.tmp``: the temporary file of one write of ``path``."""
    return path.with_name(f"{path.name}.{os.getpid()}.{secrets.token_hex(4)}{TMP_SUFFIX}")


def _remove_dead_leftovers(path: Path) -> None:
    """Temporary files of ``path`` whose writer's process is gone (killed mid-write) are removed."""
    pattern = re.compile(re.escape(path.name) + r"\.(\d+)\.[0-9a-f]+" + re.escape(TMP_SUFFIX) + "$")
    try:
        candidates = list(path.parent.iterdir())
    except OSError:
        return
    for leftover in candidates:
        match = pattern.match(leftover.name)
        if match and not _pid_alive(int(match.group(1))):
            leftover.unlink(missing_ok=True)


def remove_dead_temp_files(folder: Path) -> list[Path]:
    """Every temporary file in ``folder`` whose writer's process is gone is removed (what a
    kill -9 mid-write left of any file, also one that is never written again); returns them."""
    pattern = re.compile(r".+\.(\d+)\.[0-9a-f]+" + re.escape(TMP_SUFFIX) + "$")
    removed = []
    try:
        candidates = list(Path(folder).iterdir())
    except OSError:
        return removed
    for leftover in candidates:
        match = pattern.match(leftover.name)
        if match and leftover.is_file() and not _pid_alive(int(match.group(1))):
            leftover.unlink(missing_ok=True)
            removed.append(leftover)
    return removed


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True  # this process's own write of the file, if any, is still going on
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True  # it runs (as another user), or we cannot tell: leave it
    return True


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Replace ``path`` with what ``write(tmp_path)`` puts in a temporary file; returns ``path``.

    For writers that want a file name rather than bytes (e.g. ``safetensors.numpy.save_file``,
    which streams tensors to disk without building the whole file in memory first).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(path)
    try:
        write(tmp)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)  # the data is on disk before the rename makes it visible
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        reason = None if isinstance(exc, SeqlabError) else disk_full_reason(exc)
        if reason is not None:
            raise DiskFull(
                f"could not write {path.name} in {path.parent}: disk full or file-size limit ({reason}); "
                f"the previous {path.name}, if any, is intact and nothing half-written was left. Free some "
                "space (or raise the limit), then run again (a training run: resume with --ckpt_path last)."
            ) from exc
        raise
    _fsync_dir(path.parent)
    _remove_dead_leftovers(path)
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes | bytearray | memoryview) -> Path:
    """Replace ``path`` with ``data`` atomically and durably; returns ``path``."""
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """:func:`atomic_write_bytes` for text."""
    return atomic_write_bytes(path, text.encode(encoding))


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (a no-op where folders cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on a folder; the rename is still atomic
    finally:
        os.close(fd)


def check_name(value: object, key: str, nested: bool = False) -> str:
    """``value`` is one plain name (a run, a file in a run folder): not empty, not absolute, no
    ``..`` and no path separator, so what it names stays inside its folder.

    ``nested``: ``/``-separated plain names are allowed (an experiment: a sweep's points live in
    the experiment ``<recipe>/sweep``); absolute paths and ``..`` still are not.
    """
    name = str(value)
    if nested and not os.path.isabs(name) and "\\" not in name:
        for part in name.split("/"):
            check_name(part, key)
        return name
    bad = None
    if not name.strip() or name == ".":
        bad = "is not a name"
    elif os.path.isabs(name) or name.startswith(("/", "\\")):
        bad = "is an absolute path"
    elif ".." in re.split(r"[/\\]", name):
        bad = "holds '..'"
    elif "/" in name or "\\" in name or (os.altsep and os.altsep in name):
        bad = "holds a path separator"
    if bad:
        raise SeqlabError(
            f"{key} {name!r} {bad}, so it could name a path outside its folder; give it a plain name "
            "such as 'run1' (letters, digits, '-', '_', '.')."
        )
    return name
