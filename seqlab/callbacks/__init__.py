"""seqlab's built-in callbacks, one per file (as Lightning's ``callbacks/`` package).

``default_callbacks()`` is what every Trainer gets unless told otherwise: the Trainer adds each
default whose type the user did not already provide.
"""

from seqlab.callbacks.csv_logger import CSVLogger
from seqlab.callbacks.early_stopping import EarlyStopping
from seqlab.callbacks.grad_clip import GradientClip
from seqlab.callbacks.lr_schedule import ConstantLR, CosineWarmupLR
from seqlab.callbacks.moving_average_checkpoint import MovingAverageCheckpoint
from seqlab.callbacks.progress import ProgressBar
from seqlab.callbacks.save_config import SaveConfig
from seqlab.callbacks.save_samples import SaveSamples
from seqlab.callbacks.save_summary import SaveSummary
from seqlab.callbacks.visualdl_logger import VisualDLLogger
from seqlab.errors import SeqlabError


def default_callbacks() -> list:
    """Progress on screen, metrics.csv, VisualDL records, the seed's best-checkpoint rule, and
    the run's files: config.yaml, metrics.json and samples.txt."""
    return [
        ProgressBar(),
        CSVLogger(),
        VisualDLLogger(),
        MovingAverageCheckpoint(),
        SaveConfig(),
        SaveSummary(),
        SaveSamples(),
    ]


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


__all__ = [
    "CSVLogger",
    "ConstantLR",
    "CosineWarmupLR",
    "EarlyStopping",
    "GradientClip",
    "MovingAverageCheckpoint",
    "ProgressBar",
    "SaveConfig",
    "SaveSamples",
    "SaveSummary",
    "VisualDLLogger",
    "arrange_callbacks",
    "default_callbacks",
    "missing_defaults",
]
