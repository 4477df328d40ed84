"""The comparison rule shared by monitoring callbacks (best checkpoint, early stopping)."""

from __future__ import annotations

import math

from seqlab.errors import SeqlabError

MODES = ("min", "max")


def check_mode(owner: str, mode: str) -> str:
    if mode not in MODES:
        raise SeqlabError(f"{owner}: mode must be 'min' or 'max', got {mode!r}.")
    return mode


def improves(value: float, best: float | None, mode: str, min_delta: float = 0.0) -> bool:
    """Whether ``value`` beats ``best`` by more than ``min_delta`` (NaN never does)."""
    if math.isnan(value):
        return False
    if best is None:
        return True
    return value < best - min_delta if mode == "min" else value > best + min_delta
