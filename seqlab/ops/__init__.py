"""Numerical kernels. ``seqlab.ops`` imports nothing of seqlab beyond itself.

* ``wkv7(w, q, k, v, a, b, backend=None)``: the RWKV-7 recurrence (``w`` = decay in (0, 1)),
  back ends ``reference`` / ``chunked`` / ``cpp`` / ``cuda``; see ``seqlab.ops.wkv7``.
* ``token_shift_mix``, ``squared_relu``, ``l2_normalize``: fused CPU ops for the RWKV-7 block
  with Paddle-formula fallbacks; see ``seqlab.ops.fused``.
"""

from seqlab.ops.fused import l2_normalize, squared_relu, token_shift_mix
from seqlab.ops.wkv7 import available_backends, resolve_backend, wkv7

__all__ = [
    "available_backends",
    "l2_normalize",
    "resolve_backend",
    "squared_relu",
    "token_shift_mix",
    "wkv7",
]
