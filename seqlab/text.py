"""Text for people: durations and one-line class summaries, written one way everywhere."""

from __future__ import annotations

from typing import Optional


def format_duration(seconds: Optional[float], tenths_below: float = 0.0) -> str:
    """``45s``, ``3m12s``, ``1h02m``; a duration under ``tenths_below`` seconds gets a decimal
    (``2.4s``: the report's short runs), and ``None`` is ``—``."""
    if seconds is None:
        return "—"
    if seconds < tenths_below:
        return f"{max(0.0, seconds):.1f}s"
    total = max(0, int(round(seconds)))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def one_line_summary(cls: type) -> str:
    """A class's ``description``, else the first line of its docstring (CLI listings)."""
    if getattr(cls, "description", ""):
        return cls.description
    doc = (cls.__doc__ or "").strip()
    return doc.splitlines()[0] if doc else cls.__name__
