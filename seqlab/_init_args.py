"""Remember the arguments a model, task or callback was built with (Lightning's ``save_hyperparameters``).

A run driven from Python has no recipe, yet it should still leave a ``config.yaml`` that can be
re-run, and its checkpoints should still be checked against the settings they were made with.
The base classes call :func:`record_init_args` on every subclass, which wraps its ``__init__``
so the outermost call stores its bound arguments (defaults filled in) as ``_seqlab_init_args``.
"""

from __future__ import annotations

import functools
import inspect
import re
from typing import Any

_ATTR = "_seqlab_init_args"


def record_init_args(cls: type) -> None:
    init = cls.__dict__.get("__init__")
    if init is None or getattr(init, "_records_init_args", False):
        return
    signature = inspect.signature(init)

    @functools.wraps(init)
    def __init__(self, *args, **kwargs):
        if _ATTR not in self.__dict__:  # the outermost __init__ of a subclass chain
            try:
                bound = signature.bind(self, *args, **kwargs)
            except TypeError:
                pass  # let the real __init__ raise its own, clearer error
            else:
                bound.apply_defaults()
                # object.__setattr__: a paddle Layer's __setattr__ needs its own __init__ first.
                object.__setattr__(self, _ATTR, _plain(bound.arguments, signature))
        init(self, *args, **kwargs)

    __init__._records_init_args = True
    cls.__init__ = __init__


def init_args(obj: Any) -> dict[str, Any]:
    """The arguments ``obj`` was built with, as plain YAML-safe values ({} if not recorded)."""
    return dict(obj.__dict__.get(_ATTR, {}))


def _plain(arguments: dict[str, Any], signature: inspect.Signature) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in arguments.items():
        if name == "self":
            continue
        kind = signature.parameters[name].kind
        if kind is inspect.Parameter.VAR_KEYWORD:
            out.update({k: _to_yaml(v) for k, v in value.items()})
        elif kind is not inspect.Parameter.VAR_POSITIONAL:
            out[name] = _to_yaml(value)
    return out


def _to_yaml(value: Any) -> Any:
    """Lists for tuples, dicts for dataclasses, class_path/init_args for recorded objects."""
    import dataclasses

    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_to_yaml(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _to_yaml(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _to_yaml(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if _ATTR in getattr(value, "__dict__", {}):
        return class_config(value)
    # A default repr holds a memory address, new in every process; without it a resumed run whose
    # task was given an object (a paddle.io.Dataset) is not taken for a changed configuration.
    return re.sub(r" at 0x[0-9a-fA-F]+", "", repr(value))


def class_config(obj: Any) -> dict[str, Any]:
    """``{"class_path": ..., "init_args": ...}`` of a recorded object, as recipes write it."""
    cls = type(obj)
    return {"class_path": f"{cls.__module__}.{cls.__qualname__}", "init_args": init_args(obj)}


def python_run_config(trainer, task, model) -> dict[str, Any]:
    """The config of a run driven from Python: what a recipe for the same run would resolve to."""
    settings = {k: v for k, v in init_args(trainer).items() if k != "config"}
    settings.update(
        experiment=trainer.experiment,
        run_name=trainer.run_name,
        default_callbacks=False,
        callbacks=[class_config(cb) for cb in trainer.callbacks],
    )
    return {"task": class_config(task), "model": class_config(model), "trainer": settings}
