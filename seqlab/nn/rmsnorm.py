"""Root-mean-square layer norm (Zhang & Sennrich 2019), as in LLaMA and CS336."""

from __future__ import annotations

import paddle
from paddle import nn


class RMSNorm(nn.Layer):
    """``y = x / sqrt(mean(x**2, -1) + eps) * weight``.

    Unlike LayerNorm it neither subtracts the mean nor adds a bias: cheaper, and as stable in
    pre-norm Transformers.

    Args:
        dim: Size of the last axis, normalised over.
        eps: Added inside the square root so an all-zero vector stays finite.
    """

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.dim = dim
        self.eps = eps
        self.weight = self.create_parameter(shape=[dim], default_initializer=nn.initializer.Constant(1.0))

    def forward(self, x):
        # Compute in float32 even for half inputs: the mean of squares overflows in fp16.
        dtype = x.dtype
        xf = x.astype("float32")
        rms_inv = paddle.rsqrt((xf * xf).mean(axis=-1, keepdim=True) + self.eps)
        return (xf * rms_inv).astype(dtype) * self.weight

    def extra_repr(self) -> str:
        return f"{self.dim}, eps={self.eps}"
