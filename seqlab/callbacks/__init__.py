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
from seqlab.callbacks.visualdl_logger import VisualDLLogger


def default_callbacks() -> list:
    """Progress on screen, metrics.csv, VisualDL records and the seed's best-checkpoint rule."""
    return [ProgressBar(), CSVLogger(), VisualDLLogger(), MovingAverageCheckpoint()]


def missing_defaults(given: list[type]) -> list:
    """The defaults whose kind is not among the ``given`` callback classes.

    A user's subclass of a default (say, a custom best checkpoint) replaces it. The Trainer adds
    these; the CLI writes them into the saved config, so both follow this one rule.
    """
    return [d for d in default_callbacks() if not any(issubclass(g, type(d)) for g in given)]


__all__ = [
    "CSVLogger",
    "ConstantLR",
    "CosineWarmupLR",
    "EarlyStopping",
    "GradientClip",
    "MovingAverageCheckpoint",
    "ProgressBar",
    "VisualDLLogger",
    "default_callbacks",
    "missing_defaults",
]
