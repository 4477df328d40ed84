"""A GRU language model for seqlab, as an out-of-tree plugin.

No seqlab decorator: the package's pyproject declares the entry point
``[project.entry-points."seqlab.models"] gru = "seqlab_gru:GRU"``, and seqlab finds it.

Parameters at the defaults (vocab 12, embed 32, 2 x 52; Paddle's GRU has two bias vectors)::

    embedding     12 * 32                            =    384
    layer 1       3*52 * (32 + 52) + 2 * 3*52        = 13,416
    layer 2       3*52 * (52 + 52) + 2 * 3*52        = 16,536
    head          52 * 12 + 12                       =    636
                                              total    30,972   (the seed models: ~30k)
"""

from __future__ import annotations

import paddle
from paddle import nn

from seqlab import Model


class GRU(Model):
    """GRU language model: embedding -> GRU stack -> linear head.

    Args:
        vocab_size: Number of token ids (the CLI sets it from the task).
        embed_dim: Width of the token embedding.
        hidden_size: Hidden size of every GRU layer.
        num_layers: Number of stacked GRU layers.
        dropout: Dropout between GRU layers (training only).
    """

    #: Trainable parameters at the defaults (checked by seqlab.testing).
    documented_params = 30_972

    def __init__(
        self,
        vocab_size: int = 12,
        embed_dim: int = 32,
        hidden_size: int = 52,
        num_layers: int = 2,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.embedding = nn.Embedding(vocab_size, embed_dim)  # [B, T] -> [B, T, E]
        self.gru = nn.GRU(embed_dim, hidden_size, num_layers=num_layers, dropout=dropout)
        self.head = nn.Linear(hidden_size, vocab_size)  # [B, T, H] -> [B, T, V]

    def forward(self, tokens):
        h, _ = self.gru(self.embedding(tokens))  # [B, T, H]
        return self.head(h)

    def state_size(self, seq_len: int) -> int:
        """One hidden vector per layer, whatever the length."""
        return self.num_layers * self.hidden_size

    # RNN mode (optional): constant-memory generation, one token at a time.
    def init_state(self, batch_size: int):
        return paddle.zeros([self.num_layers, batch_size, self.hidden_size])

    def step(self, tokens, state):
        """``tokens[B] -> (logits[B, V], new state)``."""
        h, state = self.gru(self.embedding(tokens.reshape([-1, 1])), state)
        return self.head(h)[:, 0], state
