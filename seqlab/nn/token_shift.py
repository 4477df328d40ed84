"""Token shift: the one-step look-back RWKV mixes into every projection.

The shift itself lives in ``seqlab.ops.fused`` (the one home of RWKV-7's formulas, beside the
fused token-shift-mix ops built on it); this module gives it its ``nn`` name and a layer.
"""

from __future__ import annotations

from paddle import nn

from seqlab.ops.fused import token_shift

__all__ = ["TokenShift", "token_shift"]


class TokenShift(nn.Layer):
    """``xx = token_shift(x) - x``: the difference to the previous token, shape ``[B, T, C]``.

    RWKV interpolates ``x + xx * mix`` per channel between the current and the previous token,
    which gives every projection a learned two-token receptive field at almost no cost.
    """

    def forward(self, x, prev=None):
        return token_shift(x, prev) - x
