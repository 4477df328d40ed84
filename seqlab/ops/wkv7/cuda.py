"""WKV7 on the GPU through the CUDA custom op in ``csrc/wkv7_cuda.cu`` (float32, N in {16, 32, 64}).

UNTESTED: written without access to a GPU (no CUDA build of Paddle on the development
machine), so it has never been compiled or run. It is built only on first use and only when
``paddle.is_compiled_with_cuda()``; nothing imports or compiles it on CPU. The automatic choice
falls back to ``chunked`` (with one warning) if it fails to build. Validate it on a GPU with
``tests/test_wkv7.py`` (add ``"cuda"`` to the back ends there) before trusting it.

Maths: as in ``cpp.py``; design in the ``.cu`` header (one block per (b, h), N threads, state
rows in registers, 16-step chunks of inputs in shared memory, exact checkpointed backward).
"""

from __future__ import annotations

from seqlab.ops._build import load_cuda_ops


def load():
    """Build/load the CUDA op (once per process). Raises ``OpBuildError`` if impossible."""
    return load_cuda_ops()


def wkv7_cuda(w, q, k, v, a, b):
    """``[B, T, H, N]`` float32 GPU tensors (``w`` = decay in [0, 1]) -> ``y``; autograd-able."""
    y, _sa, _checkpoints = load().seqlab_wkv7_cuda(w, q, k, v, a, b)
    return y
