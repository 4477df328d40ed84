"""A modern decoder-only Transformer (CS336 assignment 1 / LLaMA style), at the seed's scale.

    tokens [B,T] -> emb -> n_layer x Block -> RMSNorm -> lm_head -> logits [B,T,V]
    Block:  x = x + Attention(RMSNorm(x));  x = x + SwiGLU(RMSNorm(x))
    Attention: q, k, v projections, RoPE on q and k, causal softmax attention, output projection

No learned position table: RoPE encodes positions as rotations, so the model runs on sequences
longer than it was trained on. All projections are bias-free; weights use CS336's truncated
normal init (std sqrt(2 / (fan_in + fan_out)), embeddings std 1, both cut at 3 std).

Defaults: 2 layers, C = 32, 2 heads of 16, SwiGLU hidden 112: 30,624 parameters (V = 12), close to
the seed's RWKV-7 (30,732) and Transformer (30,380).

RNN mode (``init_state`` / ``step``) decodes one token at a time against a preallocated
``seqlab.nn.KVCache`` with the same weights; the cache grows by doubling when full.
"""

from __future__ import annotations

import paddle

from seqlab.model import Model
from seqlab.nn import KVCache, RMSNorm, RotaryEmbedding, SwiGLU

nn = paddle.nn
F = paddle.nn.functional


def _trunc_normal_(weight, std: float):
    nn.initializer.TruncatedNormal(mean=0.0, std=std, a=-3 * std, b=3 * std)(weight)


class CausalSelfAttention(nn.Layer):
    """Multi-head causal self-attention with RoPE on queries and keys."""

    def __init__(self, n_embd: int, n_head: int, rope_theta: float):
        super().__init__()
        self.n_head, self.head_dim = n_head, n_embd // n_head
        self.q_proj = nn.Linear(n_embd, n_embd, bias_attr=False)
        self.k_proj = nn.Linear(n_embd, n_embd, bias_attr=False)
        self.v_proj = nn.Linear(n_embd, n_embd, bias_attr=False)
        self.output_proj = nn.Linear(n_embd, n_embd, bias_attr=False)
        self.rope = RotaryEmbedding(self.head_dim, base=rope_theta)

    def forward(self, x):
        B, T, C = x.shape
        H, D = self.n_head, self.head_dim
        # Paddle's scaled_dot_product_attention takes [B, T, H, D], so no transposes are needed.
        q = self.rope(self.q_proj(x).reshape([B, T, H, D]))
        k = self.rope(self.k_proj(x).reshape([B, T, H, D]))
        v = self.v_proj(x).reshape([B, T, H, D])
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # softmax(q k^T / sqrt(D)) v
        return self.output_proj(y.reshape([B, T, C]))

    def step(self, x, cache, layer: int, position: int):
        """One token ``x`` ``[B, 1, C]`` at ``position``: attend over ``cache`` (after adding it)."""
        B, _, C = x.shape
        H, D = self.n_head, self.head_dim
        q = self.rope(self.q_proj(x).reshape([B, 1, H, D]), offset=position)
        k = self.rope(self.k_proj(x).reshape([B, 1, H, D]), offset=position)
        cache.write(layer, position, k, self.v_proj(x))
        return self.output_proj(cache.attend(layer, q))


class Block(nn.Layer):
    """Pre-norm block: attention then SwiGLU, each behind an RMSNorm and a residual."""

    def __init__(self, n_embd: int, n_head: int, ffn_hidden: int, rope_theta: float):
        super().__init__()
        self.ln1 = RMSNorm(n_embd)
        self.attn = CausalSelfAttention(n_embd, n_head, rope_theta)
        self.ln2 = RMSNorm(n_embd)
        self.ffn = SwiGLU(n_embd, ffn_hidden)

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.ffn(self.ln2(x))

    def step(self, x, cache, layer: int, position: int):
        x = x + self.attn.step(self.ln1(x), cache, layer, position)
        return x + self.ffn(self.ln2(x))


class TransformerModern(Model):
    """Decoder-only Transformer with RMSNorm, RoPE and SwiGLU (CS336 style); 30,624 params, any length.

    Args:
        vocab_size: Number of token ids (12 for digit reversal: 0-9, ',' and '#').
        n_layer: Number of blocks.
        n_head: Attention heads; must divide n_embd into even head sizes.
        n_embd: Model width C.
        ffn_hidden: Hidden width of the SwiGLU feed-forward (112 = 3.5 C lands near 30k params).
        rope_theta: RoPE base; larger rotates slower.
    """

    documented_params: int = 30_624

    def __init__(
        self,
        vocab_size: int = 12,
        n_layer: int = 2,
        n_head: int = 2,
        n_embd: int = 32,
        ffn_hidden: int = 112,
        rope_theta: float = 10000.0,
    ):
        super().__init__()
        if n_embd % n_head or (n_embd // n_head) % 2:
            raise ValueError(f"n_embd ({n_embd}) / n_head ({n_head}) must be a whole, even head size for RoPE.")
        self.vocab_size, self.n_layer, self.n_embd = vocab_size, n_layer, n_embd
        self.token_embeddings = nn.Embedding(vocab_size, n_embd)
        self.layers = nn.LayerList([Block(n_embd, n_head, ffn_hidden, rope_theta) for _ in range(n_layer)])
        self.ln_final = RMSNorm(n_embd)
        self.lm_head = nn.Linear(n_embd, vocab_size, bias_attr=False)

        _trunc_normal_(self.token_embeddings.weight, 1.0)
        for layer in self.sublayers():
            if isinstance(layer, nn.Linear):
                fan_in, fan_out = layer.weight.shape  # Paddle stores Linear weights [in, out]
                _trunc_normal_(layer.weight, (2.0 / (fan_in + fan_out)) ** 0.5)

    def forward(self, tokens):
        x = self.token_embeddings(tokens)  # [B, T, C]
        for block in self.layers:
            x = block(x)
        return self.lm_head(self.ln_final(x))  # [B, T, V]

    def state_size(self, seq_len: int) -> int:
        # KV cache: a key and a value vector of C floats per layer per cached token.
        return 2 * self.n_layer * seq_len * self.n_embd

    # -- RNN mode: a preallocated KV cache --------------------------------------------------------

    def init_state(self, batch_size: int, max_len: int | None = None):
        """An empty :class:`~seqlab.nn.KVCache` for ``max_len`` tokens (default 256).

        RoPE has no position table, so the cache grows (doubling) past ``max_len``; sizing it
        to the tokens you will decode avoids the growth copies and the masked tail.
        """
        head = self.layers[0].attn
        return KVCache(self.n_layer, batch_size, head.n_head, head.head_dim, max_len or 256)

    def step(self, tokens, state):
        """One token per sequence: ``tokens`` int64 ``[B]`` -> (logits ``[B, V]``, the cache).

        The cache is updated in place (and returned): the token's keys and values are written
        at the next position.
        """
        position = state.next_position()
        x = self.token_embeddings(tokens.reshape([-1, 1]))  # [B, 1, C]
        for i, block in enumerate(self.layers):
            x = block.step(x, state, i, position)
        return self.lm_head(self.ln_final(x))[:, 0], state
