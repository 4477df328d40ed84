"""``seqlab models`` and ``seqlab tasks``: the registered plugins, one line each."""

from __future__ import annotations

import sys

from jsonargparse import ArgumentParser

from seqlab.commands import Command, Invocation
from seqlab.registry import MODELS, TASKS, Registry, missing_requirement
from seqlab.trainer import seed_everything


def flags(parser: ArgumentParser) -> None:
    """No flags."""


def rows(registry: Registry) -> list[tuple[str, str, str]]:
    """(name, what it needs or its size, summary) per registered class."""
    table = []
    for name, cls in registry.items():
        extra, summary = "", cls.summary()
        if missing_requirement(cls):  # listed, but it cannot be built here
            extra = f"needs: {missing_requirement(cls)}"
        elif registry is MODELS:
            try:
                seed_everything(0)
                extra = f"{cls().num_parameters():>10,d} params"
            except Exception as exc:  # a plugin that can't build with defaults is still listed, and why
                extra = f"{'(' + type(exc).__name__ + ')':>17}"
                reason = (str(exc).strip().splitlines() or [""])[0].rstrip(".")
                summary = f"{summary} (cannot build with its defaults: {type(exc).__name__}: {reason})"
        table.append((name, extra, summary))
    return table


def listing(call: Invocation) -> int:
    table = rows(MODELS if call.name == "models" else TASKS)
    width = max((len(r[0]) for r in table), default=4)
    extra_width = max((len(r[1]) for r in table), default=0)
    for name, extra, summary in table:
        sys.stdout.write(f"{name:<{width}}  {extra:<{extra_width}}  {summary}\n")
    return 0


MODELS_COMMAND = Command("list registered models with their parameter counts", flags, listing)
TASKS_COMMAND = Command("list registered tasks", flags, listing)
