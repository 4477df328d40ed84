"""The ``seqlab`` command: recipes in, runs out.

    seqlab fit      --recipe recipes/reverse_digits_cpu.yaml [--runs a,b] [--trainer.max_steps N]
    seqlab validate --recipe R --runs a [--ckpt_path last|best|PATH]
    seqlab test     --recipe R --runs a [--ckpt_path best|last|PATH]
    seqlab compare  runs/<experiment>
    seqlab models | seqlab tasks

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
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import yaml

from seqlab._paddle import import_paddle

import_paddle()  # exits 2 with an install hint when no Paddle wheel is present

from jsonargparse import ActionConfigFile, ArgumentParser, Namespace  # noqa: E402

import paddle  # noqa: E402

import seqlab  # noqa: E402
import seqlab.callbacks  # noqa: E402,F401  (makes short callback names resolvable)
from seqlab.callback import Callback  # noqa: E402
from seqlab.errors import SeqlabError  # noqa: E402
from seqlab.log import configure_logging  # noqa: E402
from seqlab.model import Model  # noqa: E402
from seqlab.registry import MODELS, TASKS  # noqa: E402
from seqlab.task import Task  # noqa: E402
from seqlab.distributed import launched  # noqa: E402
from seqlab.interrupts import TrainingInterrupted  # noqa: E402
from seqlab.trainer import Trainer, seed_everything  # noqa: E402
from seqlab import tokenize  # noqa: E402

log = logging.getLogger("seqlab")
# Flags handled by seqlab itself rather than by the per-run jsonargparse parser.
_OWN_FLAGS = {"--recipe": True, "--runs": True, "--print_config": False, "--parallel": True,
              "--no_report": False}


@dataclass
class RunSpec:
    """One run of a recipe, parsed and checked, not yet instantiated."""

    name: str
    config: Namespace
    parser: ArgumentParser


# ---------------------------------------------------------------------------- parsing
def build_run_parser(command: str) -> ArgumentParser:
    """The jsonargparse parser of one run: task, model, trainer and the checkpoint to use."""
    parser = ArgumentParser(
        prog=f"seqlab {command}",
        description=f"seqlab {command}: options below are per run and override the recipe. "
        "seqlab's own flags: --recipe FILE (required), --runs a,b (some runs only), "
        "--print_config (print the resolved recipe), --parallel N (fit: N runs at once), "
        "--no_report (fit: skip report.md). See `seqlab --help`.",
        exit_on_error=False,
        allow_abbrev=False,  # otherwise --trainer.max_step is silently taken as max_steps
    )
    parser.add_argument("--config", action=ActionConfigFile, help="A single-run config (YAML).")
    parser.add_subclass_arguments(Task, "task", required=True, help="The task to learn.")
    parser.add_subclass_arguments(Model, "model", required=True, help="The model to train.")
    # `config` is what the CLI itself resolves and passes; it is not an option.
    parser.add_class_arguments(Trainer, "trainer", help="Loop, optimizer and callbacks.", skip={"config"})
    parser.add_argument(
        "--ckpt_path", type=Optional[str], default=None,
        help="fit: checkpoint to resume from (last, best or a path). validate/test: checkpoint "
        "to evaluate (default: validate uses last; test uses best, else last).",
    )
    return parser


def _split_own_flags(argv: list[str]) -> tuple[dict[str, Any], list[str]]:
    own: dict[str, Any] = {"--recipe": None, "--runs": None, "--print_config": False, "--parallel": None,
                           "--no_report": False}
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
                raise SeqlabError(f"{key} needs a value; e.g. {key} {'recipes/reverse_digits_cpu.yaml' if key == '--recipe' else 'rwkv7,lstm'}.")
        else:
            rest.append(arg)
        i += 1
    return own, rest


def load_recipe(path: str) -> tuple[str, dict[str, Any], dict[str, dict[str, Any]]]:
    """Read a recipe: returns (experiment name, shared config, {run name: overrides}).

    The shared config keeps the recipe-level key ``parallel`` (runs trained at once) if present.
    """
    file = Path(path)
    if not file.is_file():
        raise SeqlabError(f"recipe '{path}' does not exist; pass a YAML file, e.g. recipes/reverse_digits_cpu.yaml.")
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
        raise SeqlabError(f"{where} needs a {registry.kind} name, e.g. `{registry.kind}: {{class_path: {registry.names()[0] if registry.names() else 'name'}}}`.")
    section = dict(section)
    _expect_mapping(section.get("init_args"), where, f"{registry.kind}.init_args")
    class_path = str(section["class_path"])
    if "." not in class_path:  # a registry name (entry-point plugins included)
        cls = registry.get(class_path)
        section["class_path"] = f"{cls.__module__}.{cls.__qualname__}"
    section.setdefault("init_args", {})
    section["init_args"] = dict(section["init_args"] or {})
    return section


def _prepare_run_dict(experiment: str, run: str, merged: dict[str, Any], where: str) -> dict[str, Any]:
    merged.pop("parallel", None)
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
        return SeqlabError(f"{where}: option '{m.group(1)}' is not accepted{owner}; check its spelling in the class's --help.")
    m = re.search(r'Parser key "([^"]+)":\s*Expected a typing.Literal\[(.*?)\]\.\s*Got value: (.+)', text, re.S)
    if m:
        return SeqlabError(f"{where}: {m.group(1)} expects one of {m.group(2)}, got {m.group(3).splitlines()[0]!r}; fix its value.")
    m = re.search(r'Parser key "([^"]+)":\s*(Expected a <class \'(\w+)\'>)?.*?Got value: (.+)', text, re.S)
    if m and m.group(3):
        return SeqlabError(f"{where}: {m.group(1)} expects {m.group(3)}, got {m.group(4).splitlines()[0]!r}; fix its value.")
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


def parse_runs(command: str, argv: list[str]) -> ParsedCommand:
    """Parse every selected run of the recipe (and the overrides) without side effects."""
    own, overrides = _split_own_flags(argv)
    if not own["--recipe"]:
        raise SeqlabError(f"seqlab {command} needs --recipe FILE, e.g. `seqlab {command} --recipe recipes/reverse_digits_cpu.yaml`.")
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
    specs = []
    for run in selected:
        where = f"recipe '{recipe}', run '{run}'"
        merged = _prepare_run_dict(experiment, run, _deep_merge(shared, runs[run]), where)
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
    return ParsedCommand(experiment, specs, bool(own["--print_config"]), parallel, recipe, overrides,
                         report=not own["--no_report"])


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
    settings["optimizer"] = _build({"class_path": "seqlab.optim.AdamW", "init_args": settings.get("optimizer") or {}},
                                   f"{where}, trainer.optimizer")
    settings["callbacks"] = [_build(cb, f"{where}, callback") for cb in settings.get("callbacks") or []]
    try:
        trainer = Trainer(**settings, config=yaml.safe_load(dump_config(spec)))
    except SeqlabError as exc:
        raise SeqlabError(f"{where}: {exc}") from None
    return task, model, trainer


def _build(section: dict[str, Any], where: str):
    """``{class_path, init_args}`` -> an instance; its own error, or one sentence from a bad value.

    jsonargparse already checked the types; what is left are a class's own rules (``n_embd``
    must divide into heads, ``lr`` must be positive...), raised from its ``__init__``.
    """
    cls = _import_class(section["class_path"])
    kwargs = {k: _build(v, where) if isinstance(v, dict) and "class_path" in v else v
              for k, v in (section.get("init_args") or {}).items()}
    try:
        return cls(**kwargs)
    except SeqlabError as exc:
        raise SeqlabError(f"{where}: {exc}") from None
    except (ValueError, TypeError, AssertionError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0].rstrip(".")
        raise SeqlabError(f"{where}: {cls.__name__} rejected its settings: {first}; fix its init_args.") from None


def _print_recipe(parsed: ParsedCommand) -> int:
    recipe = {"name": parsed.experiment,
              "runs": {s.name: yaml.safe_load(dump_config(s)) for s in parsed.specs}}
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
            log.info("== run %s: %s, %d parameters -> %s", spec.name, type(model).__name__,
                     model.num_parameters(), trainer.run_dir)
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
        raise SeqlabError(f"the selected runs ask for different trainer.devices ({counts}); give them one "
                          "value, or fit them with separate commands (--runs).")
    if counts[0] > 1 and parsed.parallel > 1 and len(parsed.specs) > 1:
        raise SeqlabError("--parallel runs several single-process runs at once, and trainer.devices > 1 "
                          "runs one run on several processes; use one of them.")
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
    """Train the runs in ``parsed.parallel`` child processes, one thread each.

    Paddle's CPU kernels for these small models barely use a second core, so on a 2-core machine
    two single-threaded runs at once nearly halve a recipe's wall time (benchmarks/RESULTS.md).
    Each child is ``seqlab fit --runs <one run>`` with the same overrides; its lines are prefixed
    with the run name. Longest runs are not known in advance, so runs start in recipe order.

    Children run in their own session, so a terminal's Ctrl-C reaches only this process, which
    forwards SIGINT/SIGTERM to each child exactly once (a second signal is forwarded too, and
    aborts them), stops starting runs, waits for the children to save, and exits with their
    status. A child whose parent dies (even by SIGKILL) gets SIGTERM from the kernel.
    """
    import os
    import signal
    import subprocess
    import threading

    env = dict(os.environ, OMP_NUM_THREADS="1", SEQLAB_NUM_THREADS="1", SEQLAB_PARENT_PID=str(os.getpid()))
    pending = [spec.name for spec in parsed.specs]
    running: list[tuple[str, subprocess.Popen, threading.Thread]] = []
    failed: list[tuple[str, int]] = []
    received: list[int] = []

    def forward(signum, frame) -> None:
        received.append(signum)
        pending.clear()
        for _, proc, _ in running:
            if proc.poll() is None:
                proc.send_signal(signum)

    def pump(name: str, stream) -> None:
        width = max(len(s.name) for s in parsed.specs)
        for line in stream:
            sys.stdout.write(f"[{name:<{width}}] {line}")
            sys.stdout.flush()

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        log.info("training %d runs, %d at a time: %s", len(pending), parsed.parallel, ", ".join(pending))
        while pending or running:
            while pending and len(running) < parsed.parallel:
                name = pending.pop(0)
                cmd = [sys.executable, "-m", "seqlab.cli", "fit", "--recipe", parsed.recipe,
                       "--runs", name, "--no_report", *parsed.overrides]
                proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                        env=env, start_new_session=True)
                thread = threading.Thread(target=pump, args=(name, proc.stdout), daemon=True)
                thread.start()
                running.append((name, proc, thread))
            for item in list(running):
                name, proc, thread = item
                if proc.poll() is not None:
                    thread.join()
                    running.remove(item)
                    if proc.returncode != 0:
                        failed.append((name, proc.returncode))
            time.sleep(0.2)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if received:
        codes = {code for _, code in failed}
        name = signal.Signals(received[0]).name
        raise TrainingInterrupted(received[0], f"stopped by {name}; every started run saved its last checkpoint.",
                                  resume_command(argv), codes.pop() if len(codes) == 1 else None)
    if failed:
        names = ",".join(name for name, _ in failed)
        raise SeqlabError(f"run(s) {names} failed (their lines above say why); rerun them with --runs {names}, adding --ckpt_path last to resume from their last checkpoint.")


def _die_with_parent() -> None:
    """In a ``--parallel`` child: ask the kernel for SIGTERM when the parent process dies."""
    import ctypes
    import os
    import signal

    parent = os.environ.pop("SEQLAB_PARENT_PID", None)
    if parent is None or not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != int(parent):  # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


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
    clean = {run: {k: (None if isinstance(v, float) and v != v else v) for k, v in r.items()}
             for run, r in results.items()}
    sys.stdout.write(json.dumps(clean, indent=2, allow_nan=False) + "\n")
    return 0


def cmd_list(registry) -> int:
    rows = []
    for name, cls in registry.items():
        extra = ""
        if registry is MODELS:
            try:
                seed_everything(0)
                extra = f"{cls().num_parameters():>10,d} params"
            except Exception as exc:  # a plugin that can't build with defaults is still listed
                extra = f"{'(' + type(exc).__name__ + ')':>17}"
        rows.append((name, extra, cls.summary()))
    width = max((len(r[0]) for r in rows), default=4)
    for name, extra, summary in rows:
        sys.stdout.write(f"{name:<{width}}  {extra}  {summary}\n")
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


COMMANDS = [
    Command("fit", cmd_fit, "train the runs of a recipe, test each on its best checkpoint, write the report", recipe=True),
    Command("validate", lambda argv: cmd_evaluate("validate", argv),
            "evaluate a run's checkpoint (default: last) on the validation set", recipe=True),
    Command("test", lambda argv: cmd_evaluate("test", argv),
            "evaluate a run's checkpoint (default: best) with the task's final test", recipe=True),
    Command("compare", cmd_compare, "write report.md, loss.png and the task's chart for runs/<experiment>"),
    Command("tokenize", tokenize.command, "write a text file's bytes as a token file: --input FILE.txt --output data.bin"),
    Command("models", lambda argv: cmd_list(MODELS), "list registered models with their parameter counts"),
    Command("tasks", lambda argv: cmd_list(TASKS), "list registered tasks"),
]

RECIPE_OPTIONS = """recipe options (fit, validate, test, ...):
  --recipe FILE         the recipe (YAML); a saved runs/<exp>/<run>/config.yaml works too
  --runs a,b            only these runs of the recipe
  --print_config        print the resolved recipe and exit
  --parallel N          fit: train N runs at once, in child processes (default: the recipe's
                        `parallel`, else 1)
  --ckpt_path X         last | best | PATH (fit: resume from it)
  --trainer.max_steps N and any other dotted override (see `seqlab fit --help`)
