"""WKV7 on the GPU through the CUDA custom op in ``csrc/wkv7_cuda.cu`` (float32, N in {16, 32, 64}).

NOT RUN ON A GPU: written without access to one. What was checked: ``wkv7_cuda.cu`` compiles
with nvcc 13.0 for sm_90 without register spills, and its kernels match the float64 oracle
(forward and all six gradients, 1e-5) when g++ runs them in a CPU emulation of the thread
block (``tests/test_wkv7.py::test_cuda_kernels_in_cpu_emulation``). The Paddle glue
``wkv7_cuda.cc`` has never been compiled (no CUDA build of Paddle here). It is built only on
first use and only when ``paddle.is_compiled_with_cuda()``; nothing imports or compiles it on
CPU. The automatic choice falls back to ``chunked`` (one warning) if it fails to build.
Validate on a GPU (run the ``cpp`` tests with ``backend="cuda"`` on GPU tensors) before trusting
it, and measure it against RWKV-LM's kernel.

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
