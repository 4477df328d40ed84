"""Name -> class registries of models, tasks and callbacks, all found one way: entry points.

A class that ships in a package is declared in that package's pyproject, seqlab's own built-ins
as any plugin's::

    [project.entry-points."seqlab.models"]
    gru = "seqlab_gru:GRU"

A name is known from the installed metadata alone; its module is imported the first time the
name is used (:meth:`Registry.get`), so ``import seqlab`` and ``seqlab models --help`` import no
model, and :meth:`Registry.name_of` imports nothing.

A class defined at run time, which no package declares (a notebook, a test, an example script),
registers with the decorator instead: ``@register_model("name")``. Both kinds share one
namespace: a name is taken once. Ask a class's name with ``MODELS.name_of(cls)``; the
``registry_name`` attribute is set only once a class is registered or loaded by name.

A built-in (an entry point into seqlab itself) that fails to import is a bug in seqlab, and the
error propagates: it must not vanish from the list, and with it its contract tests. A plugin of
another package that fails to import is still listed, and choosing it says why it is unusable.

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
import sys
from collections.abc import Callable, Iterator
from importlib.metadata import EntryPoint, entry_points
from typing import TypeVar

from seqlab.callback import Callback
from seqlab.errors import SeqlabError
from seqlab.model import Model
from seqlab.task import Task

log = logging.getLogger(__name__)
T = TypeVar("T", bound=type)

_BASES = {"seqlab.models": Model, "seqlab.tasks": Task, "seqlab.callbacks": Callback}


class Registry:
    """The named classes of one kind (``model``, ``task`` or ``callback``): entry points of the
    ``group``, plus the classes registered at run time with :meth:`register`."""

    def __init__(self, kind: str, group: str):
        self.kind = kind
        self.group = group
        self._registered: dict[str, type] = {}  # run-time classes, by the decorator
        self._loaded: dict[str, type] = {}  # entry points imported so far
        self._broken: dict[str, str] = {}  # another package's plugin name -> why it is unusable
        self._points: dict[str, EntryPoint] | None = None
        self._clashes: dict[str, list[str]] = {}  # a name two packages declare -> their targets

    def register(self, name: str) -> Callable[[T], T]:
        """Class decorator registering a class defined at run time under ``name``.

        Classes in a package are declared as entry points instead (see the module docstring).
        """

        def decorator(cls: T) -> T:
            taken = self._registered.get(name)
            point = self._entry_points().get(name)
            if taken is None and point is not None and _target(cls) != point.value:
                taken_by = point.value
            elif taken is not None and taken is not cls:
                taken_by = _target(taken)
            else:
                taken_by = None
            if taken_by is not None:
                raise SeqlabError(
                    f"{self.kind} name '{name}' is registered twice ({taken_by} and {_target(cls)}); "
                    "give one of them another name."
                )
            self._registered[name] = cls
            cls.registry_name = name
            return cls

        return decorator

    def get(self, name: str) -> type:
        """The class registered as ``name``, imported now if need be; an unknown name lists the known ones."""
        if name in self._registered:
            return self._registered[name]
        points = self._entry_points()
        if name in points:
            return self._load(name, points[name])
        if name in self._clashes:
            raise SeqlabError(
                f"{self.kind} name '{name}' is declared by two installed packages "
                f"({' and '.join(self._clashes[name])}); uninstall one of them."
            )
        if not any(_is_builtin(p) for p in points.values()):  # e.g. run from a checkout never installed
            raise SeqlabError(
                f"unknown {self.kind} '{name}': seqlab's own {self.kind}s are missing from the installed "
                "metadata, where they are declared; install seqlab again (pip install -e .)."
            )
        known = self.names()
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise SeqlabError(f"unknown {self.kind} '{name}'.{hint} Known {self.kind}s: {', '.join(known) or 'none'}.")

    def name_of(self, cls: type) -> str | None:
        """The registered name of ``cls``, if any, found without importing anything."""
        for classes in (self._registered, self._loaded):
            for name, registered in classes.items():
                if registered is cls:
                    return name
        points = self._entry_points()
        target = _target(cls)
        for name, point in points.items():
            if point.value == target:
                return name
        # An entry point may name a re-export (``seqlab_gru:GRU`` for seqlab_gru.model.GRU): read
        # it from its module when that is imported already, which it is if ``cls`` came from it.
        for name, point in points.items():
            module = sys.modules.get(point.module)
            if module is not None and getattr(module, point.attr or "", None) is cls:
                return name
        return None

    def names(self) -> list[str]:
        """Every registered name, sorted; reads the metadata and imports nothing."""
        return sorted({*self._registered, *self._entry_points()})

    def items(self) -> Iterator[tuple[str, type]]:
        """``(name, class)`` for every usable class, sorted by name; imports every module.

        Another package's plugin that fails to import is left out with a warning (choosing it by
        name says why); a built-in that fails to import raises.
        """
        found = dict(self._registered)
        for name, point in self._entry_points().items():
            try:
                found[name] = self._load(name, point)
            except SeqlabError:
                if _is_builtin(point):
                    raise
                log.warning("could not load %s plugin '%s': %s", self.kind, name, self._broken[name])
        return iter(sorted(found.items()))

    def targets(self) -> dict[str, str]:
        """Entry-point name -> its ``module:qualname``, from the metadata (run-time classes are not in it)."""
        return {name: point.value for name, point in self._entry_points().items()}

    def __contains__(self, name: str) -> bool:
        return name in self._registered or name in self._entry_points()

    def _entry_points(self) -> dict[str, EntryPoint]:
        if self._points is None:
            points: dict[str, EntryPoint] = {}
            for point in entry_points(group=self.group):
                seen = points.get(point.name)
                if seen is not None and seen.value != point.value:
                    self._clashes[point.name] = [seen.value, point.value]
                points.setdefault(point.name, point)
            for name in self._clashes:
                del points[name]
            self._points = points
        return self._points

    def _load(self, name: str, point: EntryPoint) -> type:
        if name in self._loaded:
            return self._loaded[name]
        if name in self._broken:
            raise SeqlabError(self._unusable(name))
        if _is_builtin(point):
            cls = point.load()  # an error here is seqlab's own bug: let it show, with its traceback
        else:
            try:
                cls = point.load()
            except Exception as exc:  # one broken plugin must not break every other command
                self._broken[name] = f"{point.value} failed to import ({type(exc).__name__}: {exc})"
                raise SeqlabError(self._unusable(name)) from None
        base = _BASES[self.group]
        if not (isinstance(cls, type) and issubclass(cls, base)):
            self._broken[name] = f"{point.value} is not a subclass of seqlab.{base.__name__}"
            raise SeqlabError(self._unusable(name))
        if "registry_name" not in cls.__dict__:  # not the name inherited from a parent
            cls.registry_name = name
        self._loaded[name] = cls
        return cls

    def _unusable(self, name: str) -> str:
        return f"{self.kind} plugin '{name}' is installed but unusable: {self._broken[name]}; fix or reinstall it."


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
    name = next((n for n in (r.name_of(cls) for r in (MODELS, TASKS, CALLBACKS)) if n), cls.__name__)
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


def _is_builtin(point: EntryPoint) -> bool:
    return point.module == "seqlab" or point.module.startswith("seqlab.")


def _target(cls: type) -> str:
    """``cls`` spelled as an entry point's value: ``module:qualname``."""
    return f"{cls.__module__}:{cls.__qualname__}"


MODELS = Registry("model", "seqlab.models")
TASKS = Registry("task", "seqlab.tasks")
CALLBACKS = Registry("callback", "seqlab.callbacks")
register_model = MODELS.register
register_task = TASKS.register
