"""Numerical kernels. ``seqlab.ops`` imports nothing of seqlab beyond itself.

* ``wkv7(w, q, k, v, a, b, backend=None)``: the RWKV-7 recurrence (``w`` = decay in (0, 1)),
  back ends ``reference`` / ``chunked`` / ``cpp`` / ``cuda``, and ``wkv7_step``, one step of
  it (RNN mode); see ``seqlab.ops.wkv7``.
* ``seqlab.ops.fused``: RWKV-7's element-wise formulas, each as a fused C++ CPU op with its
  Paddle form beside it (token-shift mixes, the TimeMix decay/key/delta-rule vectors, value
  residual, GroupNorm + bonus + gate, squared ReLU, small linear, LayerNorm), and the one-op
  RWKV-7 RNN step.
"""

from seqlab.ops.wkv7 import available_backends, resolve_backend, wkv7, wkv7_step

__all__ = [
    "available_backends",
    "resolve_backend",
    "wkv7",
    "wkv7_step",
]
