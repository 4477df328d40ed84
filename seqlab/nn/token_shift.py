"""Token shift: the one-step look-back RWKV mixes into every projection."""

from __future__ import annotations

import paddle
from paddle import nn


def token_shift(x, prev=None):
    """The sequence delayed by one step: ``out[:, t] = x[:, t-1]``; ``out[:, 0] = prev``.

    Args:
        x: ``[B, T, C]``.
        prev: ``[B, C]`` last token of the previous chunk (RNN mode), or None for zeros (the
            start of a sequence).
    """
    B, T, C = x.shape
    first = paddle.zeros([B, 1, C], dtype=x.dtype) if prev is None else prev.unsqueeze(1)
    return paddle.concat([first, x[:, : T - 1]], axis=1) if T > 1 else first


class TokenShift(nn.Layer):
    """``xx = token_shift(x) - x``: the difference to the previous token, shape ``[B, T, C]``.

    RWKV interpolates ``x + xx * mix`` per channel between the current and the previous token,
    which gives every projection a learned two-token receptive field at almost no cost.
    """

    def forward(self, x, prev=None):
        return token_shift(x, prev) - x
