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
]
