"""Recipe files: reading one, choosing its runs and protocol, merging each run's settings.

A recipe is YAML with one task, shared settings and named runs::

    name: reverse_digits          # experiment name (default: the file's stem)
    parallel: 2                   # fit and sweep: runs trained at once (default 1)
    protocol: seed                # the protocol the runs follow (default: best)
    protocols:                    # what a protocol means: overrides merged into every run...
      seed: {trainer: {test_checkpoint: last}}
    task: {class_path: reverse_digits, init_args: {...}}
    trainer: {max_steps: 2000, optimizer: {lr: 1e-3}, callbacks: [...]}
    runs:
      rwkv7: {model: {class_path: rwkv7}, trainer: {optimizer: {lr: 4e-3}}}
      transformer:
        model: transformer
        protocols: {seed: {trainer: {test_checkpoint: best}}}   # ...or into this run only
      lstm: {model: lstm}

One run's settings are the shared part deep-merged with the run's own, then with the chosen
protocol's overrides for it (the recipe's ``protocols.<name>``, then the run's). A protocol is
a name of :data:`seqlab.summary.PROTOCOLS`, which the report explains; ``best`` needs no
overrides (the Trainer tests on the best checkpoint by default), any other protocol must be
declared for every run it is chosen for, except ``uniform``: it needs no declaration, and after
any declared overrides it gives every run the same optimizer rules (:func:`uniform_rules`:
AdamW, decay 0.1 on the matrices only, clipping at 1.0, cosine with warmup, the best checkpoint;
each run keeps its own ``lr``). ``parallel``, ``protocol`` and ``settings`` are
recipe-level keys: inside a run they are an error naming where they belong.

A saved ``runs/<experiment>/<run>/config.yaml`` is a recipe of one run (no ``runs`` key): its
protocol's overrides are already in its settings, and its ``settings`` (the SEQLAB_* run
settings it ran with) are a record, never re-applied.

This module works on plain dicts; ``seqlab.commands._runs`` checks the result against the
classes' signatures with jsonargparse.
"""

from __future__ import annotations

import copy
import difflib
import importlib
import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from seqlab.errors import SeqlabError
from seqlab.io import check_name
from seqlab.optim import UNIFORM_CLIP, UNIFORM_MIN_LR, UNIFORM_OPTIMIZER, UNIFORM_WARMUP
from seqlab.registry import MODELS, TASKS
from seqlab.summary import KNOWN_PROTOCOLS

RUN_KEYS = ("task", "model", "trainer", "ckpt_path")
DEFAULT_PROTOCOL = "best"
UNIFORM = "uniform"
# The callbacks ``uniform`` replaces: seqlab's LR schedules and gradient clipping, by any of their names.
_RULE_CALLBACKS = {"GradientClip", "ConstantLR", "CosineWarmupLR", "gradient_clip", "constant_lr", "cosine_warmup_lr"}
# Keys of the recipe as a whole, and where each belongs when a run names it.
_RECIPE_KEYS = {
    "parallel": "it is the recipe's (runs trained at once): move it to the recipe's top level or pass --parallel N",
    "protocol": "it is the recipe's: move it to the recipe's top level or pass --protocol NAME, and put what a "
    "protocol means for this run under the run's `protocols:`",
    "settings": "it is what a saved config.yaml records of the SEQLAB_* environment variables, not a setting: "
    "remove it and set those variables in the environment",
}


