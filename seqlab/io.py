"""Atomic file writes: a reader sees the old file or the new one, never half of one.

Every file seqlab writes for later reading (checkpoints, config.yaml, metrics.json) goes through
here. The data is written to ``<name>.<pid>.<random>.tmp`` beside the target (a name of its own,
so two writers never write into one temporary file), fsynced, renamed over the target
(``os.replace`` is atomic on POSIX and Windows), and the folder is fsynced so that the rename
itself survives a power cut. If anything fails before the rename, the temporary file is removed
and the previous file is untouched; what a killed writer left (its pid no longer runs) is removed
by the next write of the same file.

It also holds :func:`check_name`, the rule for names that become paths under a folder.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Callable
from pathlib import Path

from seqlab.errors import SeqlabError

TMP_SUFFIX = ".tmp"


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
    except BaseException:
        tmp.unlink(missing_ok=True)
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
