"""The environment variables that choose which kernels run: each read and checked here, once.

They change numbers in the last bits (another WKV7 back end, Paddle's formulas instead of the
C++ ops, another thread count for the ops' reductions), so a run records them: the Trainer puts
:func:`run_settings` into config.yaml and into every checkpoint, and warns when a resume runs
with other settings than the run it continues (it is then exact only to rounding).

==========================  =====================================================================
``SEQLAB_WKV7``             WKV7 back end: ``reference``, ``chunked``, ``cpp`` or ``cuda``
                            (unset: automatic, see :mod:`seqlab.ops.wkv7`)
``SEQLAB_FUSED``            ``paddle`` (or ``0``, ``off``): Paddle's formulas instead of the fused
                            C++ ops of RWKV-7 and the LSTM (unset: the C++ ops)
``SEQLAB_NUM_THREADS``      threads of the C++ ops (unset: the CPUs this process may use); the
                            LSTM op's results do not depend on it, the RWKV-7 ops' may
``SEQLAB_STRIDE_KERNEL``    ``1``: keep Paddle's strided-view kernels on CPU (unset/``0``: off,
                            faster; see :func:`seqlab._paddle.configure_cpu_defaults`)
==========================  =====================================================================
"""

from __future__ import annotations

import os

WKV7_BACKENDS = ("reference", "chunked", "cpp", "cuda")
_OFF = ("paddle", "0", "off")


def _wkv7(value: str) -> str:
    value = value.lower()
    if value not in WKV7_BACKENDS:
        raise ValueError(
            f"SEQLAB_WKV7={value!r} is not a WKV7 back end; use one of {', '.join(WKV7_BACKENDS)} or unset it."
        )
    return value


def _fused(value: str) -> str:
    value = value.lower()
    if value not in _OFF + ("cpp", "1", "on"):
        raise ValueError(
            f"SEQLAB_FUSED={value!r} is not understood; use 'paddle' (Paddle's formulas) "
            "or 'cpp' (the C++ ops, the default), or unset it."
        )
    return "paddle" if value in _OFF else "cpp"


def _threads(value: str) -> str:
    if not (value.isdigit() and int(value) > 0):
        raise ValueError(f"SEQLAB_NUM_THREADS={value!r} must be a positive integer; fix or unset it.")
    return value


def _stride(value: str) -> str:
    if value not in ("0", "1"):
        raise ValueError(f"SEQLAB_STRIDE_KERNEL={value!r} must be 0 or 1; fix or unset it.")
    return value


_CHECKS = {
    "SEQLAB_WKV7": _wkv7,
    "SEQLAB_FUSED": _fused,
    "SEQLAB_NUM_THREADS": _threads,
    "SEQLAB_STRIDE_KERNEL": _stride,
}


def setting(name: str) -> str | None:
    """The checked value of one run setting (normalised), or None when it is unset.

    Raises ``ValueError`` with one sentence naming the variable and the fix.
    """
    raw = os.environ.get(name, "").strip()
    return _CHECKS[name](raw) if raw else None


def run_settings() -> dict[str, str | None]:
    """Every run setting, checked, and MKL's CPU-path switch (which seqlab sets on AMD CPUs,
    see :mod:`seqlab._paddle`): what a run records about the kernels it ran with."""
    return {**{name: setting(name) for name in _CHECKS}, "MKL_DEBUG_CPU_TYPE": os.environ.get("MKL_DEBUG_CPU_TYPE")}
