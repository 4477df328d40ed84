"""A recipe's selected runs, checked by jsonargparse against the classes' signatures, then built.

Every selected run is parsed before anything runs or is written, so a bad option never leaves
half an experiment behind. The per-run options of the command line are applied last, to every
selected run.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

import yaml
from jsonargparse import ActionConfigFile, ArgumentParser, Namespace

import seqlab.callbacks
from seqlab.commands._explain import explain
from seqlab.errors import SeqlabError, first_line
from seqlab.io import check_name
from seqlab.model import Model
from seqlab.recipe import KNOWN_PROTOCOLS, add_to_path, class_paths, import_class, load_recipe, needs_folder
from seqlab.task import Task
from seqlab.trainer import Trainer, seed_everything


def add_recipe_flags(parser: ArgumentParser, print_config: bool = True) -> None:
    """The flags of every command that reads a recipe's runs."""
    parser.add_argument(
        "--recipe",
        metavar="FILE|NAME",
        type=Optional[str],
        default=None,
        help="The recipe (YAML), or the name of a packaged one (`seqlab recipes`); a saved "
        "runs/<experiment>/<run>/config.yaml works too.",
    )
    parser.add_argument(
        "--runs",
        metavar="a,b",
        type=Optional[str],
        default=None,
        help="Only these runs of the recipe, e.g. rwkv7,lstm.",
    )
    parser.add_argument(
        "--protocol",
        metavar="NAME",
        type=Optional[str],
        default=None,
        help="Which weights each run's final test uses, as the recipe's `protocols:` declares it "
        "(uniform: also the same optimizer rules for every run): "
        + "; ".join(f"{k}: {v}" for k, v in KNOWN_PROTOCOLS.items())
        + ". Default: the recipe's `protocol`, else best.",
    )
    if print_config:
        parser.add_argument("--print_config", action="store_true", help="Print the resolved recipe and exit.")


def add_parallel_flag(parser: ArgumentParser) -> None:
    """``--parallel N``: runs trained at once, in child processes."""
    parser.add_argument(
        "--parallel",
        metavar="N",
        type=Optional[int],
        default=None,
        help="Train N runs at once, in child processes, one thread each (default: the recipe's `parallel`, else 1).",
    )


def add_executor_flags(parser: ArgumentParser) -> None:
    """``--executor local|ray``: where the runs of ``--parallel`` (and a sweep's points) train."""
    parser.add_argument(
        "--executor",
        type=Literal["local", "ray"],
        default="local",
        help="local: child processes on this machine (--parallel at a time); ray: one Ray task per "
        "run, on the cluster of --ray_address (needs `pip install 'seqlab[ray]'`).",
    )
    parser.add_argument(
        "--ray_address",
        metavar="HOST:PORT",
        type=Optional[str],
        default=None,
        help="With --executor ray: join this Ray cluster (default: $RAY_ADDRESS; without either, a "
        "local Ray is started for this command and stopped after it).",
    )
    parser.add_argument(
        "--ray_num_cpus",
        metavar="N",
        type=int,
        default=1,
        help="With --executor ray: the CPUs each run's Ray task asks for, and the threads it trains on.",
    )


def check_executor_flags(args: Namespace) -> None:
    """Ray's flags mean something only with ``--executor ray``; Ray must be installed for it."""
    if args.executor != "ray":
        if args.ray_address is not None or args.ray_num_cpus != 1:
            raise SeqlabError("--ray_address and --ray_num_cpus need --executor ray; add it, or leave them out.")
        return
    if args.ray_num_cpus < 1:
        raise SeqlabError(f"--ray_num_cpus expects a positive int (CPUs per run), got {args.ray_num_cpus!r}.")
    from seqlab.ray_executor import require_ray

    require_ray()  # before anything trains or is written


