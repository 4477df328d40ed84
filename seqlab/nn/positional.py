"""Fixed sinusoidal position embeddings (Vaswani et al. 2017)."""

from __future__ import annotations

import paddle


def sinusoidal_position_embedding(seq_len: int, dim: int, base: float = 10000.0):
    """Float32 ``[seq_len, dim]`` table with interleaved sin/cos pairs.

    For pair ``i`` (``0 <= i < dim/2``), with ``theta_i = base ** (-2i / dim)``::

        emb[p, 2i] = sin(p * theta_i),   emb[p, 2i + 1] = cos(p * theta_i)

    Args:
        seq_len: Number of positions (rows), starting at 0.
        dim: Embedding width; must be even, since it holds sin/cos pairs.
        base: Wavelength scale; the slowest pair has period ``2 pi base``.
    """
    if dim % 2:
        raise ValueError(f"sinusoidal_position_embedding needs an even dim, got {dim}.")
    position = paddle.arange(seq_len, dtype="float32").unsqueeze(-1)  # [T, 1]
    i = paddle.arange(dim // 2, dtype="float32")  # [dim/2]
    theta = paddle.pow(paddle.to_tensor(base, dtype="float32"), -2.0 * i / dim)
    angles = position * theta  # [T, dim/2]
    return paddle.stack([paddle.sin(angles), paddle.cos(angles)], axis=-1).reshape([seq_len, dim])
