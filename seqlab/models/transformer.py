"""The seed notebook's Transformer baseline: Paddle's TransformerEncoder with a causal mask.

    tokens [B,T] -> token_emb + pos_emb (learned, max_len rows) -> n_layer x pre-norm encoder layer
                 (causal self-attention, ReLU FFN) -> ln_f -> head -> logits [B,T,V]

At the defaults (2 layers, 2 heads, C = 32, FFN 128, 129 positions, V = 12) it has exactly the
seed's 30,380 parameters and uses Paddle's default initialisation, as the seed does.

RNN mode (``init_state`` / ``step``) decodes one token at a time against a preallocated
``seqlab.nn.KVCache``, running the encoder layers' own sublayers (same weights, same maths as
``forward``). The learned position table ends at ``max_len``: a step past it is a
``SeqlabError`` that says so.
"""

from __future__ import annotations

import paddle

from seqlab.errors import SeqlabError
from seqlab.model import Model
from seqlab.nn import KVCache

nn = paddle.nn


class Transformer(Model):
    """GPT-style Transformer with learned positions (Paddle TransformerEncoder); seed baseline, 30,380 params.

    Args:
        vocab_size: Number of token ids (12 for digit reversal: 0-9, ',' and '#').
        n_layer: Number of encoder layers.
        n_head: Attention heads per layer; must divide n_embd.
        n_embd: Model width C.
        max_len: Rows of the learned position table: the longest sequence the model accepts.
        ffn_mult: FFN hidden width as a multiple of n_embd.
        dropout: Dropout in attention, FFN and residuals (the seed uses 0).
    """

    documented_params: int = 30_380

    def __init__(
        self,
        vocab_size: int = 12,
        n_layer: int = 2,
        n_head: int = 2,
        n_embd: int = 32,
        max_len: int = 129,
        ffn_mult: int = 4,
        dropout: float = 0.0,
    ):
        super().__init__()
        if n_embd % n_head:
            raise ValueError(f"n_embd ({n_embd}) must be a multiple of n_head ({n_head}).")
        self.vocab_size, self.n_layer, self.n_embd, self.max_len = vocab_size, n_layer, n_embd, max_len
        self.token_emb = nn.Embedding(vocab_size, n_embd)
        self.pos_emb = nn.Embedding(max_len, n_embd)  # learned absolute positions
        layer = nn.TransformerEncoderLayer(
            d_model=n_embd,
            nhead=n_head,
            dim_feedforward=ffn_mult * n_embd,
            dropout=dropout,
            activation="relu",
            normalize_before=True,  # pre-LN, as in the seed
        )
        # TransformerEncoder (Paddle 3.3) uses `layer` itself as layer 0 and builds the others
        # fresh from its constructor arguments (each with its own default init; no weights are
        # copied). norm=None as in the seed, since ln_f below is the final norm.
        self.transformer = nn.TransformerEncoder(layer, num_layers=n_layer)
        self.ln_f = nn.LayerNorm(n_embd)
        self.head = nn.Linear(n_embd, vocab_size)
        # Additive causal masks [1, 1, T, T] by length T: built once, reused every step. Not a
        # buffer, so they stay out of the state dict.
        self._causal_masks: dict[int, object] = {}

    def causal_mask(self, T: int):
        """Additive ``[1, 1, T, T]`` mask: 0 on and below the diagonal, -1e9 above (the seed's)."""
        mask = self._causal_masks.get(T)
        if mask is None:
            mask = paddle.triu(paddle.full([T, T], -1e9, dtype="float32"), diagonal=1)
            mask = mask.reshape([1, 1, T, T])
            self._causal_masks[T] = mask
        return mask

    def forward(self, tokens):
        B, T = tokens.shape
        if T > self.max_len:
            raise ValueError(
                f"transformer got a sequence of {T} tokens but has positions for max_len="
                f"{self.max_len}; pass a larger --model.init_args.max_len or shorter sequences."
            )
        positions = paddle.arange(T, dtype="int64").unsqueeze(0)  # [1, T]
        h = self.token_emb(tokens) + self.pos_emb(positions)  # [B, T, C]
        h = self.transformer(h, src_mask=self.causal_mask(T))
        return self.head(self.ln_f(h))  # [B, T, V]

    def state_size(self, seq_len: int) -> int:
        # KV cache: a key and a value vector of C floats per layer per cached token.
        return 2 * self.n_layer * seq_len * self.n_embd

    # -- RNN mode: a preallocated KV cache --------------------------------------------------------

    def _too_long(self, tokens: int) -> SeqlabError:
        return SeqlabError(
            f"transformer has learned positions for max_len={self.max_len} tokens and cannot "
            f"decode {tokens}; generate fewer tokens (prompt + new tokens <= {self.max_len}), or "
            f"use a model without a position table (transformer_modern, rwkv7), or train one with "
            f"a larger --model.init_args.max_len."
        )

    def init_state(self, batch_size: int, max_len: int | None = None):
        """An empty :class:`~seqlab.nn.KVCache` for ``max_len`` tokens (default and limit: the
        model's ``max_len``, the end of its position table)."""
        capacity = self.max_len if max_len is None else max_len
        if capacity > self.max_len:
            raise self._too_long(capacity)
        attn = self.transformer.layers[0].self_attn
        return KVCache(self.n_layer, batch_size, attn.num_heads, attn.head_dim, capacity, max_capacity=self.max_len)

    def step(self, tokens, state):
        """One token per sequence: ``tokens`` int64 ``[B]`` -> (logits ``[B, V]``, the cache).

        The cache is updated in place (and returned). Each encoder layer runs as in its
        ``forward`` with ``normalize_before=True`` (pre-LN), on one query against the cache.
        """
        if state.length >= self.max_len:
            raise self._too_long(state.length + 1)
        p = state.next_position()
        B = tokens.shape[0]
        x = self.token_emb(tokens.reshape([B, 1])) + self.pos_emb.weight[p : p + 1]  # [B, 1, C]
        for i, layer in enumerate(self.transformer.layers):
            attn = layer.self_attn
            h = layer.norm1(x)
            shape = [B, 1, attn.num_heads, attn.head_dim]
            state.write(i, p, attn.k_proj(h).reshape(shape), attn.v_proj(h).reshape(shape))
            x = x + layer.dropout1(attn.out_proj(state.attend(i, attn.q_proj(h).reshape(shape))))
            ffn = layer.linear2(layer.dropout(layer.activation(layer.linear1(layer.norm2(x)))))
            x = x + layer.dropout2(ffn)
        return self.head(self.ln_f(x))[:, 0], state
