"""A fused CPU LSTM layer: ``paddle.nn.LSTM``'s maths and parameters, faster to train.

Why: the seed's 7 x 128 LSTM is the slowest model of the digit-reversal recipe. On the 2-core
AMD CPU we measured, its training step through this op is faster than through Paddle's
``nn.LSTM``, both with Paddle's MKL on its AVX2 kernels (as seqlab sets it up on AMD CPUs) and
against MKL's generic kernels, which stock Paddle runs on AMD (``benchmarks/RESULTS.md``: the
"Fused LSTM" part of "Summary: 2026-11-29", and "Fused LSTM"). The C++ op in
``csrc/lstm_cpu.cc`` runs one layer as one GEMM for the input projection of all steps, T small
GEMMs with fused gate maths for the recurrence, and a hand-written backward through time from
the stored gates, on numpy's bundled OpenBLAS (``_blas.py`` says why that BLAS).

* ``lstm(x, weight_ih, weight_hh, bias_ih, bias_hh, initial_states=None)``: the op itself;
  ``x`` ``[B, T, I]`` -> ``(y [B, T, H], (h [1, B, H], c [1, B, H]))`` like ``nn.LSTM``. Gradients
  flow to ``x``, the four parameters, the initial states and through ``y`` and the final ``c``.
* ``lstm_layer(layer, x, initial_states=None)``: run a one-layer, forward-direction,
  batch-major ``paddle.nn.LSTM`` through the op, with the layer's own parameters (same names,
  same shapes, gate order i, f, g, o). Anything else (GPU tensors, other layer options, a
  ``sequence_length``, ``SEQLAB_FUSED=paddle``) runs ``layer`` itself, and so does everything
  if the op cannot be built: then with ONE warning per process.

float32 results match ``nn.LSTM`` to ~1e-6 (the gate activations use a vectorised rational tanh,
exact to about 1 ulp); float64 uses libm and matches to ~1e-12 (tests/test_lstm_fused.py).
They are bit-identical at any thread count (the op splits its work into fixed groups of 16
sequences, not by threads), so a ``--parallel`` child may hand it more cores mid-run.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import paddle

from seqlab.ops._build import OpBuildError, load_extension, num_threads
from seqlab.ops.lstm._blas import BlasNotFound, find_blas
from seqlab.ops.settings import setting

ENV_VAR = "SEQLAB_FUSED"  # the switch of every fused CPU op (seqlab.ops.fused reads it too)
_SOURCE = Path(__file__).resolve().parent / "csrc" / "lstm_cpu.cc"
# -fopenmp-simd: the gate loops use `omp simd` for vectorisation only; threads are std::threads.
# -fno-trapping-math: GCC 12 will not vectorise the clamps (min/max) of the gate maths without it.
_CFLAGS = ["-O3", "-march=native", "-fopenmp-simd", "-fno-trapping-math", "-ffp-contract=fast", "-std=c++17"]
_STATE: dict[str, object] = {}  # "ops": loaded module, or None after a failed build


def load():
    """Build/load the LSTM op (once per process). Raises ``OpBuildError`` if it cannot be built."""
    try:
        blas = find_blas()
    except BlasNotFound as exc:
        raise OpBuildError(f"the LSTM C++ op is unavailable: {exc}") from exc
    return load_extension(
        "seqlab_lstm_cpu_ops",
        [_SOURCE],
        what="LSTM C++ op",
        cflags=_CFLAGS + blas.cflags(),
        ldflags=blas.ldflags(),
    )


def _ops(use_cpp):
    """The op module, or None when the Paddle layer should run (see the module docstring)."""
    if use_cpp is False:
        return None
    if use_cpp is None and setting(ENV_VAR) == "paddle":
        return None
    if "ops" not in _STATE:
        try:
            _STATE["ops"] = load()
        except OpBuildError as exc:
            if use_cpp:
                raise
            warnings.warn(
                f"seqlab: the LSTM C++ op could not be built, using paddle.nn.LSTM instead "
                f"(set {ENV_VAR}=paddle to silence this). Cause: {exc}",
                RuntimeWarning,
                stacklevel=4,
            )
            _STATE["ops"] = None
    if _STATE["ops"] is None and use_cpp:
        raise OpBuildError("the LSTM C++ op is unavailable in this process")
    return _STATE["ops"]


def lstm(x, weight_ih, weight_hh, bias_ih, bias_hh, initial_states=None):
    """One LSTM layer through the C++ op (CPU tensors); ``nn.LSTM``'s call convention.

    ``x`` is ``[B, T, I]``; ``initial_states`` is ``(h0, c0)``, each ``[1, B, H]`` or ``[B, H]``,
    or None for zeros. Returns ``(y [B, T, H], (h_T [1, B, H], c_T [1, B, H]))``.
    """
    ops = _ops(True)
    B, H = x.shape[0], weight_hh.shape[1]
    if initial_states is None:
        h0 = paddle.zeros([B, H], dtype=x.dtype)
        c0 = paddle.zeros([B, H], dtype=x.dtype)
    else:
        h0, c0 = (s.reshape([B, H]) for s in initial_states)
    y, c_last, _gates, _cells = ops.seqlab_lstm(
        x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, num_threads(elastic=True)
    )
    return y, (y[:, -1].unsqueeze(0), c_last.unsqueeze(0))


def fusable(layer, x) -> bool:
    """True if ``layer(x)`` can run through the op: one forward-direction, batch-major layer on
    CPU float32/float64 (the seed's layers are exactly that)."""
    return (
        isinstance(layer, paddle.nn.LSTM)
        and layer.num_layers == 1
        and layer.num_directions == 1
        and not layer.time_major
        and getattr(layer, "proj_size", 0) in (0, None)
        and x.ndim == 3
        and x.place.is_cpu_place()
        and x.dtype in (paddle.float32, paddle.float64)
    )


def lstm_layer(layer, x, initial_states=None, use_cpp: bool | None = None):
    """``layer(x, initial_states)`` for a ``paddle.nn.LSTM``, through the C++ op where possible.

    ``use_cpp``: None (default) uses the op when it applies and builds, else ``layer`` itself
    (one warning per process if the build failed); True requires the op (``OpBuildError``
    otherwise); False always runs ``layer``.
    """
    ops = _ops(use_cpp) if fusable(layer, x) else None
    if ops is None:
        if use_cpp:
            raise ValueError("lstm_layer(use_cpp=True): this layer/input cannot use the C++ op")
        return layer(x, initial_states)
    return lstm(x, layer.weight_ih_l0, layer.weight_hh_l0, layer.bias_ih_l0, layer.bias_hh_l0, initial_states)


__all__ = ["ENV_VAR", "fusable", "load", "lstm", "lstm_layer"]
