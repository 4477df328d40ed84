"""``seqlab fit``: train the runs of a recipe, test each, write the report."""

from __future__ import annotations

import logging
import shlex

import paddle
from jsonargparse import ArgumentParser

from seqlab.commands import Command, Invocation, echo
from seqlab.commands._runs import (
    Runs,
    add_executor_flags,
    add_parallel_flag,
    add_recipe_flags,
    check_executor_flags,
    instantiate,
    parse_runs,
    print_recipe,
)
from seqlab.distributed import launched
from seqlab.errors import SeqlabError
from seqlab.interrupts import TrainingInterrupted
from seqlab.parallel import run_in_children

log = logging.getLogger("seqlab")


def flags(parser: ArgumentParser) -> None:
    add_recipe_flags(parser)
    add_parallel_flag(parser)
    add_executor_flags(parser)
    parser.add_argument("--no_report", action="store_true", help="Skip report.md and the plots after the runs.")


def fit(call: Invocation) -> int:
    check_executor_flags(call.args)
    runs = parse_runs(call.name, call.args, call.overrides)
    if call.args.print_config:
        return print_recipe(runs)
    # Build and check every run first (settings, checkpoints, callbacks' setup, one forward pass):
    # a mistake in the last run fails before the first one trains or writes a file.
    built = [(spec, *instantiate(spec)) for spec in runs.specs]
    for spec, task, model, trainer in built:
        trainer.preflight(task, model, spec.config.ckpt_path)
    root = built[0][3].root_dir / runs.experiment
    devices = _devices(runs)
    if devices > 1 and call.args.executor == "ray":
        raise SeqlabError(
            f"--executor ray runs each run as one Ray task on --ray_num_cpus CPUs; it does not launch "
            f"--trainer.devices {devices} data-parallel ranks. Use one of the two: drop --executor ray, "
            "or set --trainer.devices 1."
        )
    if devices > 1 and not launched():
        from seqlab.launch import run_launched

        return run_launched(devices, ["fit", *call.argv], resume_command(call.argv), echo=echo)
    if call.args.executor == "ray":  # asked for by name: even one run goes to the cluster
        _fit_in_parallel(runs, call.argv, call.args, [trainer.run_dir for _, _, _, trainer in built])
    elif runs.parallel > 1 and len(built) > 1:
        _fit_in_parallel(runs, call.argv, call.args)
    else:
        for spec, task, model, trainer in built:
            log.info(
                "== run %s: %s, %d parameters -> %s",
                spec.name,
                type(model).__name__,
                model.num_parameters(),
                trainer.run_dir,
            )
            try:
                trainer.fit(task, model, ckpt_path=spec.config.ckpt_path)
            except TrainingInterrupted as exc:
                raise exc.with_resume(resume_command(call.argv)) from None
    if not call.args.no_report and paddle.distributed.get_rank() == 0:
        from seqlab.report import write_report

        paths = write_report(root)
        if paths:
            log.info("report: %s", paths[0])
    return 0


COMMAND = Command(
    "train the runs of a recipe, test each (by its protocol: the best checkpoint by default), write the report",
    flags,
    fit,
    run_options=True,
)


def _devices(runs: Runs) -> int:
    """The processes to start: one value for the whole command (they train one after another)."""
    counts = sorted({int(spec.config.trainer.devices) for spec in runs.specs})
    if len(counts) > 1:
        raise SeqlabError(
            f"the selected runs ask for different trainer.devices ({counts}); give them one "
            "value, or fit them with separate commands (--runs)."
        )
    if counts[0] > 1 and runs.parallel > 1 and len(runs.specs) > 1:
        raise SeqlabError(
            "--parallel runs several single-process runs at once, and trainer.devices > 1 "
            "runs one run on several processes; use one of them."
        )
    return counts[0]


def resume_command(argv: list[str]) -> str:
    """The command line that continues this one: the same arguments with ``--ckpt_path last``.

    Finished runs reload their last checkpoint and are done at once, the interrupted one
    resumes, and runs that never started begin (``last`` starts fresh where there is none).
    """
    rest, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg == "--ckpt_path":
            skip = True
            continue
        if not arg.startswith("--ckpt_path="):
            rest.append(arg)
    return shlex.join(["seqlab", "fit", *rest, "--ckpt_path", "last"])


def child_command(runs: Runs, run: str) -> list[str]:
    """The ``seqlab`` arguments that fit one run of ``runs`` in a child process (no report)."""
    return ["fit", "--recipe", runs.recipe, "--runs", run, "--no_report", "--protocol", runs.protocol, *runs.overrides]


def _fit_in_parallel(runs: Runs, argv: list[str], args, folders: list | None = None) -> None:
    """One child process per run (``seqlab fit --runs <run>``), ``runs.parallel`` at a time; or,
    with ``--executor ray``, one Ray task per run (``folders``: the run folders, whose results
    come home from the workers)."""
    jobs = [(spec.name, child_command(runs, spec.name)) for spec in runs.specs]
    if args.executor == "ray":
        from seqlab.ray_executor import run_on_ray

        at = [(label, command, folder) for (label, command), folder in zip(jobs, folders)]
        run_on_ray(at, resume_command(argv), args.ray_address, args.ray_num_cpus, echo=echo)
    else:
        run_in_children(jobs, runs.parallel, resume_command(argv), echo=echo)
