"""Rotary position embedding, RoPE (Su et al. 2021), for ``[B, T, H, D]`` queries and keys."""

from __future__ import annotations

import paddle
from paddle import nn


class RotaryEmbedding(nn.Layer):
    """Rotate each (even, odd) channel pair of a head by an angle proportional to its position.

    For pair ``i`` at position ``p``, with ``theta_i = base ** (-2i / head_dim)``::

        out[2i]     = cos(p theta_i) x[2i] - sin(p theta_i) x[2i+1]
        out[2i + 1] = sin(p theta_i) x[2i] + cos(p theta_i) x[2i+1]

    A rotation by ``m`` then by ``-n`` is a rotation by ``m - n``, so ``q_m . k_n`` after RoPE
    depends only on the offset ``m - n``: attention sees relative positions and there is no
    table that limits the sequence length. The cos/sin tables are built per length on first use
    and cached; they are not parameters and not saved in the state dict.

    Args:
        head_dim: Channels per head (even).
        base: The RoPE theta; larger means slower rotations.
    """

    def __init__(self, head_dim: int, base: float = 10000.0):
        super().__init__()
        if head_dim % 2:
            raise ValueError(f"RotaryEmbedding needs an even head_dim, got {head_dim}.")
        self.head_dim = head_dim
        self.base = base
        self._tables: tuple | None = None  # (cos, sin), see _cos_sin

    def _cos_sin(self, end: int):
        """cos/sin tables ``[n, 1, head_dim/2]`` for positions ``0..n-1``, ``n >= end`` (cached).

        One table is kept, of the longest length asked for. Training asks for one T; decoding
        one token at a time asks for T + 1, T + 2, ..., so a longer table is built at twice
        the length, a rebuild per doubling rather than per token. Each entry depends only on
        its own position, so the table's length never changes a value.
        """
        if self._tables is None or self._tables[0].shape[0] < end:
            n = end if self._tables is None else max(end, 2 * self._tables[0].shape[0])
            i = paddle.arange(self.head_dim // 2, dtype="float64")
            theta = paddle.pow(paddle.to_tensor(self.base, dtype="float64"), -2.0 * i / self.head_dim)
            angles = paddle.arange(n, dtype="float64").unsqueeze(-1) * theta  # [n, D/2]
            # float64 angles: p * theta loses digits in float32 for long sequences.
            cos = paddle.cos(angles).astype("float32").unsqueeze(1)
            sin = paddle.sin(angles).astype("float32").unsqueeze(1)
            self._tables = (cos, sin)
        return self._tables

    def forward(self, x, offset: int = 0):
        """Rotate ``x`` ``[B, T, H, D]`` as if its first token sat at position ``offset``."""
        B, T, H, D = x.shape
        cos, sin = self._cos_sin(offset + T)
        if cos.shape[0] != T:  # [T, 1, D/2], broadcast over B and H
            cos, sin = cos[offset : offset + T], sin[offset : offset + T]
        pairs = x.reshape([B, T, H, D // 2, 2])
        x_even, x_odd = pairs[..., 0], pairs[..., 1]  # [B, T, H, D/2]
        out_even = cos * x_even - sin * x_odd
        out_odd = sin * x_even + cos * x_odd
        return paddle.stack([out_even, out_odd], axis=-1).reshape([B, T, H, D])

    def extra_repr(self) -> str:
        return f"head_dim={self.head_dim}, base={self.base}"
