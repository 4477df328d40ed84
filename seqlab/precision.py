"""Numeric precision of training: float32, or mixed bf16/fp16 through ``paddle.amp`` (GPU only).

Lightning's names are used: ``"32-true"`` (the default), ``"bf16-mixed"`` and ``"16-mixed"``.
Mixed precision runs the forward pass under ``paddle.amp.auto_cast`` (level O1: matmuls and
other white-listed ops in the low precision, the rest in float32). ``16-mixed`` also scales the
loss with a ``GradScaler`` so small fp16 gradients do not flush to zero; the Trainer unscales
them before ``on_before_optimizer_step``, so clipping and the logged norm see true values.

On CPU, Paddle 3.3's AMP changes nothing: under ``auto_cast(dtype="bfloat16")`` a Linear still
returns float32, a bfloat16 matmul has no CPU kernel, and ``GradScaler`` is disabled. A mixed
setting on CPU therefore warns once and runs float32, and ``metrics.json`` records what ran.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import numpy as np
import paddle

from seqlab.errors import SeqlabError

log = logging.getLogger(__name__)

PRECISIONS = ("32-true", "bf16-mixed", "16-mixed")
_AMP_DTYPE = {"bf16-mixed": "bfloat16", "16-mixed": "float16"}


def check_precision(name: str) -> str:
    if name not in PRECISIONS:
        raise SeqlabError(f"trainer.precision {name!r} is not supported; use one of {', '.join(PRECISIONS)}.")
    return name


def _on_gpu() -> bool:
    return paddle.device.is_compiled_with_cuda() and paddle.device.get_device().startswith("gpu")


def _gpu_supports(name: str) -> bool:
    if name == "bf16-mixed":
        return bool(paddle.amp.is_bfloat16_supported())
    return bool(paddle.amp.is_float16_supported())


class Precision:
    """The precision one fit runs in: autocast for the forward pass, loss scaling for backward.

    ``requested`` is the setting; ``effective`` is what runs here (``32-true`` where the device
    has no support for the requested type).
    """

    def __init__(self, requested: str = "32-true"):
        self.requested = check_precision(requested)
        self.effective = requested
        if requested != "32-true":
            if not _on_gpu():
                log.warning(
                    "precision %s has no effect on CPU (Paddle %s has no low-precision CPU "
                    "kernels for training); running 32-true.",
                    requested,
                    paddle.__version__,
                )
                self.effective = "32-true"
            elif not _gpu_supports(requested):
                log.warning("precision %s is not supported by this GPU; running 32-true.", requested)
                self.effective = "32-true"
        self.scaler = None
        self.reset()

    def reset(self) -> None:
        """A fresh loss scaler (a new fit starts from the initial scale, or a checkpoint's)."""
        if self.effective == "16-mixed":
            self.scaler = paddle.amp.GradScaler(init_loss_scaling=2.0**16)

    @property
    def is_mixed(self) -> bool:
        return self.effective != "32-true"

    def autocast(self):
        """Context for the forward pass and loss."""
        if not self.is_mixed:
            return contextlib.nullcontext()
        return paddle.amp.auto_cast(level="O1", dtype=_AMP_DTYPE[self.effective])

    def backward(self, loss) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def unscale(self, optimizer) -> None:
        """Divide the gradients by the loss scale, in place (before clipping reads them)."""
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)

    def step(self, optimizer) -> None:
        """Apply the update. With a scaler, a step whose gradients overflowed is skipped by it."""
        if self.scaler is None:
            optimizer.step()
        else:
            self.scaler.step(optimizer)
            self.scaler.update()

    def state_dict(self) -> dict[str, Any]:
        return dict(self.scaler.state_dict()) if self.scaler is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)


#: What ``GradScaler.state_dict()`` holds (an enabled scaler; a disabled one gives ``{}``).
_SCALER_INTS = ("incr_every_n_steps", "decr_every_n_nan_or_inf", "incr_count", "decr_count")
_SCALER_KEYS = {"scale", "incr_ratio", "decr_ratio", "use_dynamic_loss_scaling", *_SCALER_INTS}


def precision_state_problem(state: Any) -> str | None:
    """What makes ``state`` (a checkpoint's ``precision`` entry) unloadable by :meth:`Precision.load_state_dict`,
    phrased to follow "a precision state that", or None when it is ``{}`` or a loss scaler's state."""
    if not isinstance(state, dict):
        return "is not a dict"
    if not state:
        return None
    if set(state) != _SCALER_KEYS:
        return f"has the keys {sorted(state)}, not a loss scaler's {sorted(_SCALER_KEYS)}"
    scale = state["scale"]
    if not (
        isinstance(scale, np.ndarray) and scale.dtype == np.float32 and scale.size == 1 and np.isfinite(scale).all()
    ):
        return "has a scale that is not one finite float32"
    for key in _SCALER_INTS:
        if not (isinstance(state[key], (int, float)) and not isinstance(state[key], bool) and state[key] >= 0):
            return f"has {key} = {state[key]!r}, not a non-negative count"
    for key in ("incr_ratio", "decr_ratio"):
        if not (isinstance(state[key], (int, float)) and not isinstance(state[key], bool) and state[key] > 0):
            return f"has {key} = {state[key]!r}, not a positive number"
    if not isinstance(state["use_dynamic_loss_scaling"], bool):
        return "has use_dynamic_loss_scaling that is not true or false"
    return None
