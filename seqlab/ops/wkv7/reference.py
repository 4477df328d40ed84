"""The seed's WKV7 recurrence as a plain Python loop over time: slow, obvious, the oracle.

Per head, with state S in R^{N x N} (rows: value channel i, columns: key channel j)::

    S_t = S_{t-1} * diag(w_t) + (S_{t-1} a_t) b_t^T + v_t k_t^T
    y_t = S_t q_t

:func:`wkv7_step` is one step of it, the loop body of :func:`wkv7_reference` and the recurrence
of RWKV-7's plain RNN mode (``seqlab.models.rwkv7``), so both run the same maths.
"""

from __future__ import annotations

import paddle


def wkv7_step(state, w, q, k, v, a, b):
    """One step: ``state`` ``[B, H, N, N]`` (value x key), the rest ``[B, H, N]``.

    Returns ``(y [B, H, N], new_state)``; ``w`` is the decay in (0, 1).
    """
    sa = (state * a.unsqueeze(2)).sum(axis=-1, keepdim=True)  # [B,H,N,1] = S a
    state = state * w.unsqueeze(2) + sa * b.unsqueeze(2) + v.unsqueeze(3) * k.unsqueeze(2)
    return (state * q.unsqueeze(2)).sum(axis=-1), state  # y = S q


def wkv7_reference(w, q, k, v, a, b):
    """All inputs ``[B, T, H, N]`` float32, ``w`` the decay in (0, 1). Returns ``y`` ``[B, T, H, N]``."""
    B, T, H, N = w.shape
    state = paddle.zeros([B, H, N, N], dtype=w.dtype)
    ys = []
    for t in range(T):
        y, state = wkv7_step(state, *(x[:, t] for x in (w, q, k, v, a, b)))
        ys.append(y)
    return paddle.stack(ys, axis=1)
