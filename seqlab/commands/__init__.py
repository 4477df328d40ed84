"""The ``seqlab`` subcommands, one module each; ``seqlab.cli`` holds their table.

A command module defines its flags once, as a jsonargparse parser (typed, with help strings),
and a function that runs them. The commands that train or load a recipe's runs also take the
per-run dotted options (``--task.*``, ``--model.*``, ``--trainer.*``, ``--ckpt_path``), checked
against the classes' signatures by the run parser of :mod:`seqlab.commands._runs`. jsonargparse
has no ``parse_known_args``, so the two are told apart by their prefix before either parses.

``--help`` of a command and ``seqlab --help`` are generated from these parsers: there is no
hand-written usage text to keep in step.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass

from jsonargparse import ArgumentParser, Namespace

from seqlab.commands._explain import explain
from seqlab.errors import SeqlabError

#: Flags that belong to each run (the run parser), not to the command.
RUN_OPTIONS = ("--task", "--model", "--trainer", "--ckpt_path")


@dataclass(frozen=True)
class Invocation:
    """One call of a command.

    Attributes:
        name: the command as typed (``validate`` and ``test`` share a module).
        args: the command's own flags, parsed.
        overrides: the per-run options, in the order given.
        argv: everything after the command's name, as given (resume commands repeat it).
    """

    name: str
    args: Namespace
    overrides: list[str]
    argv: list[str]


@dataclass(frozen=True)
class Command:
    """One ``seqlab`` subcommand: its one-line summary, its flags, what it runs.

    Attributes:
        summary: the line of ``seqlab --help``, and the start of the command's ``--help``.
        flags: adds the command's own flags to its parser.
        run: runs the command; returns the exit code.
        run_options: the command also takes the per-run options (:data:`RUN_OPTIONS`).
    """

    summary: str
    flags: Callable[[ArgumentParser], None]
    run: Callable[[Invocation], int]
    run_options: bool = False

    def parser(self, name: str) -> ArgumentParser:
        """The parser of the command's own flags."""
        parser = ArgumentParser(
            prog=f"seqlab {name}",
            description=self.summary[:1].upper() + self.summary[1:] + ".",
            exit_on_error=False,
            allow_abbrev=False,  # otherwise --max_new could silently mean --max_new_tokens
            print_config=None,  # --print_config is seqlab's own flag (the resolved recipe)
        )
        self.flags(parser)
        return parser

    def help(self, name: str) -> str:
        """``seqlab NAME --help``: the command's flags, then the per-run options if it takes them."""
        text = self.parser(name).format_help()
        if self.run_options:
            from seqlab.commands._runs import build_run_parser

            text += "\n" + build_run_parser(name).format_help()
        return text

    def invoke(self, name: str, argv: list[str]) -> int:
        """Parse ``argv`` (the words after the command's name) and run the command."""
        own, overrides = split_run_options(argv) if self.run_options else (list(argv), [])
        parser = self.parser(name)
        try:
            args = parser.parse_args(own)
        except Exception as exc:  # jsonargparse's ArgumentError, or a type error inside it
            names = {a.dest: (a.option_strings or [a.metavar or a.dest.upper()])[-1] for a in parser._actions}
            raise explain(exc, f"seqlab {name}", name, names) from None
        return self.run(Invocation(name, args, overrides, list(argv)))


def split_run_options(argv: list[str]) -> tuple[list[str], list[str]]:
    """``argv`` as (the command's own flags, the per-run options), each with its values.

    A word that starts with ``--`` begins a flag; the words after it, up to the next flag, are
    its values. A flag goes to the run parser when its name is one of :data:`RUN_OPTIONS` or
    starts with one and a dot (``--trainer.max_steps``); the rest go to the command's parser.
    """
    own: list[str] = []
    run: list[str] = []
    target = own
    for word in argv:
        if word.startswith("--"):
            key = word.partition("=")[0]
            is_run = any(key == p or key.startswith(p + ".") for p in RUN_OPTIONS)
            target = run if is_run else own
        target.append(word)
    return own, run


def at_least(flag: str, value, low):
    """``value`` of ``flag`` when it is None or at least ``low``; otherwise a one-line error."""
    if value is not None and value < low:
        raise SeqlabError(f"{flag} must be at least {low}, got {value}.")
    return value


def echo(line: str) -> None:
    """Write a line from a child process (a run of ``--parallel``, a rank) to the terminal at once."""
    sys.stdout.write(line)
    sys.stdout.flush()
