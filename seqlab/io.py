"""Atomic file writes: a reader sees the old file or the new one, never half of one.

Every file seqlab writes for later reading (checkpoints, config.yaml, metrics.json) goes through
here. The data is written to ``<name>.tmp`` beside the target, fsynced, renamed over the target
(``os.replace`` is atomic on POSIX and Windows), and the folder is fsynced so that the rename
itself survives a power cut. If anything fails before the rename, the temporary file is removed
and the previous file is untouched.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

TMP_SUFFIX = ".tmp"


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Replace ``path`` with what ``write(tmp_path)`` puts in a temporary file; returns ``path``.

    For writers that want a file name rather than bytes (e.g. ``safetensors.numpy.save_file``,
    which streams tensors to disk without building the whole file in memory first).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + TMP_SUFFIX)
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
