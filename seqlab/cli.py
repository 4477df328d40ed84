"""The ``seqlab`` command: recipes in, runs out.

    seqlab fit      --recipe recipes/reverse_digits_cpu.yaml [--runs a,b] [--trainer.max_steps N]
    seqlab validate --recipe R --runs a [--ckpt_path last|best|PATH]
    seqlab test     --recipe R --runs a [--ckpt_path best|last|PATH]
    seqlab predict  --recipe R --runs a --prompt 12345,
    seqlab sweep    --recipe R --grid trainer.optimizer.lr=1e-3,2e-3 --seeds 3
    seqlab compare  runs/<experiment>
    seqlab tokenize --input text.txt --output text.bin
    seqlab models | seqlab tasks | seqlab recipes
    seqlab convert-checkpoint OLD.pdckpt NEW.safetensors --trust

A recipe is YAML with one task, shared settings and named runs::

    name: reverse_digits          # experiment name (default: the file's stem)
    task: {class_path: reverse_digits, init_args: {...}}
    trainer: {max_steps: 2000, optimizer: {lr: 1e-3}, callbacks: [...]}
    runs:
      rwkv7: {model: {class_path: rwkv7}, trainer: {optimizer: {lr: 4e-3}}}
      lstm:  {model: lstm}

Each run is the shared part deep-merged with the run's overrides, then parsed by jsonargparse
against the classes' signatures (so types and option names are checked), with the command-line
overrides applied last. Every selected run is parsed before anything runs or is written, so a
bad option never leaves half an experiment behind.

Only this module imports jsonargparse; the library works without it.
"""

from __future__ import annotations

import copy
import difflib
import json
import logging
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import yaml

from seqlab._paddle import import_paddle

import_paddle()  # exits 2 with an install hint when no Paddle wheel is present

import paddle  # noqa: E402
from jsonargparse import ActionConfigFile, ArgumentParser, Namespace  # noqa: E402

import seqlab  # noqa: E402
import seqlab.callbacks  # noqa: E402,F401  (makes short callback names resolvable)
from seqlab import tokenize  # noqa: E402
from seqlab.distributed import launched  # noqa: E402
from seqlab.errors import SeqlabError  # noqa: E402
from seqlab.interrupts import TrainingInterrupted, stop_outside_training  # noqa: E402
from seqlab.log import configure_logging  # noqa: E402
from seqlab.model import Model  # noqa: E402
from seqlab.parallel import die_with_parent, run_in_children  # noqa: E402
from seqlab.registry import MODELS, TASKS, missing_requirement  # noqa: E402
from seqlab.summary import PROTOCOLS  # noqa: E402
from seqlab.task import Task  # noqa: E402
from seqlab.trainer import Trainer, seed_everything  # noqa: E402

log = logging.getLogger("seqlab")
# Flags handled by seqlab itself rather than by the per-run jsonargparse parser.
_OWN_FLAGS = {
    "--recipe": True,
    "--runs": True,
    "--print_config": False,
    "--parallel": True,
    "--no_report": False,
    "--protocol": True,
}


@dataclass
class RunSpec:
    """One run of a recipe, parsed and checked, not yet instantiated."""

    name: str
    config: Namespace
    parser: ArgumentParser
    protocol: str = "best"


# ---------------------------------------------------------------------------- parsing
def build_run_parser(command: str) -> ArgumentParser:
    """The jsonargparse parser of one run: task, model, trainer and the checkpoint to use."""
    parser = ArgumentParser(
        prog=f"seqlab {command}",
        description=f"seqlab {command}: options below are per run and override the recipe. "
        "seqlab's own flags: --recipe FILE (required), --runs a,b (some runs only), "
        "--print_config (print the resolved recipe), --parallel N (fit: N runs at once), "
        "--no_report (fit: skip report.md), --protocol best|seed (fit: which weights each run's "
        "final test uses). See `seqlab --help`.",
        exit_on_error=False,
        allow_abbrev=False,  # otherwise --trainer.max_step is silently taken as max_steps
    )
    parser.add_argument("--config", action=ActionConfigFile, help="A single-run config (YAML).")
    parser.add_subclass_arguments(Task, "task", required=True, help="The task to learn.")
    parser.add_subclass_arguments(Model, "model", required=True, help="The model to train.")
    # `config` is what the CLI itself resolves and passes; it is not an option.
    parser.add_class_arguments(Trainer, "trainer", help="Loop, optimizer and callbacks.", skip={"config"})
    parser.add_argument(
        "--ckpt_path",
        type=Optional[str],
        default=None,
        help="fit: checkpoint to resume from (last, best or a path). validate/test: checkpoint "
        "to evaluate (default: validate uses last; test uses best, else last).",
    )
    return parser


