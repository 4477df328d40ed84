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
from jsonargparse.typing import NonNegativeInt, restricted_string_type

from seqlab.commands import Command, Invocation, echo
from seqlab.commands._explain import explain
from seqlab.commands._runs import (
    Runs,
    add_executor_flags,
    add_parallel_flag,
    add_recipe_flags,
    check_executor_flags,
    parse_runs,
)
from seqlab.commands.fit import child_command
from seqlab.errors import SeqlabError
from seqlab.interrupts import TrainingInterrupted
from seqlab.parallel import run_in_children
from seqlab.recipe import import_class

log = logging.getLogger("seqlab")


def flags(parser: ArgumentParser) -> None:
    add_recipe_flags(parser, print_config=False)
    add_parallel_flag(parser)
    add_executor_flags(parser)
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
    parser.add_argument(
        "--test_seeds",
        metavar="K",
        type=NonNegativeInt,
        default=0,
        help="After the selection, train each run's winning setting at K more seeds that no grid point "
        "used (base + --seeds, +1, ...) and report its test figures on those alone (default 0: the "
        "report says its test figures come from the selection seeds).",
    )
    parser.add_argument(
        "--prior_points",
        metavar="RUN=N,...",
        type=Optional[restricted_string_type("RunPoints", r"^[^=\s,]+=\d+(,[^=\s,]+=\d+)*$")],
        default=None,
        help="RUN=N[,RUN=N]: N points of tuning a run had before this sweep (e.g. an earlier lr sweep); "
        "added to its tuning budget in the report and kept in the sweep's manifest.",
    )


def sweep(call: Invocation) -> int:
    from seqlab.sweep import parse_grid, plan, write_manifest, write_sweep_report

    if call.args.seeds < 1:
        raise SeqlabError(f"--seeds expects a positive int (seeds per grid point), got {call.args.seeds!r}.")
    check_executor_flags(call.args)
    runs = parse_runs(call.name, call.args, call.overrides)
    grids = parse_grid(call.args.grid, [spec.name for spec in runs.specs])
    # Every grid value must be a valid setting of its run: checked now, not in the 20th child.
    for spec in runs.specs:
        for key, values in grids[spec.name].items():
            for value in values:
                try:
                    spec.check_options([*runs.overrides, f"--{key}", value])
                except Exception as exc:  # jsonargparse's ArgumentError, or a type error inside it
                    raise explain(exc, f"--grid {key}={value}, run '{spec.name}'", call.name) from None
    name, mode = _metric(call.args.metric, runs)
    # The experiment as the command line left it: --trainer.experiment NAME sweeps into NAME/sweep,
    # so one recipe can hold several sweeps (e.g. one per sequence length).
    experiment = str(runs.specs[0].config.trainer.experiment)
    root = Path(runs.specs[0].config.trainer.root_dir) / experiment / "sweep"
    points = plan({spec.name: int(spec.config.trainer.seed) for spec in runs.specs}, grids, call.args.seeds)
    write_manifest(root, points, grids)
    jobs = []
    for point in points:
        folder = root / point.name
        if (folder / "metrics.json").is_file():
            continue  # finished: a sweep run again trains only what is missing
        resume = ["--ckpt_path", "last"] if (folder / "checkpoints").is_dir() else []
        where = ["--trainer.experiment", f"{experiment}/sweep", "--trainer.run_name", point.name]
        jobs.append((point.name, [*child_command(runs, point.run), *point.overrides(), *where, *resume]))
    log.info(
        "sweep: %d points, %d finished before, %d to train -> %s", len(points), len(points) - len(jobs), len(jobs), root
    )
    failed = None
    if jobs:
        try:
            command = shlex.join(["seqlab", "sweep", *call.argv])  # what continues this sweep
            if call.args.executor == "ray":
                from seqlab.ray_executor import run_on_ray

                # A point whose folder holds a checkpoint on its worker resumes there, as here.
                at = [(label, argv, root / label) for label, argv in jobs]
                run_on_ray(at, command, call.args.ray_address, call.args.ray_num_cpus, resume_saved=True, echo=echo)
            else:
                run_in_children(jobs, runs.parallel, command, echo=echo)
        except TrainingInterrupted:
            raise
        except SeqlabError as exc:  # a point that failed (e.g. diverged) must not hide the others
            failed = exc
    # The report: first the points tuning had before this sweep, then (--test_seeds K) the winners
    # at K seeds no grid point used, trained by this same command (which then writes the report).
    from seqlab.sweep import held_out_request, parse_prior_points, record_held_out, record_prior_points

    if call.args.prior_points:
        record_prior_points(root, parse_prior_points(call.args.prior_points.split(",")))
    note = ""
    if call.args.test_seeds > 0:
        bases = {spec.name: int(spec.config.trainer.seed) for spec in runs.specs}
        seeds, test_seeds = call.args.seeds, call.args.test_seeds
        held, note = held_out_request(root, name, mode, bases, seeds, test_seeds, failed is not None)
        if held is not None:
            record_held_out(root, held["points"])
            again = call.args.clone()
            again.grid, again.seeds, again.test_seeds, again.runs = held["grid"], test_seeds, 0, ",".join(held["runs"])
            overrides = [*call.overrides, "--trainer.seed", str(held["seed"])]
            return sweep(Invocation(call.name, again, overrides, call.argv))
    for path in write_sweep_report(root, name, mode, note):
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