@dataclass
class Recipe:
    """A recipe file, read and checked for shape (not yet for the classes' options).

    Attributes:
        path: the recipe as the user named it (messages quote it).
        name: the experiment name (the runs' folder under ``trainer.root_dir``).
        shared: the settings every run starts from, recipe-level keys included.
        runs: each run's own settings, by run name, in the file's order.
        single_run: the file has no ``runs`` (e.g. a saved config.yaml).
    """

    path: str
    name: str
    shared: dict[str, Any]
    runs: dict[str, dict[str, Any]]
    single_run: bool = False

    def select(self, names: str | None) -> list[str]:
        """The runs named by ``--runs a,b`` (every run when None), in that order."""
        if names is None:
            return list(self.runs)
        selected = [r.strip() for r in str(names).split(",") if r.strip()]
        if not selected:
            raise SeqlabError(f"--runs names no run; pass some of: {', '.join(self.runs)}.")
        twice = sorted({r for r in selected if selected.count(r) > 1})
        if twice:
            raise SeqlabError(
                f"--runs names run '{twice[0]}' twice, and two fits of one run would write one folder; name each run once."
            )
        for run in selected:
            if run not in self.runs:
                close = difflib.get_close_matches(run, list(self.runs), n=1)
                hint = f" Did you mean '{close[0]}'?" if close else ""
                raise SeqlabError(f"recipe '{self.path}' has no run '{run}'.{hint} Its runs: {', '.join(self.runs)}.")
        return selected

    def protocol(self, given: str | None) -> str:
        """``--protocol`` if given, else the recipe's ``protocol``, else ``best``; a known name."""
        protocol = given or self.shared.get("protocol") or DEFAULT_PROTOCOL
        if protocol not in KNOWN_PROTOCOLS:
            raise SeqlabError(
                f"protocol {protocol!r} is not known; use one of: "
                + "; ".join(f"'{k}' ({v})" for k, v in KNOWN_PROTOCOLS.items())
                + "."
            )
        return protocol

    def parallel(self, given: int | None) -> int:
        """``--parallel`` if given, else the recipe's ``parallel``, else 1: a positive int."""
        value = given if given is not None else self.shared.get("parallel", 1)
        try:
            number = int(value)
        except (TypeError, ValueError):
            number = 0
        if number < 1:
            raise SeqlabError(f"--parallel expects a positive int (runs trained at once), got {value!r}.")
        return number

    def run_dict(self, run: str, protocol: str) -> dict[str, Any]:
        """One run's settings as a dict for the run parser: merged, its protocol applied, names resolved."""
        where = f"recipe '{self.path}', run '{run}'"
        merged = deep_merge(self.shared, self.runs[run])
        for key in ("parallel", "protocol", "settings"):  # the recipe's, read above (or recorded)
            merged.pop(key, None)
        protocols = merged.pop("protocols", None) or {}
        _expect_mapping(protocols, where, "protocols")
        for name, overrides in protocols.items():
            if name not in KNOWN_PROTOCOLS:
                raise SeqlabError(
                    f"{where}: protocols.{name} is not a known protocol; declare some of: {', '.join(KNOWN_PROTOCOLS)}."
                )
            _expect_mapping(overrides, where, f"protocols.{name}")
            _no_recipe_keys(overrides or {}, f"recipe '{self.path}'", f"protocols.{name}")
        if protocol in protocols:
            merged = deep_merge(merged, protocols[protocol] or {})
        elif protocol not in (DEFAULT_PROTOCOL, UNIFORM) and not (
            self.single_run and protocol == self.shared.get("protocol")
        ):
            raise SeqlabError(
                f"{where}: protocol '{protocol}' is not declared for this run; say what it means under "
                f"`protocols: {{{protocol}: ...}}` in the recipe or the run (see recipes/reverse_digits.yaml), "
                "or choose --protocol best."
            )
        if protocol == UNIFORM:  # after the declared overrides: they may set an lr, never the rules
            merged = uniform_rules(merged, where)
        return _prepare_run_dict(self.name, run, merged, where)


def uniform_rules(merged: dict[str, Any], where: str) -> dict[str, Any]:
    """One run's settings under ``protocol: uniform``: the same optimizer rules as every other run.

    The run keeps its own ``lr`` (the knob a sweep tunes per model) and every callback that is not
    an LR schedule or gradient clipping; its optimizer settings become :data:`UNIFORM_OPTIMIZER`
    (AdamW, decay 0.1 on the matrices only), its schedule and clipping become
    ``GradientClip(max_norm=1.0)`` then ``CosineWarmupLR(warmup_steps=0.05, min_lr=1e-6)``, and it
    is tested on its best checkpoint. The schedule comes last in the run's callbacks, so an
    override ``--trainer.callbacks.init_args.warmup_steps 0.1`` changes its warmup (jsonargparse
    sets an ``init_args`` key on the list's last callback), and ``seqlab sweep`` takes it as a
    ``--grid`` key (``--grid trainer.callbacks.init_args.warmup_steps=0,0.1``).
    """
    merged = copy.deepcopy(merged)
    trainer = merged.setdefault("trainer", {}) or {}
    merged["trainer"] = trainer
    optimizer = trainer.get("optimizer") or {}
    _expect_mapping(optimizer, where, "trainer.optimizer")
    trainer["optimizer"] = {**optimizer, **copy.deepcopy(UNIFORM_OPTIMIZER)}
    callbacks = trainer.get("callbacks") or []
    if not isinstance(callbacks, list):
        raise SeqlabError(f"{where}: 'trainer.callbacks' must be a list, got {type(callbacks).__name__}.")
    kept = [c for c in callbacks if _callback_name(c) not in _RULE_CALLBACKS]
    trainer["callbacks"] = [
        *kept,
        {"class_path": "GradientClip", "init_args": {"max_norm": UNIFORM_CLIP}},
        {"class_path": "CosineWarmupLR", "init_args": {"warmup_steps": UNIFORM_WARMUP, "min_lr": UNIFORM_MIN_LR}},
    ]
    trainer["test_checkpoint"] = "best"
    return merged


def _callback_name(callback: Any) -> str:
    path = callback if isinstance(callback, str) else (callback or {}).get("class_path", "")
    return str(path).rsplit(".", 1)[-1]


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


