"""The ``seqlab`` command: one table of subcommands, each a module of :mod:`seqlab.commands`.

    seqlab fit --recipe recipes/reverse_digits_cpu.yaml [--runs a,b] [--trainer.max_steps N]
    seqlab COMMAND --help            that command's flags (and the per-run options it takes)

This module only dispatches: it finds the command (or the closest name), generates the usage
text from the commands' own parsers, and turns a user's mistake into one line on stderr and exit
code 2. Recipes are read by :mod:`seqlab.recipe`; only the CLI (this module and
``seqlab.commands``) imports jsonargparse, and the library works without it.
"""

from __future__ import annotations

import difflib
import sys
import textwrap
from pathlib import Path

from seqlab._paddle import import_paddle

import_paddle()  # exits 2 with an install hint when no Paddle wheel is present

from seqlab.commands import (  # noqa: E402
    RUN_OPTIONS,
    Command,
    compare,
    convert_checkpoint,
    evaluate,
    export,
    fit,
    listing,
    predict,
    recipes,
    sweep,
    tokenize,
)
from seqlab.commands._runs import add_to_path  # noqa: E402
from seqlab.errors import SeqlabError  # noqa: E402
from seqlab.interrupts import TrainingInterrupted, stop_outside_training  # noqa: E402
from seqlab.log import configure_logging  # noqa: E402
from seqlab.parallel import die_with_parent  # noqa: E402

#: Every subcommand, in the order ``seqlab --help`` lists them.
COMMANDS: dict[str, Command] = {
    "fit": fit.COMMAND,
    "validate": evaluate.VALIDATE,
    "test": evaluate.TEST,
    "predict": predict.COMMAND,
    "export": export.COMMAND,
    "sweep": sweep.COMMAND,
    "compare": compare.COMMAND,
    "tokenize": tokenize.COMMAND,
    "models": listing.MODELS_COMMAND,
    "tasks": listing.TASKS_COMMAND,
    "recipes": recipes.COMMAND,
    "convert-checkpoint": convert_checkpoint.COMMAND,
}


def usage() -> str:
    """``seqlab --help``: each command's summary and usage line, from its own parser."""
    width = max(len(name) for name in COMMANDS)
    indent = " " * (width + 4)
    blocks = []
    for name, command in COMMANDS.items():
        line = " ".join(command.parser(name).format_usage().split()).removeprefix("usage: ")
        if command.run_options:
            line += " [per-run options]"
        summary = textwrap.fill(command.summary, 100, initial_indent=f"  {name:<{width}}  ", subsequent_indent=indent)
        blocks.append(summary + "\n" + textwrap.fill(line, 100, initial_indent=indent, subsequent_indent=indent + "  "))
    runs = ", ".join(f"{p}.*" if p != "--ckpt_path" else p for p in RUN_OPTIONS)
    return (
        "usage: seqlab COMMAND [flags]\n\ncommands:\n"
        + "\n".join(blocks)
        + "\n\n"
        + textwrap.fill(
            f"Per-run options ({runs}) override the recipe's settings of every selected run, e.g. "
            "--trainer.max_steps 50. `seqlab COMMAND --help` describes a command's flags and the per-run options.",
            100,
        )
        + "\n"
    )


def _check_environment() -> None:
    """The run settings (seqlab.ops.settings), checked once: a typo is one line, not a traceback."""
    from seqlab.ops.settings import run_settings

    try:
        run_settings()
    except ValueError as exc:
        raise SeqlabError(str(exc)) from None


def main(argv: list[str] | None = None) -> int:
    """Run ``seqlab ARGV``; returns the exit code (2 for a user's mistake, with one line on stderr)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    configure_logging()
    stop_outside_training()
    die_with_parent()
    add_to_path(Path.cwd())
    try:
        _check_environment()
        if not argv or argv[0] in ("-h", "--help"):
            sys.stdout.write(usage())
            return 0 if argv else 2
        name, rest = argv[0], argv[1:]
        command = COMMANDS.get(name)
        if command is None:
            close = difflib.get_close_matches(name, list(COMMANDS), n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise SeqlabError(f"unknown command '{name}'.{hint} Run `seqlab --help` for the list.")
        if any(a in ("-h", "--help") for a in rest):
            sys.stdout.write(command.help(name))
            return 0
        return command.invoke(name, rest)
    except TrainingInterrupted as exc:
        sys.stderr.write(f"{exc}\n")
        if exc.resume:
            sys.stderr.write(f"resume with: {exc.resume}\n")
        return exc.exit_code
    except SeqlabError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("aborted; the last checkpoint written is intact (resume with --ckpt_path last).\n")
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
