"""WKV7 in chunks of 16 steps with dense Paddle ops (WY / DPLR form): the portable back end.

Runs anywhere Paddle runs, autograd by Paddle, several times faster than the Python time loop on
CPU (``benchmarks/RESULTS.md``, "WKV7 recurrence").

Maths. Per (b, h) the state S (N x N, rows i = value, cols j = key) follows::

    S_t = S_{t-1} diag(w_t) + u_t b_t^T + v_t k_t^T,    u_t = S_{t-1} a_t,    y_t = S_t q_t

Inside one chunk of L = 16 steps starting from state S_0, let G_t = w_1 * ... * w_t
(element-wise, G_0 = 1). Unrolling,

    S_t = S_0 diag(G_t) + sum_{s<=t} (u_s b_s^T + v_s k_s^T) diag(G_t / G_s).

With rows-as-time matrices  A~ = a * G_{t-1},  Q~ = q * G_t,  B^ = b / G_t,  K^ = k / G_t,
and U the rows u_t^T, V the rows v_t^T, and  St = S^T  (key x value):

    U = A~ St_0 + A_ab U + A_ak V          A_ab = strict_tril(A~ B^T), A_ak = strict_tril(A~ K^T)
      = X St_0 + Z                         X = (I - A_ab)^{-1} A~,  Z = (I - A_ab)^{-1} A_ak V
    Y = Q~ St_0 + A_qb U + A_qk V          A_qb = tril(Q~ B^T),     A_qk = tril(Q~ K^T)
    St_L = diag(G_L) St_0 + B-^T U + K-^T V,   B- = b * G_L / G_t,  K- = k * G_L / G_t
         = M St_0 + C                      M = diag(G_L) + B-^T X,  C = B-^T Z + K-^T V

A_ab is strictly lower triangular, hence nilpotent (A^16 = 0), so
(I - A)^{-1} = (I + A)(I + A^2)(I + A^4)(I + A^8) exactly: 7 batched matmuls, no solver.
Everything except ``St_{c+1} = M_c St_c + C_c`` is computed for all chunks at once; that
short loop (T / 16 steps of one batched N x N matmul) is the only sequential part.

Limit: 1 / G_t = w^-16 at worst overflows float32 when w < ~0.004 (float64: w < ~1e-19) and
then gives inf/nan. RWKV-7 soft-clamps w >= exp(-exp(-0.5)) ~ 0.545, far from that; for
arbitrary w use the ``cpp`` (exact for any w in [0, 1]) or ``reference`` back end.
T is padded to a multiple of 16 (w = 1, others 0: padding at the end cannot change y).
"""

from __future__ import annotations

import paddle

CHUNK = 16


def wkv7_chunked(w, q, k, v, a, b, chunk: int = CHUNK):
    """``[B, T, H, N]`` tensors, ``w`` the decay in (~0.004, 1] for float32 -> ``y`` ``[B, T, H, N]``."""
    B, T, H, N = w.shape
    L = chunk
    NC = (T + L - 1) // L
    pad = NC * L - T

    def blocks(x, fill):
        if pad:
            x = paddle.concat([x, paddle.full([B, pad, H, N], fill, dtype=x.dtype)], axis=1)
        # [B, T, H, N] -> [B, H, NC, L, N]
        return x.reshape([B, NC, L, H, N]).transpose([0, 3, 1, 2, 4])

    w, q, k, v, a, b = (blocks(x, 1.0 if i == 0 else 0.0) for i, x in enumerate((w, q, k, v, a, b)))
    logw = paddle.log(w)
    lg = paddle.cumsum(logw, axis=3)  # log G_t (inclusive)
    lg_last = lg[:, :, :, L - 1 :, :]  # log G_L, [B, H, NC, 1, N]
    a_t = a * paddle.exp(lg - logw)  # A~ = a * G_{t-1}
    q_t = q * paddle.exp(lg)  # Q~ = q * G_t
    inv_g = paddle.exp(-lg)
    b_h, k_h = b * inv_g, k * inv_g  # B^, K^
    to_end = paddle.exp(lg_last - lg)
    b_e, k_e = b * to_end, k * to_end  # B-, K-

    strict = paddle.tril(paddle.ones([L, L], dtype=w.dtype), diagonal=-1)
    incl = paddle.tril(paddle.ones([L, L], dtype=w.dtype))
    A_ab = paddle.matmul(a_t, b_h, transpose_y=True) * strict
    A_ak = paddle.matmul(a_t, k_h, transpose_y=True) * strict
    A_qb = paddle.matmul(q_t, b_h, transpose_y=True) * incl
    A_qk = paddle.matmul(q_t, k_h, transpose_y=True) * incl

    # (I - A_ab)^{-1} = (I + A)(I + A^2)(I + A^4)(I + A^8) for a nilpotent 16 x 16 A.
    eye = paddle.eye(L, dtype=w.dtype)
    inv = eye + A_ab
    power = A_ab
    steps = 1
    while 2 * steps < L:
        power = paddle.matmul(power, power)
        inv = paddle.matmul(inv, eye + power)
        steps *= 2

    X = paddle.matmul(inv, a_t)  # [.., L, N]
    Z = paddle.matmul(inv, paddle.matmul(A_ak, v))  # [.., L, N]
    # diag(G_L) as G_L (a column) times I: Paddle's diag_embed gradient is wrong for batched input.
    g_last = paddle.exp(lg_last).transpose([0, 1, 2, 4, 3])  # [B, H, NC, N, 1]
    M = paddle.matmul(b_e, X, transpose_x=True) + g_last * paddle.eye(N, dtype=w.dtype)
    C = paddle.matmul(b_e, Z, transpose_x=True) + paddle.matmul(k_e, v, transpose_x=True)

    # Sequential part: St_{c+1} = M_c St_c + C_c, keeping each chunk's initial state.
    st = paddle.zeros([B, H, N, N], dtype=w.dtype)
    starts = [st]
    for c in range(NC - 1):
        st = paddle.matmul(M[:, :, c], st) + C[:, :, c]
        starts.append(st)
    st0 = paddle.stack(starts, axis=2)  # [B, H, NC, N, N]

    U = paddle.matmul(X, st0) + Z
    Y = paddle.matmul(q_t, st0) + paddle.matmul(A_qb, U) + paddle.matmul(A_qk, v)
    y = Y.transpose([0, 2, 3, 1, 4]).reshape([B, NC * L, H, N])
    return y[:, :T] if pad else y
