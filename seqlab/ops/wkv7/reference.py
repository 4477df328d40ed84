"""The seed's WKV7 recurrence as a plain Python loop over time: slow, obvious, the oracle.

Per head, with state S in R^{N x N} (rows: value channel i, columns: key channel j)::

    S_t = S_{t-1} * diag(w_t) + (S_{t-1} a_t) b_t^T + v_t k_t^T
    y_t = S_t q_t
"""

from __future__ import annotations

import paddle


def wkv7_reference(w, q, k, v, a, b):
    """All inputs ``[B, T, H, N]`` float32, ``w`` the decay in (0, 1). Returns ``y`` ``[B, T, H, N]``."""
    B, T, H, N = w.shape
    state = paddle.zeros([B, H, N, N], dtype=w.dtype)
    ys = []
    for t in range(T):
        wt, qt, kt, vt, at, bt = (x[:, t] for x in (w, q, k, v, a, b))
        sa = (state * at.unsqueeze(2)).sum(axis=-1, keepdim=True)  # [B,H,N,1] = S a
        state = state * wt.unsqueeze(2) + sa * bt.unsqueeze(2) + vt.unsqueeze(3) * kt.unsqueeze(2)
        ys.append((state * qt.unsqueeze(2)).sum(axis=-1))  # [B,H,N] = S q
    return paddle.stack(ys, axis=1)