"""


def usage() -> str:
    width = max(len(c.name) for c in COMMANDS)
    lines = [f"  {c.name:<{width}}  {c.help}" for c in COMMANDS]
    return "usage: seqlab COMMAND [options]\n\ncommands:\n" + "\n".join(lines) + "\n\n" + RECIPE_OPTIONS


def _add_to_path(folder: Path) -> None:
    # A recipe may name its own classes by class_path (examples/custom_task.yaml names
    # `custom_task.SortDigits`, a file beside it). `python script.py` finds such modules beside
    # the script; seqlab does the same for the recipe's folder and the working directory.
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))


def _check_environment() -> None:
    """Environment variables seqlab reads, checked once so a typo is one line, not a traceback."""
    import os

    backend = os.environ.get("SEQLAB_WKV7")
    valid = ("reference", "chunked", "cpp", "cuda")
    if backend and backend not in valid:
        raise SeqlabError(f"SEQLAB_WKV7={backend!r} is not a WKV7 back end; use one of {', '.join(valid)} or unset it.")
    threads = os.environ.get("SEQLAB_NUM_THREADS")
    if threads and not (threads.isdigit() and int(threads) > 0):
        raise SeqlabError(f"SEQLAB_NUM_THREADS={threads!r} must be a positive integer; fix or unset it.")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    configure_logging()
    _die_with_parent()
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
