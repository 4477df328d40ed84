"""The RWKV-7 state recurrence ("WKV7") behind one function, ``wkv7``, with several back ends.

Per batch b and head h, with state S in R^{N x N} (rows: value channel i, cols: key channel j)::

    S_t = S_{t-1} diag(w_t) + (S_{t-1} a_t) b_t^T + v_t k_t^T ;    y_t = S_t q_t ;    S_0 = 0

Call ``wkv7(w, q, k, v, a, b)`` on ``[B, T, H, N]`` tensors. NOTE the argument order (w first)
and that ``w`` is the decay itself, in (0, 1): the caller computes ``exp(-exp(w_log))``
(the seed's ``RWKV7_Core`` did that inside; we do not).

Back ends (all differentiable, all agree with ``reference`` to ~1e-7 relative in float32):

==============  ==============================================================================
``reference``   Python loop over T (the seed's code): the oracle, very slow.
``chunked``     pure Paddle, chunks of 16 in WY/DPLR form; runs anywhere; needs w > ~0.004
                in float32 (RWKV-7 keeps w >= 0.545).
``cpp``         C++ custom op, OpenMP over B x H, exact backward from 16-step checkpoints;
                any w in [0, 1]; float32/float64; JIT-built once into a cache folder.
``cuda``        CUDA custom op (one block per (b, h), state in registers); built only with a
                CUDA build of Paddle. NOT RUN ON A GPU yet (none was available): its kernels
                compile with nvcc (sm_90) and match the oracle in a CPU emulation test.
==============  ==============================================================================

Choice: the ``backend`` argument, else env ``SEQLAB_WKV7``, else automatic: ``cpp`` for CPU
tensors (``chunked``, with ONE warning per process, if it cannot be built) and ``chunked`` for
GPU tensors. ``cuda`` is opt-in (``SEQLAB_WKV7=cuda``) until it has passed tests/test_wkv7.py
on a real GPU: untested code must not become every GPU user's default. An explicitly requested back end that cannot be built raises ``OpBuildError``.
"""

from __future__ import annotations

import warnings

from seqlab.ops._build import OpBuildError
from seqlab.ops.settings import WKV7_BACKENDS, setting
from seqlab.ops.wkv7.chunked import wkv7_chunked
from seqlab.ops.wkv7.reference import wkv7_reference, wkv7_step

BACKENDS = WKV7_BACKENDS
ENV_VAR = "SEQLAB_WKV7"

# The automatic CPU choice, decided once per process so that a failed build is tried (and
# warned about) only once. (GPU tensors always get "chunked"; see the module docstring.)
_AUTO: dict[str, str] = {}


def _load(name: str) -> None:
    """Build/load the op behind back end ``name``; raises ``OpBuildError`` if impossible."""
    if name == "cpp":
        from seqlab.ops.wkv7 import cpp

        cpp.load()
    elif name == "cuda":
        from seqlab.ops.wkv7 import cuda

        cuda.load()


def _is_gpu(x) -> bool:
    if x is not None:
        return bool(x.place.is_gpu_place())
    import paddle

    return paddle.get_device().startswith("gpu")


def resolve_backend(backend: str | None = None, x=None) -> str:
    """Name of the back end ``wkv7`` will use for tensor ``x`` (or the current device).

    Raises ``ValueError`` for an unknown name (from the argument or ``SEQLAB_WKV7``).
    """
    if backend is not None:
        name = backend.lower()
        if name not in BACKENDS:
            raise ValueError(f"unknown WKV7 back end {name!r} (from backend); valid: {', '.join(BACKENDS)}")
        return name
    name = setting(ENV_VAR)
    if name is not None:
        return name
    if _is_gpu(x):
        return "chunked"  # see the module docstring: cuda stays opt-in until tested on a GPU
    if "cpu" not in _AUTO:
        try:
            _load("cpp")
            _AUTO["cpu"] = "cpp"
        except OpBuildError as exc:
            warnings.warn(
                f"seqlab: the cpp WKV7 op could not be built, using the slower 'chunked' "
                f"back end instead (set {ENV_VAR}=chunked to silence this). Cause: {exc}",
                RuntimeWarning,
                stacklevel=3,
            )
            _AUTO["cpu"] = "chunked"
    return _AUTO["cpu"]


def available_backends() -> list[str]:
    """Back ends usable in this process (may build the C++/CUDA ops on first call)."""
    import paddle

    names = ["reference", "chunked"]
    for name in ("cpp", "cuda"):
        if name == "cuda" and not paddle.is_compiled_with_cuda():
            continue
        try:
            _load(name)
            names.append(name)
        except OpBuildError:
            pass
    return names


def wkv7(w, q, k, v, a, b, backend: str | None = None):
    """WKV7 recurrence: ``[B, T, H, N]`` tensors -> ``y`` ``[B, T, H, N]`` (autograd-able).

    Args:
        w: the decay in (0, 1) (already ``exp(-exp(.))``), q: receptance/query, k: key,
            v: value, a and b: the in-context learning vectors (RWKV-7 uses a = -kk,
            b = kk * iclr). All the same shape and float dtype, on the same device.
        backend: ``reference`` | ``chunked`` | ``cpp`` | ``cuda`` | None (see module docs).
    """
    shape = list(w.shape)
    if len(shape) != 4:
        raise ValueError(f"wkv7 expects [B, T, H, N] tensors, got w of shape {shape}")
    for nm, x in zip("qkvab", (q, k, v, a, b)):
        if list(x.shape) != shape:
            raise ValueError(f"wkv7: {nm} has shape {list(x.shape)}, w has {shape}")
    name = resolve_backend(backend, w)
    if name == "reference":
        return wkv7_reference(w, q, k, v, a, b)
    if name == "chunked":
        return wkv7_chunked(w, q, k, v, a, b)
    if name == "cpp":
        from seqlab.ops.wkv7.cpp import wkv7_cpp

        return wkv7_cpp(w, q, k, v, a, b)
    from seqlab.ops.wkv7.cuda import wkv7_cuda

    return wkv7_cuda(w, q, k, v, a, b)


__all__ = [
    "BACKENDS",
    "OpBuildError",
    "available_backends",
    "resolve_backend",
    "wkv7",
    "wkv7_chunked",
    "wkv7_reference",
    "wkv7_step",
]
