"""Name -> class registries for models and tasks, with out-of-tree plugins via entry points.

In-tree code registers with a decorator (``@register_model("rwkv7")``). A plugin package declares
an entry point in its own pyproject instead, e.g.::

    [project.entry-points."seqlab.models"]
    gru = "seqlab_gru:GRU"

Entry points are loaded lazily, the first time a registry is read.

A class whose code needs an optional package (e.g. the PaddleNLP models) declares it with
``requires = ("paddlenlp", "seqlab[paddlenlp]")`` (the module, then what to pip install) and imports
it only when built, through :func:`import_requirement`. So it is registered and listed even where
the package is missing, and choosing it then fails with the install command.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import logging
from collections.abc import Callable, Iterator
from importlib.metadata import entry_points
from typing import TypeVar

from seqlab.errors import SeqlabError

log = logging.getLogger(__name__)
T = TypeVar("T", bound=type)

# In-tree plugin modules, imported on first use so that `import seqlab` stays light.
_BUILTIN_MODULES = {
    "seqlab.models": (
        "seqlab.models.rwkv7",
        "seqlab.models.transformer",
        "seqlab.models.transformer_modern",
        "seqlab.models.lstm",
        "seqlab.models.mlp",
        "seqlab.models.pnlp_llama",  # these two need the `paddlenlp` extra, imported when built
        "seqlab.models.pnlp_mamba",
    ),
    "seqlab.tasks": (
        "seqlab.tasks.reverse_digits",
        "seqlab.tasks.reverse_digits_padded",
        "seqlab.tasks.token_file",
        "seqlab.tasks.dataset",
    ),
}


class Registry:
    """A named collection of classes of one kind (``model`` or ``task``)."""

    def __init__(self, kind: str, group: str):
        self.kind = kind
        self.group = group
        self._classes: dict[str, type] = {}
        self._broken: dict[str, str] = {}  # plugin name -> why it could not be loaded
        self._loaded = False

    def register(self, name: str) -> Callable[[T], T]:
        """Class decorator registering the class under ``name``."""

        def decorator(cls: T) -> T:
            existing = self._classes.get(name)
            if existing is not None and existing is not cls:
                raise SeqlabError(
                    f"{self.kind} name '{name}' is registered twice ({_qualname(existing)} and "
                    f"{_qualname(cls)}); give one of them another name."
                )
            self._classes[name] = cls
            cls.registry_name = name
            return cls

        return decorator

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        for module in _BUILTIN_MODULES.get(self.group, ()):
            try:
                importlib.import_module(module)
            except ModuleNotFoundError as exc:
                if exc.name != module:  # a real missing dependency inside the module
                    raise
                log.debug("built-in %s module %s is not present", self.kind, module)
        base = _base_class(self.group)
        for ep in entry_points(group=self.group):
            try:
                cls = ep.load()
            except Exception as exc:  # a broken plugin must not break every other command
                self._broken[ep.name] = f"{ep.value} failed to import ({type(exc).__name__}: {exc})"
                log.warning("could not load %s plugin '%s': %s", self.kind, ep.name, self._broken[ep.name])
                continue
            if not (isinstance(cls, type) and issubclass(cls, base)):
                self._broken[ep.name] = f"{ep.value} is not a subclass of seqlab.{base.__name__}"
                log.warning("ignoring %s plugin '%s': %s", self.kind, ep.name, self._broken[ep.name])
                continue
            if ep.name not in self._classes:
                self._classes[ep.name] = cls
                if "registry_name" not in cls.__dict__:  # not the name inherited from a parent
                    cls.registry_name = ep.name

    def get(self, name: str) -> type:
        """The class registered as ``name``; an unknown name lists the known ones."""
        self._load()
        if name in self._classes:
            return self._classes[name]
        if name in self._broken:
            raise SeqlabError(
                f"{self.kind} plugin '{name}' is installed but unusable: {self._broken[name]}; fix or reinstall it."
            )
        known = sorted(self._classes)
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise SeqlabError(f"unknown {self.kind} '{name}'.{hint} Known {self.kind}s: {', '.join(known)}.")

    def name_of(self, cls: type) -> str | None:
        """The registered name of ``cls``, if any."""
        self._load()
        for name, registered in self._classes.items():
            if registered is cls:
                return name
        return None

    def names(self) -> list[str]:
        self._load()
        return sorted(self._classes)

    def items(self) -> Iterator[tuple[str, type]]:
        self._load()
        return iter(sorted(self._classes.items()))

    def __contains__(self, name: str) -> bool:
        self._load()
        return name in self._classes


def missing_requirement(cls: type) -> str | None:
    """The install command for ``cls``'s optional package when it is not installed, else None.

    Cheap (no import): ``seqlab models`` calls it for every class.
    """
    requires = getattr(cls, "requires", None)
    if not requires:
        return None
    module, pip_name = requires
    return None if _installed(module) else f"pip install '{pip_name}'"


def import_requirement(cls: type, module: str):
    """Import ``module`` from ``cls``'s optional package, or say in one sentence how to install it."""
    package, pip_name = cls.requires
    name = getattr(cls, "registry_name", None) or cls.__name__
    try:
        return importlib.import_module(module)
    except Exception as exc:  # a third-party import can fail in any way when its dependencies drift
        if not _installed(package):
            raise SeqlabError(
                f"'{name}' needs {package}, which is not installed; install it with: pip install '{pip_name}'."
            ) from None
        # Installed but broken, typically a dependency at a version it cannot import with.
        raise SeqlabError(
            f"'{name}' needs {package}, which is installed but does not import "
            f"({type(exc).__name__}: {exc}); reinstall it with: pip install '{pip_name}'."
        ) from None


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # e.g. sys.modules[module] is None: importing it fails
        return False


def _base_class(group: str) -> type:
    if group == "seqlab.models":
        from seqlab.model import Model

        return Model
    from seqlab.task import Task

    return Task


def _qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


MODELS = Registry("model", "seqlab.models")
TASKS = Registry("task", "seqlab.tasks")
register_model = MODELS.register
register_task = TASKS.register
