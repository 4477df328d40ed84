"""WKV7 on CPU through the C++ custom op in ``csrc/wkv7_cpu.cc`` (the fast CPU back end).

Maths (per batch b and head h, state S in R^{N x N}, rows = value channel i, cols = key channel j)::

    S_t = S_{t-1} diag(w_t) + (S_{t-1} a_t) b_t^T + v_t k_t^T ;   y_t = S_t q_t

The forward op parallelises over B x H with OpenMP and also returns the state at the start of
every 16-step chunk; the backward op recomputes each chunk's states from that checkpoint, so it
is exact for any w in [0, 1] (it never divides by w). Any T works (the last chunk may be short),
any head size N <= 64 works (16, 32 and 64 are compiled specially), float32 and float64.
"""

from __future__ import annotations

from seqlab.ops._build import load_cpu_ops, num_threads


def load():
    """Build/load the op (once per process). Raises ``OpBuildError`` if it cannot be built."""
    return load_cpu_ops()


def wkv7_cpp(w, q, k, v, a, b):
    """``[B, T, H, N]`` CPU tensors (``w`` = decay in [0, 1]) -> ``y`` ``[B, T, H, N]``; autograd-able.

    Strided (non-contiguous) inputs are made dense inside the op.
    """
    y, _sa, _checkpoints = load().seqlab_wkv7_cpu(w, q, k, v, a, b, num_threads())
    return y
