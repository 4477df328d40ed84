"""seqlab: a Lightning-style training framework on PaddlePaddle for sequence models.

Public API::

    from seqlab import Trainer, Task, Model, Callback, register_model, register_task

``MODELS``, ``TASKS`` and ``CALLBACKS`` are the registries (:mod:`seqlab.registry`): seqlab's own
classes and installed plugins are entry points, found by name; ``@register_model("name")`` and
``@register_task("name")`` add a class defined at run time (a notebook, a test).
"""

from seqlab._paddle import import_paddle

import_paddle()  # one sentence and exit 2 when no Paddle wheel is installed

from seqlab.callback import Callback, Event  # noqa: E402
from seqlab.errors import SeqlabError  # noqa: E402
from seqlab.log import configure_logging  # noqa: E402
from seqlab.model import Model  # noqa: E402
from seqlab.registry import CALLBACKS, MODELS, TASKS, register_model, register_task  # noqa: E402
from seqlab.task import Batch, EvalSet, Task  # noqa: E402

__version__ = "0.1.0"


def __getattr__(name):
    # The Trainer pulls in checkpointing and callbacks; load it only when asked for.
    if name == "Trainer":
        from seqlab.trainer import Trainer

        return Trainer
    raise AttributeError(f"module 'seqlab' has no attribute {name!r}")


__all__ = [
    "Batch",
    "CALLBACKS",
    "Callback",
    "EvalSet",
    "Event",
    "MODELS",
    "Model",
    "SeqlabError",
    "TASKS",
    "configure_logging",
    "Task",
    "Trainer",
    "register_model",
    "register_task",
]
