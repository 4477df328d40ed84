"""``seqlab sweep``: train every grid point x seed of a recipe's runs, then write the sweep report.

The planning, the selection on validation and the report are :mod:`seqlab.sweep`'s; this module
reads the flags, checks every grid value against its run's options before anything trains, and
starts one ``seqlab fit`` child per point that is not finished yet.
"""

from __future__ import annotations

import logging
import shlex
import sys
from pathlib import Path
from typing import Optional

from jsonargparse import ArgumentParser

from seqlab.commands import Command, Invocation, echo
from seqlab.commands._explain import explain
from seqlab.commands._runs import Runs, add_parallel_flag, add_recipe_flags, dump_config, parse_runs
from seqlab.commands.fit import child_command
from seqlab.errors import SeqlabError
from seqlab.interrupts import TrainingInterrupted
from seqlab.parallel import run_in_children
from seqlab.recipe import import_class

log = logging.getLogger("seqlab")


def flags(parser: ArgumentParser) -> None:
    add_recipe_flags(parser, print_config=False)
    add_parallel_flag(parser)
    parser.add_argument(
        "--grid",
        metavar="[RUN:]KEY=v1,v2",
        type=str,
        action="append",
        default=[],
        help="KEY=v1,v2,...: values of a dotted per-run option, e.g. trainer.optimizer.lr=1e-3,2e-3 "
        "(repeat --grid for more keys); RUN:KEY=v1,v2 gives one run its own values.",
    )
    parser.add_argument(
        "--seeds", metavar="N", type=int, default=1, help="Seeds per grid point: the run's seed, +1, ..."
    )
    parser.add_argument(
        "--metric",
        metavar="NAME[:max|min]",
        type=Optional[str],
        default=None,
        help="NAME[:max|min]: the validation metric to select on (default: the task's own); without "
        ":max or :min, the metric's direction (loss, perplexity: min).",
    )


def sweep(call: Invocation) -> int:
    from seqlab.sweep import parse_grid, plan, write_manifest, write_sweep_report

    if call.args.seeds < 1:
        raise SeqlabError(f"--seeds expects a positive int (seeds per grid point), got {call.args.seeds!r}.")
    runs = parse_runs(call.name, call.args, call.overrides)
    grids = parse_grid(call.args.grid, [spec.name for spec in runs.specs])
    # Every grid value must be a valid setting of its run: checked now, not in the 20th child.
    for spec in runs.specs:
        data = dump_config(spec)
        for key, values in grids[spec.name].items():
            for value in values:
                try:
                    spec.parser.parse_args(["--config", data, f"--{key}", value])
                except Exception as exc:  # jsonargparse's ArgumentError, or a type error inside it
                    raise explain(exc, f"--grid {key}={value}, run '{spec.name}'", call.name) from None
    name, mode = _metric(call.args.metric, runs)
    root = Path(runs.specs[0].config.trainer.root_dir) / runs.experiment / "sweep"
    points = plan({spec.name: int(spec.config.trainer.seed) for spec in runs.specs}, grids, call.args.seeds)
    write_manifest(root, points, grids)
    jobs = []
    for point in points:
        folder = root / point.name
        if (folder / "metrics.json").is_file():
            continue  # finished: a sweep run again trains only what is missing
        resume = ["--ckpt_path", "last"] if (folder / "checkpoints").is_dir() else []
        where = ["--trainer.experiment", f"{runs.experiment}/sweep", "--trainer.run_name", point.name]
        jobs.append((point.name, [*child_command(runs, point.run), *point.overrides(), *where, *resume]))
    log.info(
        "sweep: %d points, %d finished before, %d to train -> %s", len(points), len(points) - len(jobs), len(jobs), root
    )
    failed = None
    if jobs:
        try:
            run_in_children(jobs, runs.parallel, shlex.join(["seqlab", "sweep", *call.argv]), echo=echo)
        except TrainingInterrupted:
            raise
        except SeqlabError as exc:  # a point that failed (e.g. diverged) must not hide the others
            failed = exc
    for path in write_sweep_report(root, name, mode):
        sys.stdout.write(f"{path}\n")
    if failed is not None:
        raise failed
    return 0


COMMAND = Command(
    "train every --grid KEY=v1,v2 point x --seeds N of the selected runs, pick each model's best "
    "setting on validation, report mean ± std",
    flags,
    sweep,
    run_options=True,
)


def _metric(given: str | None, runs: Runs) -> tuple[str, str]:
    """``name:max|min`` from --metric, else the task's declared primary metric, else the loss."""
    if given is not None:
        name, _, mode = given.partition(":")
        if not mode:
            from seqlab.metrics import higher_is_better

            mode = "max" if higher_is_better(name) else "min"
        if mode not in ("min", "max") or not name:
            raise SeqlabError(f"--metric {given!r}: write NAME or NAME:max|min, e.g. --metric masked_acc:max.")
        return name, mode
    task_cls = import_class(runs.specs[0].config.task.class_path)
    declared = getattr(task_cls, "primary_metric", None)
    if isinstance(declared, tuple):
        return declared
    if isinstance(declared, str):
        return declared, getattr(task_cls, "primary_mode", "max")
    return "loss", "min"