def load_recipe(path: str) -> Recipe:
    """Read and shape-check the recipe ``path`` (a file, or a packaged recipe's name)."""
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
    single_run = runs is None
    if single_run:  # a single-run config (e.g. a saved config.yaml) is a recipe with one run
        model = data.get("model") or {}
        model_name = model if isinstance(model, str) else model.get("class_path", "run")
        run_name = (data.get("trainer") or {}).get("run_name") or str(model_name).rsplit(".", 1)[-1].lower()
        runs = {run_name: {}}
    if not isinstance(runs, dict) or not runs:
        raise SeqlabError(f"recipe '{path}': 'runs' must map run names to their settings.")
    check_name(name, f"recipe '{path}': the experiment name (`name:`, else trainer.experiment)", nested=True)
    for run in runs:
        check_name(run, f"recipe '{path}': run name")
    _expect_mapping(data.get("trainer"), f"recipe '{path}'", "trainer")
    for run, overrides in runs.items():
        _expect_mapping(overrides, f"recipe '{path}'", f"runs.{run}")
        _no_recipe_keys(overrides or {}, f"recipe '{path}'", f"runs.{run}")
        _expect_mapping((overrides or {}).get("trainer"), f"recipe '{path}', run '{run}'", "trainer")
    return Recipe(str(path), name, data, {str(k): (v or {}) for k, v in runs.items()}, single_run)


def _no_recipe_keys(section: dict[str, Any], where: str, key: str) -> None:
    """A recipe-level key inside a run (or a protocol's overrides) would be dropped: say where it belongs."""
    for name, belongs in _RECIPE_KEYS.items():
        if name in section:
            raise SeqlabError(f"{where}: '{key}.{name}' is not a run's setting; {belongs}.")


def _expect_mapping(value: Any, where: str, key: str) -> None:
    if value is not None and not isinstance(value, dict):
        raise SeqlabError(f"{where}: '{key}' must be a mapping of settings, got {type(value).__name__} ({value!r}).")


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``override`` merged into a copy of ``base``: mappings key by key, anything else replaced."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _resolve_component(section: Any, registry, where: str) -> dict[str, Any]:
    """Accept ``rwkv7``, ``{class_path: rwkv7, init_args: ..}`` or a dotted class path."""
    if isinstance(section, str):
        section = {"class_path": section}
    if not isinstance(section, dict) or "class_path" not in section:
        example = registry.names()[0] if registry.names() else "name"
        raise SeqlabError(f"{where} needs a {registry.kind} name, e.g. `{registry.kind}: {{class_path: {example}}}`.")
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
    unknown = sorted(set(merged) - set(RUN_KEYS))
    if unknown:
        close = difflib.get_close_matches(unknown[0], RUN_KEYS, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise SeqlabError(f"{where}: unknown key '{unknown[0]}'{hint}; a run has task, model, trainer and ckpt_path.")
    if "task" not in merged or "model" not in merged:
        raise SeqlabError(f"{where}: run '{run}' needs both a task and a model.")
    merged["task"] = _resolve_component(merged["task"], TASKS, where)
    merged["model"] = _resolve_component(merged["model"], MODELS, where)
    # Models take the task's vocabulary (its own setting, else its class's) unless the recipe pins it.
    task_cls = import_class(merged["task"]["class_path"])
    model_args = merged["model"]["init_args"]
    task_vocab = merged["task"]["init_args"].get("vocab_size") or getattr(task_cls, "vocab_size", 0)
    if "vocab_size" not in model_args and task_vocab:
        model_args["vocab_size"] = task_vocab
    merged["trainer"] = {**(merged.get("trainer") or {}), "experiment": experiment, "run_name": run}
    return merged


def class_paths(section: Any) -> list[str]:
    """Every ``class_path`` value in ``section`` (a run's settings), at any depth."""
    if isinstance(section, dict):
        found = [str(section["class_path"])] if isinstance(section.get("class_path"), str) else []
        return found + [p for value in section.values() for p in class_paths(value)]
    if isinstance(section, list):
        return [p for value in section for p in class_paths(value)]
    return []


def needs_folder(folder: Path, paths: list[str]) -> bool:
    """Some dotted class path's top module is not importable, but lives in ``folder``
    (``custom_task.SortDigits`` beside its recipe)."""
    for path in paths:
        top = path.split(".", 1)[0]
        if "." not in path or not top.isidentifier():
            continue
        if (folder / f"{top}.py").is_file() or (folder / top / "__init__.py").is_file():
            try:
                if importlib.util.find_spec(top) is None:
                    return True
            except (ImportError, ValueError):
                return True
    return False


def add_to_path(folder: Path) -> None:
    """Put ``folder`` on ``sys.path`` after the installed packages (appended), so its modules are
    found by name but a stray ``matplotlib.py`` in it never shadows the real package."""
    if str(folder) not in sys.path:
        sys.path.append(str(folder))


def import_class(class_path: str) -> type:
    """The class a dotted ``class_path`` names; a missing one is a one-line error."""
    module, _, name = class_path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        raise SeqlabError(f"cannot import '{class_path}'; check the class_path or install the plugin.") from None
