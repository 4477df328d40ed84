"""A causal fixed-window MLP: a floor baseline that can only look ``window`` tokens back.

At position t it concatenates the embeddings of tokens t-window+1 .. t (zeros before the start
of the row) and maps them through one hidden layer to next-token logits::

    tokens [B, T] -> embed [B, T, E] -> windows [B, T, window*E] -> Linear -> GELU -> Linear [B, T, V]

Why it cannot solve digit reversal: the j-th reversed digit (j = 0, 1, ...) of a k-digit number
is predicted 2j+1 tokens after the forward digit it copies, so a 60-digit number needs a look-back
of up to ~120 tokens, at an offset that depends on the position. A window of ``window`` tokens
(the current one included) can copy a digit only when 2j+1 <= window-1, and places the closing
``#`` only when the comma is within reach (k <= window-1). It can reverse short numbers, but for
a digit further back it can do no better than chance (1/10), so its accuracy is capped near the
fraction of scored positions within its reach. That makes it a useful floor for the comparison.

Default parameters at vocab 12 (embed 16, window 16, hidden 110)::

    embedding       12 * 16                 =    192
    hidden          (16*16) * 110 + 110     = 28,270
    head            110 * 12 + 12           =  1,332
                                      total   29,794
"""

from __future__ import annotations

import paddle

from seqlab.model import Model

nn = paddle.nn


class MLP(Model):
    """Causal MLP over a fixed window of the last tokens (a floor baseline).

    Args:
        vocab_size: Number of token ids (12 for digit reversal).
        embed_dim: Width of the token embedding.
        window: How many tokens (the current one included) each prediction sees.
        hidden_dim: Width of the hidden layer.
    """

    #: Trainable parameters of the default configuration at vocab_size=12.
    documented_params = 29_794

    def __init__(
        self,
        vocab_size: int = 12,
        embed_dim: int = 16,
        window: int = 16,
        hidden_dim: int = 110,
    ):
        super().__init__()
        if window < 1:
            raise ValueError(f"MLP: window must be at least 1, got {window}")
        self.vocab_size = vocab_size
        self.embed_dim = embed_dim
        self.window = window
        self.embedding = nn.Embedding(vocab_size, embed_dim)
        self.hidden = nn.Linear(window * embed_dim, hidden_dim)
        self.act = nn.GELU()
        self.head = nn.Linear(hidden_dim, vocab_size)

    def forward(self, tokens):
        B, T = tokens.shape
        e = self.embedding(tokens)  # [B, T, E]
        if self.window > 1:
            pad = paddle.zeros([B, self.window - 1, self.embed_dim], dtype=e.dtype)
            e = paddle.concat([pad, e], axis=1)  # [B, T+W-1, E]
        # Slice i holds token t-(W-1)+i at position t: oldest first, the current token last.
        windows = paddle.concat([e[:, i : i + T] for i in range(self.window)], axis=-1)  # [B, T, W*E]
        return self.head(self.act(self.hidden(windows)))

    def state_size(self, seq_len: int) -> int:
        """The last ``window`` token embeddings: ``window * embed_dim`` floats."""
        return self.window * self.embed_dim

    # -- RNN mode: the input window ---------------------------------------------------------------

    def init_state(self, batch_size: int):
        """The window before the first token: ``[batch_size, window, embed_dim]`` zeros, the
        padding ``forward`` puts before the start of a row."""
        return paddle.zeros([batch_size, self.window, self.embed_dim])

    def step(self, tokens, state):
        """One token per sequence: ``tokens`` int64 ``[B]`` -> (logits ``[B, V]``, new window).

        The new window drops the oldest embedding and appends this token's (oldest first, as in
        ``forward``); it is what this prediction saw.
        """
        B = tokens.shape[0]
        e = self.embedding(tokens.reshape([B, 1]))  # [B, 1, E]
        window = paddle.concat([state[:, 1:], e], axis=1) if self.window > 1 else e
        flat = window.reshape([B, self.window * self.embed_dim])
        return self.head(self.act(self.hidden(flat))), window
