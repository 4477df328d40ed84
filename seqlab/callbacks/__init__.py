"""seqlab's built-in callbacks, one per file (as Lightning's ``callbacks/`` package).

Each is declared as an entry point of the ``seqlab.callbacks`` group in seqlab's pyproject, and
this package imports none of them: the Trainer, which imports it for :func:`arrange_callbacks`,
depends on no concrete callback. The defaults are names that the registry resolves when a Trainer
is built, and ``from seqlab.callbacks import CSVLogger`` imports that one module when asked.

``default_callbacks()`` is what every Trainer gets unless told otherwise: the Trainer adds each
default whose type the user did not already provide.
"""

from seqlab.errors import SeqlabError
from seqlab.registry import CALLBACKS

#: The defaults, by entry-point name, in dispatch order: progress on screen, metrics.csv, VisualDL
#: records, the seed's best-checkpoint rule, and the run's files (config.yaml, metrics.json,
#: samples.txt).
DEFAULTS = (
    "progress_bar",
    "csv_logger",
    "visualdl_logger",
    "moving_average_checkpoint",
    "save_config",
    "save_summary",
    "save_samples",
)


def default_callbacks() -> list:
    """A new instance of each default callback (:data:`DEFAULTS`)."""
    return [CALLBACKS.get(name)() for name in DEFAULTS]


def missing_defaults(given: list[type]) -> list:
    """The defaults whose kind is not among the ``given`` callback classes.

    A user's subclass of a default (say, a custom best checkpoint) replaces it. The Trainer adds
    these; the CLI writes them into the saved config, so both follow this one rule.
    """
    return [d for d in default_callbacks() if not any(issubclass(g, type(d)) for g in given)]


def arrange_callbacks(callbacks: list, add_defaults: bool) -> list:
    """The Trainer's dispatch order: the given callbacks (plus missing defaults), ``runs_last`` ones last.

    Refuses two callbacks with one ``state_key``: their states would overwrite each other in
    every checkpoint.
    """
    if add_defaults:
        callbacks = callbacks + missing_defaults([type(cb) for cb in callbacks])
    keys = [cb.state_key for cb in callbacks]
    dupes = sorted({k for k in keys if keys.count(k) > 1})
    if dupes:
        raise SeqlabError(f"two callbacks share the state_key {dupes[0]!r}; remove one or give it its own state_key.")
    return sorted(callbacks, key=lambda cb: cb.runs_last)  # stable: the given order otherwise


def import_all() -> list[type]:
    """Every callback class (built-in and plugin), imported.

    The CLI calls it before parsing: jsonargparse resolves a short ``class_path`` such as
    ``GradientClip`` only among subclasses that are already imported.
    """
    return [cls for _, cls in CALLBACKS.items()]


def _exported() -> dict[str, str]:
    """Class name -> entry-point name, for the callbacks in this package (read from the metadata)."""
    prefix = f"{__name__}."
    return {target.rsplit(":", 1)[1]: name for name, target in CALLBACKS.targets().items() if target.startswith(prefix)}


def __getattr__(name: str):
    # PEP 562: `from seqlab.callbacks import GradientClip` imports grad_clip.py alone, on demand.
    point = _exported().get(name)
    if point is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return CALLBACKS.get(point)


def __dir__() -> list[str]:
    return sorted([*globals(), *_exported()])


__all__ = [
    *sorted(_exported()),
    "DEFAULTS",
    "arrange_callbacks",
    "default_callbacks",
    "import_all",
    "missing_defaults",
]