def build_run_parser(command: str) -> ArgumentParser:
    """The jsonargparse parser of one run: task, model, trainer and the checkpoint to use."""
    # jsonargparse resolves a short class_path (`GradientClip`) only among imported subclasses.
    seqlab.callbacks.import_all()
    parser = ArgumentParser(
        prog=f"seqlab {command}",
        usage=f"seqlab {command} [flags above] [--task.* --model.* --trainer.* --ckpt_path X]",
        description="Per-run options: they override the recipe's settings of every selected run "
        "(e.g. --trainer.max_steps 50, --model.init_args.n_layer 4).",
        exit_on_error=False,
        allow_abbrev=False,  # otherwise --trainer.max_step is silently taken as max_steps
        print_config=None,  # --print_config is the command's flag (the resolved recipe)
    )
    # How the CLI hands the run's merged recipe to the parser; not a flag users pass.
    parser.add_argument("--config", action=ActionConfigFile, help="(internal) the run's merged recipe settings.")
    parser.add_subclass_arguments(Task, "task", required=True, help="The task to learn.")
    parser.add_subclass_arguments(Model, "model", required=True, help="The model to train.")
    # `config` is what the CLI itself resolves and passes; it is not an option.
    parser.add_class_arguments(Trainer, "trainer", help="Loop, optimizer and callbacks.", skip={"config"})
    parser.add_argument(
        "--ckpt_path",
        type=Optional[str],
        default=None,
        help="fit: checkpoint to resume from (last, best or a path). validate/test/predict: checkpoint "
        "to load (default: validate uses last; test and predict the weights the run's fit was tested on).",
    )
    return parser


@dataclass
class RunSpec:
    """One run of a recipe, parsed and checked, not yet instantiated."""

    name: str
    config: Namespace
    parser: ArgumentParser
    protocol: str = "best"
    # The run's merged recipe settings, before the command line's options: what a child parses.
    merged: dict[str, Any] = field(default_factory=dict)

    def check_options(self, overrides: list[str]) -> None:
        """Parse the run as a child ``seqlab fit`` of it would, with ``overrides`` after the recipe's
        settings (raises jsonargparse's error). The default callbacks are not appended yet, so an
        option on the list's last callback (``--trainer.callbacks.init_args.warmup_steps``) reaches
        the run's own last callback, as in the child."""
        self.parser.parse_args(["--config", yaml.safe_dump(self.merged, sort_keys=False), *overrides])


@dataclass
class Runs:
    """The selected runs of a recipe, each parsed with the command line's per-run options."""

    experiment: str
    recipe: str
    protocol: str
    parallel: int
    specs: list[RunSpec]
    overrides: list[str]


def parse_runs(command: str, args: Namespace, overrides: list[str]) -> Runs:
    """Parse every selected run of ``args.recipe`` (with ``overrides``) without side effects."""
    if not args.recipe:
        raise SeqlabError(
            f"seqlab {command} needs --recipe FILE, e.g. `seqlab {command} --recipe recipes/reverse_digits_cpu.yaml`."
        )
    recipe = load_recipe(args.recipe)
    # User classes may live beside the recipe (examples/custom_task.yaml names
    # `custom_task.SortDigits`); its folder goes on sys.path only then, after the installed packages.
    folder = Path(args.recipe).resolve().parent
    named = class_paths(recipe.shared) + class_paths(recipe.runs) + _dotted_names(overrides)
    if needs_folder(folder, named):
        add_to_path(folder)
    selected = recipe.select(args.runs)
    protocol = recipe.protocol(args.protocol)
    specs = []
    for run in selected:
        where = f"recipe '{args.recipe}', run '{run}'"
        merged = recipe.run_dict(run, protocol)
        parser = build_run_parser(command)
        try:
            config = parser.parse_args(["--config", yaml.safe_dump(merged, sort_keys=False), *overrides])
        except Exception as exc:  # jsonargparse's ArgumentError, or a type error inside it
            raise explain(exc, where, command) from None
        specs.append(RunSpec(run, _with_default_callbacks(parser, config, where, command), parser, protocol, merged))
    _check_run_folders(specs, str(args.recipe))
    parallel = recipe.parallel(getattr(args, "parallel", None))
    return Runs(recipe.name, str(args.recipe), protocol, parallel, specs, list(overrides))


_DOTTED = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)+")


def _dotted_names(overrides: list[str]) -> list[str]:
    """What in the command line's options could be a dotted class path (``--model custom.GRU``)."""
    values = [part for arg in overrides for part in str(arg).split("=", 1)]
    return [v for v in values if _DOTTED.fullmatch(v)]


