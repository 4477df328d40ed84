"""``seqlab recipes``: the recipes that come with seqlab, each with the first line of its header."""

from __future__ import annotations

import sys

from jsonargparse import ArgumentParser

from seqlab.commands import Command, Invocation
from seqlab.recipe import packaged_recipes


def flags(parser: ArgumentParser) -> None:
    """No flags."""


def list_recipes(call: Invocation) -> int:
    recipes = packaged_recipes()
    width = max((len(name) for name in recipes), default=0)
    for name, path in recipes.items():
        first = next(
            (
                ln.lstrip("# ").strip()
                for ln in path.read_text(encoding="utf-8").splitlines()
                if ln.startswith("#") and ln.strip("# ")
            ),
            "",
        )
        sys.stdout.write(f"{name:<{width}}  {first}\n")
    example = next(iter(recipes), "NAME")
    folder = next(iter(recipes.values())).parent if recipes else "-"
    sys.stdout.write(f"\nRun one by name (`seqlab fit --recipe {example}`); they are in {folder}.\n")
    return 0


COMMAND = Command("list the recipes that come with seqlab (usable by name: --recipe NAME)", flags, list_recipes)
