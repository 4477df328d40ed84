"""Conversion of format-1 checkpoints (``paddle.save`` pickles) to the safetensors format.

The one place seqlab unpickles anything, and only after the user says ``--trust``: loading a
pickle runs any code it carries. :func:`seqlab.checkpoint.format.load_checkpoint` refuses such
files unread and names the command that leads here.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import paddle

from seqlab.checkpoint.format import (
    FORMAT_VERSION,
    atomic_save,
    load_checkpoint,
    looks_like_pickle,
    looks_like_safetensors,
)
from seqlab.errors import SeqlabError
from seqlab.rng import numpy_legacy_state_to_plain, paddle_state_to_plain, python_state_to_plain


def _legacy_rng_to_plain(blob: Any) -> dict[str, Any]:
    """Format 1 kept the three RNG states as one pickled uint8 array; unpickle it (trusted) and convert."""
    import pickle

    state = pickle.loads(np.asarray(blob, dtype=np.uint8).tobytes())  # only after --trust
    return {
        "python": python_state_to_plain(state["python"]),
        "numpy": numpy_legacy_state_to_plain(state["numpy"]),
        "paddle": [paddle_state_to_plain(s) for s in state["paddle"]],
    }


def convert_legacy_checkpoint(src: str | os.PathLike, dst: str | os.PathLike, trust: bool = False) -> dict[str, Any]:
    """Convert a format-1 checkpoint (a ``paddle.save`` pickle) to the safetensors format.

    This unpickles ``src``, which runs any code the file carries, so it needs ``trust=True``:
    the user's statement that the file comes from a source they trust (e.g. their own runs).
    Returns the converted checkpoint as :func:`load_checkpoint` reads it back from ``dst``.
    """
    src, dst = Path(src), Path(dst)
    if not trust:
        raise SeqlabError(
            f"converting '{src}' means unpickling it, which runs any code the file carries; add "
            "--trust if you know where it comes from (e.g. your own earlier run)."
        )
    if not src.is_file():
        raise SeqlabError(f"'{src}' does not exist; pass the old .pdckpt file to convert.")
    if dst.exists():
        raise SeqlabError(f"'{dst}' already exists; choose another name for the converted checkpoint or delete it.")
    size = src.stat().st_size
    with open(src, "rb") as f:
        head = f.read(16)
        f.seek(max(size - 1, 0))
        last = f.read(1)
    if looks_like_safetensors(head, size):
        raise SeqlabError(f"'{src}' is already a safetensors file; there is nothing to convert.")
    if not looks_like_pickle(head, last):
        raise SeqlabError(f"'{src}' is not a pickle, so not an old seqlab checkpoint; there is nothing to convert.")
    try:
        old = paddle.load(str(src))  # the one place seqlab unpickles: the user passed --trust
    except Exception as exc:
        raise SeqlabError(
            f"'{src}' could not be read by paddle.load ({type(exc).__name__}); it is "
            "corrupt or not an old seqlab checkpoint."
        ) from None
    if not isinstance(old, dict) or old.get("format_version") != 1 or "rng" not in old:
        raise SeqlabError(
            f"'{src}' is not a format-1 seqlab checkpoint (it lacks format_version 1 or "
            "rng); there is nothing to convert."
        )
    new = dict(old, format_version=FORMAT_VERSION, rng=_legacy_rng_to_plain(old["rng"]))
    try:
        atomic_save(new, dst)
    except TypeError as exc:
        raise SeqlabError(f"'{src}' holds a value the new format cannot store: {exc}") from None
    return load_checkpoint(dst)