def _split_own_flags(argv: list[str]) -> tuple[dict[str, Any], list[str]]:
    own: dict[str, Any] = {
        "--recipe": None,
        "--runs": None,
        "--print_config": False,
        "--parallel": None,
        "--no_report": False,
        "--protocol": None,
    }
    rest: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        key, eq, value = arg.partition("=")
        if key in _OWN_FLAGS:
            if not _OWN_FLAGS[key]:
                own[key] = True
            elif eq:
                own[key] = value
            elif i + 1 < len(argv) and not argv[i + 1].startswith("--"):
                own[key] = argv[i + 1]
                i += 1
            else:
                raise SeqlabError(
                    f"{key} needs a value; e.g. {key} {'recipes/reverse_digits_cpu.yaml' if key == '--recipe' else 'rwkv7,lstm'}."
                )
        else:
            rest.append(arg)
        i += 1
    return own, rest


def packaged_recipes() -> dict[str, Path]:
    """The recipes shipped inside the package (seqlab/recipes/*.yaml), by name."""
    folder = Path(__file__).resolve().parent / "recipes"
    return {p.stem: p for p in sorted(folder.glob("*.yaml"))}


def find_recipe(path: str) -> Path:
    """A recipe file: ``path`` itself, else (for a bare name) the packaged recipe of that name.

    So ``seqlab fit --recipe reverse_digits_cpu`` works after ``pip install seqlab``, with no clone.
    """
    file = Path(path)
    if file.is_file():
        return file
    packaged = packaged_recipes()
    name = file.name.removesuffix(".yaml").removesuffix(".yml")
    if file.parent == Path(".") and name in packaged:
        return packaged[name]
    close = difflib.get_close_matches(name, list(packaged), n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    raise SeqlabError(
        f"recipe '{path}' does not exist.{hint} Pass a YAML file, or the name of a packaged "
        f"recipe ({', '.join(packaged)}; `seqlab recipes` lists them)."
    )


def load_recipe(path: str) -> tuple[str, dict[str, Any], dict[str, dict[str, Any]]]:
    """Read a recipe: returns (experiment name, shared config, {run name: overrides}).

    The shared config keeps the recipe-level key ``parallel`` (runs trained at once) if present.
    """
    file = find_recipe(path)
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise SeqlabError(f"recipe '{path}' is not a text (UTF-8) file; pass a YAML recipe.") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise SeqlabError(f"recipe '{path}' is not valid YAML{where}; fix the syntax there.") from None
    if not isinstance(data, dict):
        raise SeqlabError(f"recipe '{path}' must be a mapping with task, trainer and runs keys.")
    data = dict(data)
    # A saved config.yaml names its experiment in trainer.experiment; keep it when resuming.
    name = str(data.pop("name", None) or (data.get("trainer") or {}).get("experiment") or file.stem)
    runs = data.pop("runs", None)
    if runs is None:  # a single-run config (e.g. a saved config.yaml) is a recipe with one run
        model = data.get("model") or {}
        model_name = model if isinstance(model, str) else model.get("class_path", "run")
        run_name = (data.get("trainer") or {}).get("run_name") or str(model_name).rsplit(".", 1)[-1].lower()
        runs = {run_name: {}}
    if not isinstance(runs, dict) or not runs:
        raise SeqlabError(f"recipe '{path}': 'runs' must map run names to their settings.")
    for key in ("trainer",):
        _expect_mapping(data.get(key), f"recipe '{path}'", key)
    for run, overrides in runs.items():
        _expect_mapping(overrides, f"recipe '{path}'", f"runs.{run}")
        _expect_mapping((overrides or {}).get("trainer"), f"recipe '{path}', run '{run}'", "trainer")
    return name, data, {str(k): (v or {}) for k, v in runs.items()}


def _expect_mapping(value: Any, where: str, key: str) -> None:
    if value is not None and not isinstance(value, dict):
        raise SeqlabError(f"{where}: '{key}' must be a mapping of settings, got {type(value).__name__} ({value!r}).")


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _resolve_component(section: Any, registry, where: str) -> dict[str, Any]:
    """Accept ``rwkv7``, ``{class_path: rwkv7, init_args: ..}`` or a dotted class path."""
    if isinstance(section, str):
        section = {"class_path": section}
    if not isinstance(section, dict) or "class_path" not in section:
        raise SeqlabError(
            f"{where} needs a {registry.kind} name, e.g. `{registry.kind}: {{class_path: {registry.names()[0] if registry.names() else 'name'}}}`."
        )
    section = dict(section)
    _expect_mapping(section.get("init_args"), where, f"{registry.kind}.init_args")
    class_path = str(section["class_path"])
    if "." not in class_path:  # a registry name (entry-point plugins included)
        cls = registry.get(class_path)
        section["class_path"] = f"{cls.__module__}.{cls.__qualname__}"
    section.setdefault("init_args", {})
    section["init_args"] = dict(section["init_args"] or {})
    return section


def _prepare_run_dict(
    experiment: str, run: str, merged: dict[str, Any], where: str, protocol: str = "best"
) -> dict[str, Any]:
    merged.pop("parallel", None)
    merged.pop("protocol", None)
    merged.pop("settings", None)  # a saved config.yaml records the run settings it ran with
    unknown = sorted(set(merged) - {"task", "model", "trainer", "ckpt_path"})
    if unknown:
        close = difflib.get_close_matches(unknown[0], ["task", "model", "trainer", "ckpt_path"], n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise SeqlabError(f"{where}: unknown key '{unknown[0]}'{hint}; a run has task, model, trainer and ckpt_path.")
    if "task" not in merged or "model" not in merged:
        raise SeqlabError(f"{where}: run '{run}' needs both a task and a model.")
    merged["task"] = _resolve_component(merged["task"], TASKS, where)
    merged["model"] = _resolve_component(merged["model"], MODELS, where)
    # Models take the task's vocabulary (its own setting, else its class's) unless the recipe pins it.
    task_cls = _import_class(merged["task"]["class_path"])
    model_args = merged["model"]["init_args"]
    task_vocab = merged["task"]["init_args"].get("vocab_size") or getattr(task_cls, "vocab_size", 0)
    if "vocab_size" not in model_args and task_vocab:
        model_args["vocab_size"] = task_vocab
    trainer = dict(merged.get("trainer") or {})
    trainer["experiment"] = experiment
    trainer["run_name"] = run
    if protocol == "seed" and "test_checkpoint" not in trainer:
        model_name = MODELS.name_of(_import_class(merged["model"]["class_path"]))
        trainer["test_checkpoint"] = "best" if model_name == "transformer" else "last"
    merged["trainer"] = trainer
    return merged


def _import_class(class_path: str) -> type:
    import importlib

    module, _, name = class_path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        raise SeqlabError(f"cannot import '{class_path}'; check the class_path or install the plugin.") from None


def _explain(exc: Exception, where: str) -> SeqlabError:
    """Turn a (multi-line) jsonargparse error into one sentence naming the problem and the fix."""
    text = str(exc)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    m = re.search(r"unrecognized arguments: (\S+)", text)
    if m:
        return SeqlabError(f"{where}: unknown option {m.group(1)}; run `seqlab fit --help` for the valid options.")
    m = re.search(r"Option '([^']+)' is not accepted", text)
    if m:
        cls = re.search(r"given class_path '([^']+)'", text)
        owner = f" by {cls.group(1)}" if cls else ""
        return SeqlabError(
            f"{where}: option '{m.group(1)}' is not accepted{owner}; check its spelling in the class's --help."
        )
    m = re.search(r'Parser key "([^"]+)":\s*Expected a typing.Literal\[(.*?)\]\.\s*Got value: (.+)', text, re.S)
    if m:
        return SeqlabError(
            f"{where}: {m.group(1)} expects one of {m.group(2)}, got {m.group(3).splitlines()[0]!r}; fix its value."
        )
    m = re.search(r'Parser key "([^"]+)":\s*(Expected a <class \'(\w+)\'>)?.*?Got value: (.+)', text, re.S)
    if m and m.group(3):
        return SeqlabError(
            f"{where}: {m.group(1)} expects {m.group(3)}, got {m.group(4).splitlines()[0]!r}; fix its value."
        )
    m = re.search(r"Problem with given class_path '([^']+)':\s*(.+)", text)
    if m:
        return SeqlabError(f"{where}: {m.group(1)}: {m.group(2).splitlines()[0]}")
    return SeqlabError(f"{where}: {' '.join(lines[:3])}")


@dataclass
class ParsedCommand:
    experiment: str
    specs: list[RunSpec]
    print_config: bool
    parallel: int
    recipe: str
    overrides: list[str]
    report: bool
    protocol: str = "best"


def parse_runs(command: str, argv: list[str]) -> ParsedCommand:
    """Parse every selected run of the recipe (and the overrides) without side effects."""
    own, overrides = _split_own_flags(argv)
    if not own["--recipe"]:
        raise SeqlabError(
            f"seqlab {command} needs --recipe FILE, e.g. `seqlab {command} --recipe recipes/reverse_digits_cpu.yaml`."
        )
    recipe = own["--recipe"]
    experiment, shared, runs = load_recipe(recipe)
    _add_to_path(Path(recipe).resolve().parent)  # user classes may live beside the recipe
    selected = list(runs)
    if own["--runs"] is not None:
        selected = [r.strip() for r in str(own["--runs"]).split(",") if r.strip()]
        if not selected:
            raise SeqlabError(f"--runs names no run; pass some of: {', '.join(runs)}.")
        for run in selected:
            if run not in runs:
                close = difflib.get_close_matches(run, list(runs), n=1)
                hint = f" Did you mean '{close[0]}'?" if close else ""
                raise SeqlabError(f"recipe '{recipe}' has no run '{run}'.{hint} Its runs: {', '.join(runs)}.")
    protocol = own["--protocol"] or shared.get("protocol", "best")
    if protocol not in PROTOCOLS:
        raise SeqlabError(
            f"protocol {protocol!r} is not known; use one of: "
            + "; ".join(f"'{k}' ({v})" for k, v in PROTOCOLS.items())
            + "."
        )
    specs = []
    for run in selected:
        where = f"recipe '{recipe}', run '{run}'"
        merged = _prepare_run_dict(experiment, run, _deep_merge(shared, runs[run]), where, protocol)
        parser = build_run_parser(command)
        try:
            config = parser.parse_args(["--config", yaml.safe_dump(merged, sort_keys=False), *overrides])
        except Exception as exc:  # jsonargparse's ArgumentError, or a type error inside it
            raise _explain(exc, where) from None
        specs.append(RunSpec(run, _with_default_callbacks(parser, config, where), parser))
    parallel = own["--parallel"] if own["--parallel"] is not None else shared.get("parallel", 1)
    try:
        parallel = int(parallel)
        if parallel < 1:
            raise ValueError
    except (TypeError, ValueError):
        raise SeqlabError(f"--parallel expects a positive int (runs trained at once), got {parallel!r}.") from None
    for spec in specs:
        spec.protocol = protocol
    return ParsedCommand(
        experiment,
        specs,
        bool(own["--print_config"]),
        parallel,
        recipe,
        overrides,
        report=not own["--no_report"],
        protocol=protocol,
    )


def _with_default_callbacks(parser: ArgumentParser, config: Namespace, where: str) -> Namespace:
    """Write the default callbacks into the config, so the saved config shows what was used."""
    if not config.trainer.default_callbacks:
        return config
    from seqlab.callbacks import missing_defaults

    given = [_import_class(cb.class_path) for cb in (config.trainer.callbacks or [])]
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
        raise _explain(exc, where) from None


def dump_config(spec: RunSpec) -> str:
    data = yaml.safe_load(spec.parser.dump(spec.config))
    data.pop("config", None)
    data.pop("ckpt_path", None)
    return yaml.safe_dump(data, sort_keys=False)


# ---------------------------------------------------------------------------- commands
def _instantiate(spec: RunSpec) -> tuple[Task, Model, Trainer]:
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
    cls = _import_class(section["class_path"])
    kwargs = {
        k: _build(v, where) if isinstance(v, dict) and "class_path" in v else v
        for k, v in (section.get("init_args") or {}).items()
    }
    try:
        return cls(**kwargs)
    except SeqlabError as exc:
        raise SeqlabError(f"{where}: {exc}") from None
    except (ValueError, TypeError, AssertionError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0].rstrip(".")
        raise SeqlabError(f"{where}: {cls.__name__} rejected its settings: {first}; fix its init_args.") from None


def _print_recipe(parsed: ParsedCommand) -> int:
    recipe = {
        "name": parsed.experiment,
        "protocol": parsed.protocol,
        "runs": {s.name: yaml.safe_load(dump_config(s)) for s in parsed.specs},
    }
    sys.stdout.write(yaml.safe_dump(recipe, sort_keys=False))
    return 0


def cmd_fit(argv: list[str]) -> int:
    parsed = parse_runs("fit", argv)
    if parsed.print_config:
        return _print_recipe(parsed)
    # Build and check every run first (settings, checkpoints, callbacks' setup, one forward pass):
    # a mistake in the last run fails before the first one trains or writes a file.
    built = [(spec, *_instantiate(spec)) for spec in parsed.specs]
    for spec, task, model, trainer in built:
        trainer.preflight(task, model, spec.config.ckpt_path)
    root = built[0][3].root_dir / parsed.experiment
    devices = _devices(parsed)
    if devices > 1 and not launched():
        from seqlab.launch import run_launched

        return run_launched(devices, ["fit", *argv], resume_command(argv))
    if parsed.parallel > 1 and len(built) > 1:
        _fit_in_parallel(parsed, argv)
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
                raise exc.with_resume(resume_command(argv)) from None
    if parsed.report and paddle.distributed.get_rank() == 0:
        _write_report(root)
    return 0


def _devices(parsed: ParsedCommand) -> int:
    """The processes to start: one value for the whole command (they train one after another)."""
    counts = sorted({int(spec.config.trainer.devices) for spec in parsed.specs})
    if len(counts) > 1:
        raise SeqlabError(
            f"the selected runs ask for different trainer.devices ({counts}); give them one "
            "value, or fit them with separate commands (--runs)."
        )
    if counts[0] > 1 and parsed.parallel > 1 and len(parsed.specs) > 1:
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
    import shlex

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


def _fit_in_parallel(parsed: ParsedCommand, argv: list[str]) -> None:
    """One child process per run (``seqlab fit --runs <run>``), ``parsed.parallel`` at a time."""
    jobs = [
        (
            spec.name,
            [
                "fit",
                "--recipe",
                parsed.recipe,
                "--runs",
                spec.name,
                "--no_report",
                "--protocol",
                parsed.protocol,
                *parsed.overrides,
            ],
        )
        for spec in parsed.specs
    ]
    run_in_children(jobs, parsed.parallel, resume_command(argv))


def _write_report(root: Path) -> None:
    from seqlab.report import write_report

    paths = write_report(root)
    if paths:
        log.info("report: %s", paths[0])


def cmd_evaluate(command: str, argv: list[str]) -> int:
    parsed = parse_runs(command, argv)
    if parsed.print_config:
        return _print_recipe(parsed)
    results = {}
    for spec in parsed.specs:
        task, model, trainer = _instantiate(spec)
        evaluate = trainer.test if command == "test" else trainer.validate
        results[spec.name] = evaluate(task, model, spec.config.ckpt_path)
    # Strict JSON: NaN (e.g. a probe a model cannot read) becomes null.
    clean = {
        run: {k: (None if isinstance(v, float) and v != v else v) for k, v in r.items()} for run, r in results.items()
    }
    sys.stdout.write(json.dumps(clean, indent=2, allow_nan=False) + "\n")
    return 0


def cmd_list(registry) -> int:
    rows = []
    for name, cls in registry.items():
        extra = ""
        if missing_requirement(cls):  # listed, but it cannot be built here
            extra = f"needs: {missing_requirement(cls)}"
        elif registry is MODELS:
            try:
                seed_everything(0)
                extra = f"{cls().num_parameters():>10,d} params"
            except Exception as exc:  # a plugin that can't build with defaults is still listed
                extra = f"{'(' + type(exc).__name__ + ')':>17}"
        rows.append((name, extra, cls.summary()))
    width = max((len(r[0]) for r in rows), default=4)
    extra_width = max((len(r[1]) for r in rows), default=0)
    for name, extra, summary in rows:
        sys.stdout.write(f"{name:<{width}}  {extra:<{extra_width}}  {summary}\n")
    return 0


def cmd_recipes(argv: list[str]) -> int:
    """List the packaged recipes with the first line of their header comment."""
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
    sys.stdout.write(
        f"\nRun one by name (`seqlab fit --recipe {next(iter(recipes), 'NAME')}`); they are in {next(iter(recipes.values())).parent if recipes else '-'}.\n"
    )
    return 0


def cmd_compare(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0].startswith("-"):
        raise SeqlabError("usage: seqlab compare runs/<experiment> (the folder holding the runs).")
    root = Path(argv[0])
    if not root.is_dir():
        raise SeqlabError(f"'{root}' is not a folder; pass runs/<experiment>, e.g. runs/reverse_digits_cpu.")
    from seqlab.report import write_report

    paths = write_report(root)
    if not paths:
        raise SeqlabError(f"no finished runs (metrics.json) under '{root}'; train a recipe first.")
    for path in paths:
        sys.stdout.write(f"{path}\n")
    return 0


def cmd_sweep(argv: list[str]) -> int:
    """Train every grid point x seed of the selected runs, then write the sweep report."""
    from seqlab.sweep import parse_grid, plan, write_manifest, write_sweep_report

    grid_items, seeds, metric, rest = [], "1", None, []
    i = 0
    while i < len(argv):
        arg, value = argv[i], argv[i + 1] if i + 1 < len(argv) else None
        if arg in ("--grid", "--seeds", "--metric"):
            if value is None or value.startswith("--"):
                raise SeqlabError(
                    f"{arg} needs a value, e.g. {arg} "
                    + {"--grid": "trainer.optimizer.lr=1e-3,2e-3", "--seeds": "3", "--metric": "masked_acc:max"}[arg]
                    + "."
                )
            if arg == "--grid":
                grid_items.append(value)
            elif arg == "--seeds":
                seeds = value
            else:
                metric = value
            i += 2
            continue
        rest.append(arg)
        i += 1
    if not (seeds.isdigit() and int(seeds) >= 1):
        raise SeqlabError(f"--seeds expects a positive int (seeds per grid point), got {seeds!r}.")
    parsed = parse_runs("fit", rest)
    grids = parse_grid(grid_items, [spec.name for spec in parsed.specs])
    # Every grid value must be a valid setting of its run: checked now, not in the 20th child.
    for spec in parsed.specs:
        data = dump_config(spec)
        for key, values in grids[spec.name].items():
            for value in values:
                try:
                    spec.parser.parse_args(["--config", data, f"--{key}", value])
                except Exception as exc:  # jsonargparse's ArgumentError, or a type error inside it
                    raise _explain(exc, f"--grid {key}={value}, run '{spec.name}'") from None
    name, mode = _sweep_metric(metric, parsed)
    root = Path(parsed.specs[0].config.trainer.root_dir) / parsed.experiment / "sweep"
    points = plan({spec.name: int(spec.config.trainer.seed) for spec in parsed.specs}, grids, int(seeds))
    write_manifest(root, points, grids)
    jobs = []
    for point in points:
        folder = root / point.name
        if (folder / "metrics.json").is_file():
            continue  # finished: a sweep run again trains only what is missing
        resume = ["--ckpt_path", "last"] if (folder / "checkpoints").is_dir() else []
        jobs.append(
            (
                point.name,
                [
                    "fit",
                    "--recipe",
                    parsed.recipe,
                    "--runs",
                    point.run,
                    "--no_report",
                    "--protocol",
                    parsed.protocol,
                    *parsed.overrides,
                    *point.overrides(),
                    "--trainer.experiment",
                    f"{parsed.experiment}/sweep",
                    "--trainer.run_name",
                    point.name,
                    *resume,
                ],
            )
        )
    log.info(
        "sweep: %d points, %d finished before, %d to train -> %s", len(points), len(points) - len(jobs), len(jobs), root
    )
    failed = None
    if jobs:
        import shlex

        try:
            run_in_children(jobs, parsed.parallel, shlex.join(["seqlab", "sweep", *argv]))
        except TrainingInterrupted:
            raise
        except SeqlabError as exc:  # a point that failed (e.g. diverged) must not hide the others
            failed = exc
    paths = write_sweep_report(root, name, mode)
    for path in paths:
        sys.stdout.write(f"{path}\n")
    if failed is not None:
        raise failed
    return 0


def _sweep_metric(given: str | None, parsed: ParsedCommand) -> tuple[str, str]:
    """``name:max|min`` from --metric, else the task's declared primary metric, else the loss."""
    if given is not None:
        name, _, mode = given.partition(":")
        if not mode:
            from seqlab.metrics import higher_is_better

            mode = "max" if higher_is_better(name) else "min"
        if mode not in ("min", "max") or not name:
            raise SeqlabError(f"--metric {given!r}: write NAME or NAME:max|min, e.g. --metric masked_acc:max.")
        return name, mode
    task_cls = _import_class(parsed.specs[0].config.task.class_path)
    declared = getattr(task_cls, "primary_metric", None)
    if isinstance(declared, tuple):
        return declared
    if isinstance(declared, str):
        return declared, getattr(task_cls, "primary_mode", "max")
    return "loss", "min"


_PREDICT_FLAGS = {
    "--prompt": "12345,",
    "--prompts_file": "prompts.txt",
    "--max_new_tokens": "64",
    "--temperature": "0.8",
    "--top_k": "5",
    "--seed": "0",
}


def cmd_predict(argv: list[str]) -> int:
    """Load a run's checkpoint and continue prompts with it, streaming each new token."""
    from seqlab.evaluation import load_weights
    from seqlab.generate import generate_stream

    own: dict[str, list[str]] = {flag: [] for flag in _PREDICT_FLAGS}
    rest, i = [], 0
    while i < len(argv):
        key, eq, value = argv[i].partition("=")
        if key in own:
            if not eq:
                if i + 1 >= len(argv) or (argv[i + 1].startswith("--") and key != "--prompt"):
                    raise SeqlabError(f"{key} needs a value, e.g. {key} {_PREDICT_FLAGS[key]}.")
                value, i = argv[i + 1], i + 1
            own[key].append(value)
        else:
            rest.append(argv[i])
        i += 1
    prompts = list(own["--prompt"])
    for path in own["--prompts_file"]:
        try:
            prompts += [ln.rstrip("\n") for ln in Path(path).read_text(encoding="utf-8").splitlines() if ln.strip()]
        except (OSError, UnicodeDecodeError) as exc:
            raise SeqlabError(
                f"--prompts_file {path}: cannot read it ({exc.__class__.__name__}); pass a UTF-8 "
                "text file with one prompt per line."
            ) from None
    if not prompts:
        raise SeqlabError("seqlab predict needs --prompt TEXT (repeatable) or --prompts_file FILE.")

    def number(flag: str, kind, default, low: float):
        values = own[flag]
        try:
            value = kind(values[-1]) if values else default
        except ValueError:
            raise SeqlabError(f"{flag} expects {kind.__name__}, got {values[-1]!r}.") from None
        if value is not None and value < low:
            raise SeqlabError(f"{flag} must be at least {low}, got {value}.")
        return value

    max_new = number("--max_new_tokens", int, 64, 1)
    temperature = number("--temperature", float, 0.0, 0.0)
    top_k = number("--top_k", int, None, 1)
    seed = number("--seed", int, None, 0)
    parsed = parse_runs("predict", rest)
    for spec in parsed.specs:
        task, model, trainer = _instantiate(spec)
        encode, decode = getattr(task, "encode", None), getattr(task, "decode", None)
        if encode is None or decode is None:
            raise SeqlabError(
                f"task {type(task).__name__} does not render text (no encode/decode), so "
                "seqlab predict cannot read prompts for it."
            )
        ids = [encode(prompt) for prompt in prompts]  # a character outside the vocabulary stops here
        path, step = load_weights(trainer.checkpoint_dir, task, model, spec.config.ckpt_path, trainer.test_checkpoint)
        sys.stdout.write(f"== {spec.name}: {path.name} (step {step:,})\n")
        check = getattr(task, "is_correct_continuation", None)
        for prompt, prompt_ids in zip(prompts, ids):
            expected = None
            if check is not None:
                try:  # a prompt that ends mid-answer has nothing to judge; it is still continued
                    expected = task.expected_continuation(prompt)
                except SeqlabError:
                    pass
            sys.stdout.write(prompt)
            sys.stdout.flush()
            new, shown = [], ""
            for _, token in generate_stream(
                model, prompt_ids, max_new, temperature, top_k, seed, getattr(task, "stop_token", None)
            ):
                new.append(token)
                text = decode(new)
                if not text.endswith("\ufffd"):  # streamed as soon as a whole character is chosen
                    sys.stdout.write(text[len(shown) :])
                    sys.stdout.flush()
                    shown = text
            text = decode(new)
            sys.stdout.write(text[len(shown) :])
            verdict = ""
            if expected is not None:
                verdict = "   right" if check(prompt, text) else f"   wrong (the reversal is {expected})"
            sys.stdout.write(verdict + "\n")
    return 0


def cmd_convert_checkpoint(argv: list[str]) -> int:
    """Convert an old pickle checkpoint (format 1) to the safetensors format, for files the user trusts."""
    from seqlab.checkpoint import CONVERT_COMMAND, convert_legacy_checkpoint

    paths = [a for a in argv if a != "--trust"]
    if len(paths) != 2 or any(p.startswith("-") for p in paths):
        raise SeqlabError(
            f"usage: {CONVERT_COMMAND} OLD.pdckpt NEW.safetensors --trust (the old file is "
            "unpickled, which runs any code it carries: convert only files you trust)."
        )
    ckpt = convert_legacy_checkpoint(paths[0], paths[1], trust="--trust" in argv)
    sys.stdout.write(f"wrote {paths[1]} (checkpoint format {ckpt['format_version']}, step {ckpt['step']})\n")
    return 0


# ---------------------------------------------------------------------------- the command table
@dataclass(frozen=True)
class Command:
    """One ``seqlab`` subcommand: its name, what it runs, its line in the usage text.

    ``recipe`` commands take ``--recipe`` and dotted overrides; their ``--help`` is the per-run
    parser's, generated from the classes' signatures and docstrings.
    """

    name: str
    run: Callable[[list[str]], int]
    help: str
    recipe: bool = False
    own_help: bool = False  # the command prints its own --help (an argparse parser of its own)


COMMANDS = [
    Command(
        "fit",
        cmd_fit,
        "train the runs of a recipe, test each (best checkpoint by default), write the report",
        recipe=True,
    ),
    Command(
        "validate",
        lambda argv: cmd_evaluate("validate", argv),
        "evaluate a run's checkpoint (default: last) on the validation set",
        recipe=True,
    ),
    Command(
        "test",
        lambda argv: cmd_evaluate("test", argv),
        "evaluate a run's checkpoint (default: best) with the task's final test",
        recipe=True,
    ),
    Command(
        "predict",
        cmd_predict,
        "continue --prompt TEXT (repeatable) or --prompts_file FILE with a run's "
        "checkpoint (default: the weights its fit tested), streaming the tokens",
        recipe=True,
    ),
    Command(
        "sweep",
        cmd_sweep,
        "train every --grid KEY=v1,v2 point x --seeds N of the selected runs, "
        "pick each model's best setting on validation, report mean ± std",
        recipe=True,
    ),
    Command("compare", cmd_compare, "write report.md, loss.png and the task's chart for runs/<experiment>"),
    Command(
        "tokenize",
        tokenize.command,
        "write a text file's bytes as a token file: --input FILE.txt --output data.bin",
        own_help=True,
    ),
    Command("models", lambda argv: cmd_list(MODELS), "list registered models with their parameter counts"),
    Command("tasks", lambda argv: cmd_list(TASKS), "list registered tasks"),
    Command("recipes", cmd_recipes, "list the recipes that come with seqlab (usable by name: --recipe NAME)"),
    Command(
        "convert-checkpoint",
        cmd_convert_checkpoint,
        "OLD NEW --trust: convert an old pickle checkpoint (.pdckpt, format 1) to .safetensors; "
        "loading it runs any code it carries, so convert only files you trust",
    ),
]

RECIPE_OPTIONS = """recipe options (fit, validate, test, ...):
  --recipe FILE|NAME    the recipe (YAML), or the name of a packaged one (`seqlab recipes`);
                        a saved runs/<exp>/<run>/config.yaml works too
  --runs a,b            only these runs of the recipe
  --print_config        print the resolved recipe and exit
  --parallel N          fit: train N runs at once, in child processes (default: the recipe's
                        `parallel`, else 1)
  --ckpt_path X         last | best | PATH (fit: resume from it)
  --prompt TEXT         predict: a prompt (repeat it, or --prompts_file FILE, one per line);
                        --max_new_tokens N (64), --temperature T (0: greedy), --top_k K, --seed S
  --grid KEY=v1,v2,...  sweep: values of a dotted option (repeat --grid for more keys);
                        RUN:KEY=v1,v2 gives one run its own values
  --seeds N             sweep: seeds per grid point (the run's seed, +1, ...)
  --metric NAME[:max]   sweep: the validation metric to select on (default: the task's own);
                        :max or :min, else the metric's direction (loss, perplexity: min)
  --protocol P          which weights each run's final test uses: best (default: every run's
                        best checkpoint) or seed (the Transformer's best, the others' last);
                        a recipe's `protocol:` key sets it too
  --trainer.max_steps N and any other dotted override (see `seqlab fit --help`)
"""


def usage() -> str:
    import textwrap

    width = max(len(c.name) for c in COMMANDS)
    indent = " " * (width + 4)
    lines = [
        textwrap.fill(c.help, 100, initial_indent=f"  {c.name:<{width}}  ", subsequent_indent=indent) for c in COMMANDS
    ]
    return "usage: seqlab COMMAND [options]\n\ncommands:\n" + "\n".join(lines) + "\n\n" + RECIPE_OPTIONS


def _add_to_path(folder: Path) -> None:
    # A recipe may name its own classes by class_path (examples/custom_task.yaml names
    # `custom_task.SortDigits`, a file beside it). `python script.py` finds such modules beside
    # the script; seqlab does the same for the recipe's folder and the working directory.
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))


def _check_environment() -> None:
    """The run settings (seqlab.ops.settings), checked once: a typo is one line, not a traceback."""
    from seqlab.ops.settings import run_settings

    try:
        run_settings()
    except ValueError as exc:
        raise SeqlabError(str(exc)) from None


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    configure_logging()
    stop_outside_training()
    die_with_parent()
    _add_to_path(Path.cwd())
    try:
        _check_environment()
        if not argv or argv[0] in ("-h", "--help"):
            sys.stdout.write(usage())
            return 0 if argv else 2
        name, rest = argv[0], argv[1:]
        command = next((c for c in COMMANDS if c.name == name), None)
        if command is None:
            close = difflib.get_close_matches(name, [c.name for c in COMMANDS], n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise SeqlabError(f"unknown command '{name}'.{hint} Run `seqlab --help` for the list.")
        if any(a in ("-h", "--help") for a in rest):
            if command.own_help:
                return command.run(rest)
            if command.recipe:
                build_run_parser(name).print_help()
            else:
                sys.stdout.write(usage())
            return 0
        return command.run(rest)
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
