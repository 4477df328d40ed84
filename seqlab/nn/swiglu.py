"""SwiGLU feed-forward block (Shazeer 2020), as in LLaMA and CS336."""

from __future__ import annotations

import paddle.nn.functional as F
from paddle import nn


class SwiGLU(nn.Layer):
    """``y = w2(silu(w1(x)) * w3(x))`` with bias-free projections.

    The SiLU branch gates the linear branch element-wise; with ``d_ff ~ 8/3 d_model`` it costs
    what a ReLU MLP with ``4 d_model`` costs.

    Args:
        d_model: Input and output width.
        d_ff: Hidden width of the gated branch.
    """

    def __init__(self, d_model: int, d_ff: int):
        super().__init__()
        self.w1 = nn.Linear(d_model, d_ff, bias_attr=False)  # gate branch
        self.w3 = nn.Linear(d_model, d_ff, bias_attr=False)  # linear branch
        self.w2 = nn.Linear(d_ff, d_model, bias_attr=False)  # back to d_model

    def forward(self, x):
        return self.w2(F.silu(self.w1(x)) * self.w3(x))
