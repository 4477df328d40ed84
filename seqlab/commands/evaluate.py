"""``seqlab validate`` and ``seqlab test``: evaluate a run's checkpoint, print the metrics as JSON."""

from __future__ import annotations

import json
import sys

from jsonargparse import ArgumentParser

from seqlab.commands import Command, Invocation
from seqlab.commands._runs import add_recipe_flags, instantiate, parse_runs, print_recipe


def flags(parser: ArgumentParser) -> None:
    add_recipe_flags(parser)


def evaluate(call: Invocation) -> int:
    runs = parse_runs(call.name, call.args, call.overrides)
    if call.args.print_config:
        return print_recipe(runs)
    results = {}
    for spec in runs.specs:
        task, model, trainer = instantiate(spec)
        evaluate = trainer.test if call.name == "test" else trainer.validate
        results[spec.name] = evaluate(task, model, spec.config.ckpt_path)
    # Strict JSON: NaN (e.g. a probe a model cannot read) becomes null.
    clean = {
        run: {k: (None if isinstance(v, float) and v != v else v) for k, v in r.items()} for run, r in results.items()
    }
    sys.stdout.write(json.dumps(clean, indent=2, allow_nan=False) + "\n")
    return 0


VALIDATE = Command(
    "evaluate a run's checkpoint (default: last) on the validation set", flags, evaluate, run_options=True
)
TEST = Command(
    "evaluate a run's checkpoint (default: best) with the task's final test", flags, evaluate, run_options=True
)
