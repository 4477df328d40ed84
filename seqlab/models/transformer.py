"""The seed notebook's Transformer baseline: Paddle's TransformerEncoder with a causal mask.

    tokens [B,T] -> token_emb + pos_emb (learned, max_len rows) -> n_layer x pre-norm encoder layer
                 (causal self-attention, ReLU FFN) -> ln_f -> head -> logits [B,T,V]

At the defaults (2 layers, 2 heads, C = 32, FFN 128, 129 positions, V = 12) it has exactly the
seed's 30,380 parameters and uses Paddle's default initialisation, as the seed does.
"""

from __future__ import annotations

from seqlab._paddle import import_paddle
from seqlab.model import Model
from seqlab.registry import register_model

paddle = import_paddle()
nn = paddle.nn


@register_model("transformer")
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
        # TransformerEncoder deep-copies `layer` n_layer times; norm=None as in the seed, since
        # ln_f below is the final norm.
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