def _check_run_folders(specs: list[RunSpec], recipe: str) -> None:
    """Each run's folder names stay inside ``root_dir``, and no two runs share a folder."""
    seen: dict[tuple[str, str, str], str] = {}
    for spec in specs:
        trainer = spec.config.trainer
        where = f"recipe '{recipe}', run '{spec.name}': trainer"
        check_name(trainer.experiment, f"{where}.experiment", nested=True)
        if trainer.run_name is not None:
            check_name(trainer.run_name, f"{where}.run_name")
        folder = (str(Path(trainer.root_dir).absolute()), str(trainer.experiment), str(trainer.run_name or spec.name))
        if folder in seen:
            raise SeqlabError(
                f"recipe '{recipe}': runs '{seen[folder]}' and '{spec.name}' both have run_name "
                f"'{folder[2]}', so both would write one run folder; give each run its own "
                "trainer.run_name (a --trainer.run_name on the command line applies to every selected run)."
            )
        seen[folder] = spec.name


def _with_default_callbacks(parser: ArgumentParser, config: Namespace, where: str, command: str) -> Namespace:
    """Write the default callbacks into the config, so the saved config shows what was used."""
    if not config.trainer.default_callbacks:
        return config
    from seqlab.callbacks import missing_defaults

    given = [import_class(cb.class_path) for cb in (config.trainer.callbacks or [])]
    data = yaml.safe_load(parser.dump(config))
    callbacks = list(data["trainer"].get("callbacks") or [])
    for cb in missing_defaults(given):
        callbacks.append({"class_path": f"{type(cb).__module__}.{type(cb).__qualname__}"})
    data["trainer"]["callbacks"] = callbacks
    data["trainer"]["default_callbacks"] = False
    data.pop("config", None)
    try:
        return parser.parse_args(["--config", yaml.safe_dump(data, sort_keys=False)])
    except Exception as exc:
        raise explain(exc, where, command) from None


def dump_config(spec: RunSpec) -> str:
    """The run's resolved settings as YAML: itself a recipe of this one run."""
    data = yaml.safe_load(spec.parser.dump(spec.config))
    data.pop("config", None)
    data.pop("ckpt_path", None)
    return yaml.safe_dump(data, sort_keys=False)


def print_recipe(runs: Runs) -> int:
    """``--print_config``: the resolved recipe, which is itself a recipe, on stdout."""
    recipe = {
        "name": runs.experiment,
        "protocol": runs.protocol,
        "runs": {s.name: yaml.safe_load(dump_config(s)) for s in runs.specs},
    }
    sys.stdout.write(yaml.safe_dump(recipe, sort_keys=False))
    return 0


def instantiate(spec: RunSpec) -> tuple[Task, Model, Trainer]:
    """Build the run's task, model and trainer, turning a rejected setting into one sentence."""
    where = f"run '{spec.name}'"
    config = spec.config.as_dict()
    seed_everything(config["trainer"]["seed"])  # before the model is built: its init is seeded
    task = _build(config["task"], f"{where}, task")
    model = _build(config["model"], f"{where}, model")
    settings = dict(config["trainer"])
    settings["optimizer"] = _build(
        {"class_path": "seqlab.optim.AdamW", "init_args": settings.get("optimizer") or {}},
        f"{where}, trainer.optimizer",
    )
    settings["callbacks"] = [_build(cb, f"{where}, callback") for cb in settings.get("callbacks") or []]
    resolved = {**yaml.safe_load(dump_config(spec)), "protocol": spec.protocol}
    try:
        trainer = Trainer(**settings, config=resolved)
    except SeqlabError as exc:
        raise SeqlabError(f"{where}: {exc}") from None
    return task, model, trainer


def _build(section: dict[str, Any], where: str):
    """``{class_path, init_args}`` -> an instance; its own error, or one sentence from a bad value.

    jsonargparse already checked the types; what is left are a class's own rules (``n_embd``
    must divide into heads, ``lr`` must be positive...), raised from its ``__init__``.
    """
    cls = import_class(section["class_path"])
    kwargs = {
        k: _build(v, where) if isinstance(v, dict) and "class_path" in v else v
        for k, v in (section.get("init_args") or {}).items()
    }
    try:
        return cls(**kwargs)
    except SeqlabError as exc:
        raise SeqlabError(f"{where}: {exc}") from None
    except (ValueError, TypeError, AssertionError) as exc:
        first = first_line(exc).rstrip(".")
        raise SeqlabError(f"{where}: {cls.__name__} rejected its settings: {first}; fix its init_args.") from None
