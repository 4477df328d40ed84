"""``seqlab compare runs/<experiment>``: rebuild an experiment's report from its finished runs."""

from __future__ import annotations

import sys
from pathlib import Path

from jsonargparse import ArgumentParser

from seqlab.commands import Command, Invocation
from seqlab.errors import SeqlabError


def flags(parser: ArgumentParser) -> None:
    parser.add_argument(
        "folder", metavar="runs/<experiment>", type=str, help="The folder holding the runs: runs/<experiment>."
    )


def compare(call: Invocation) -> int:
    root = Path(call.args.folder)
    if not root.is_dir():
        raise SeqlabError(f"'{root}' is not a folder; pass runs/<experiment>, e.g. runs/reverse_digits_cpu.")
    from seqlab.report import write_report

    paths = write_report(root)
    if not paths:
        raise SeqlabError(f"no finished runs (metrics.json) under '{root}'; train a recipe first.")
    for path in paths:
        sys.stdout.write(f"{path}\n")
    return 0


COMMAND = Command("write report.md, loss.png and the task's chart for runs/<experiment>", flags, compare)
