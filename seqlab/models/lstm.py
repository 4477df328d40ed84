"""The seed's LSTM baseline: Embedding -> a stack of single-layer LSTMs -> Linear.

The stack is configured by a list of hidden sizes, one ``nn.LSTM(num_layers=1)`` per entry, as
in the seed's ``LSTM_ListConfig_Baseline``. The default 7 x 128 stack was the most accurate the
seed's author found, and it already has ~28x the parameters of the RWKV-7 model.

Two implementations of the same maths, same parameters (the ``nn.LSTM`` layers are always
built, so names, shapes, initialisation and checkpoints do not depend on the choice):

* ``fused_ops=True`` (default): each layer's training forward runs through the C++ LSTM op of
  ``seqlab.ops.lstm`` (one GEMM for the input projection, T small GEMMs + fused gate maths, a
  hand-written backward through time). On the 2-core AMD CPU we measured, its training step is
  faster than ``nn.LSTM``'s, whose MKL uses its AVX2 kernels as seqlab sets it up, and more so
  against stock MKL's generic kernels (``benchmarks/RESULTS.md``: the "Fused LSTM" part of
  "Summary: 2026-11-29", and "Fused LSTM"). It falls back to ``nn.LSTM`` on GPU or when the
  op cannot be built (one warning).
* ``fused_ops=False``: Paddle's ``nn.LSTM``. RNN mode (``step()``) always uses it.

tests/test_lstm_fused.py checks the two agree (logits and every gradient, 1e-5).

Parameters at vocab 12, embed 32, 7 x 128 (paddle's LSTM has two bias vectors per layer)::

    embedding            12 * 32                          =     384
    layer 1              4*128 * (32 + 128) + 2 * 4*128   =  82,944
    layers 2..7          6 * (4*128 * (128 + 128) + 1024) = 792,576
    head                 128 * 12 + 12                    =   1,548
                                                   total    877,452
"""

from __future__ import annotations

from typing import Optional

import paddle

from seqlab.model import Model
from seqlab.ops.lstm import lstm_layer

nn = paddle.nn

DEFAULT_HIDDEN_SIZES = (128,) * 7


class LSTM(Model):
    """Stacked LSTM baseline (the seed's 7 x 128 list-configured stack).

    Args:
        vocab_size: Number of token ids (12 for digit reversal).
        embed_dim: Width of the token embedding (the seed's C = 32).
        hidden_sizes: Hidden size of each single-layer LSTM, bottom to top; ``None`` means the
            seed's ``[128, 128, 128, 128, 128, 128, 128]``.
        fused_ops: Run the training forward through the fused C++ LSTM op of ``seqlab.ops.lstm``
            (same parameters and maths, ~1e-6 apart in float32; it falls back to ``nn.LSTM`` on
            GPU or when it cannot be built). False: Paddle's ``nn.LSTM``. RNN ``step()`` always
            uses ``nn.LSTM``.
    """

    #: Trainable parameters of the default configuration at vocab_size=12 (the seed's figure).
    documented_params = 877_452

    def __init__(
        self,
        vocab_size: int = 12,
        embed_dim: int = 32,
        hidden_sizes: Optional[list[int]] = None,
        fused_ops: bool = True,
    ):
        super().__init__()
        sizes = list(DEFAULT_HIDDEN_SIZES if hidden_sizes is None else hidden_sizes)
        if not sizes or min(sizes) < 1:
            raise ValueError(f"LSTM: hidden_sizes must be a non-empty list of positive ints, got {sizes}")
        self.vocab_size = vocab_size
        self.hidden_sizes = sizes
        self.fused_ops = fused_ops
        self.embedding = nn.Embedding(vocab_size, embed_dim)  # [B, T] -> [B, T, C]
        self.lstm_layers = nn.LayerList()
        width = embed_dim
        for hidden in sizes:
            self.lstm_layers.append(nn.LSTM(input_size=width, hidden_size=hidden, num_layers=1))
            width = hidden
        self.head = nn.Linear(width, vocab_size)  # [B, T, H_last] -> [B, T, V]

    def forward(self, tokens):
        h = self.embedding(tokens)
        use_cpp = None if self.fused_ops else False  # None: the op where it applies and builds
        for layer in self.lstm_layers:
            h, _ = lstm_layer(layer, h, use_cpp=use_cpp)
        return self.head(h)

    def state_size(self, seq_len: int) -> int:
        """h and c of every layer: ``2 * sum(hidden_sizes)`` floats, whatever the length."""
        return 2 * sum(self.hidden_sizes)

    # ------------------------------------------------------------ RNN mode
    def init_state(self, batch_size: int):
        """Zero ``(h, c)`` per layer, each ``[1, batch_size, hidden]``."""
        return [(paddle.zeros([1, batch_size, h]), paddle.zeros([1, batch_size, h])) for h in self.hidden_sizes]

    def step(self, tokens, state):
        """One token per sequence: ``tokens[B] -> (logits[B, V], new state)``."""
        h = self.embedding(tokens.reshape([-1, 1]))  # [B, 1, C]
        new_state = []
        for layer, layer_state in zip(self.lstm_layers, state):
            h, layer_state = layer(h, layer_state)
            new_state.append(layer_state)
        return self.head(h)[:, 0], new_state
