"""PaddleNLP's Llama decoder as a seqlab model: a third-party model brought in by a thin wrapper.

What is wrapped: ``paddlenlp.transformers.LlamaForCausalLM`` (paddlenlp 3.0.0b4), unchanged:
its embedding, decoder layers (RMSNorm, RoPE attention, SwiGLU), final norm, untied LM head and
its own weight init (normal, std ``init_std``; the output projections of attention and MLP
scaled by 1/sqrt(2 n_layer)). The wrapper only turns seqlab's sizes into a ``LlamaConfig``, asks
for plain logits and drives PaddleNLP's KV cache (``past_key_values``) for ``step``.

    tokens [B, T] -> LlamaForCausalLM(input_ids=tokens) -> logits [B, T, V]

paddlenlp is imported when the model is built, not when this module is imported, so seqlab lists
``pnlp_llama`` without the ``paddlenlp`` extra and says how to install it when it is chosen.

Defaults: 2 layers, C = 32, 2 heads of 16, SwiGLU hidden 112: 30,624 parameters at V = 12, the
same shape (and count) as ``transformer_modern``. Differences from it are PaddleNLP's: the init
(normal, std 0.02, where transformer_modern uses a truncated normal scaled by fan) and RMSNorm's
epsilon (1e-6; seqlab's is 1e-5).
"""

from __future__ import annotations

from typing import Optional

import paddle

from seqlab.model import Model
from seqlab.models._paddlenlp import PADDLENLP, import_paddlenlp


class PaddleNLPLlama(Model):
    """PaddleNLP's LlamaForCausalLM: RMSNorm, RoPE, SwiGLU decoder (paddlenlp extra).

    Args:
        vocab_size: Number of token ids (12 for digit reversal).
        n_layer: Number of decoder layers.
        n_head: Attention heads; n_embd / n_head must be a whole, even head size (RoPE).
        n_kv_head: Key/value heads (grouped-query attention); None means n_head. Must divide n_head.
        n_embd: Model width C (PaddleNLP's hidden_size).
        ffn_hidden: Hidden width of the SwiGLU MLP (PaddleNLP's intermediate_size).
        rope_theta: RoPE base; larger rotates slower.
        max_len: Longest sequence (PaddleNLP's max_position_embeddings: its RoPE table's length).
        init_std: Standard deviation of PaddleNLP's normal init (its initializer_range).
    """

    documented_params: int = 30_624
    requires = PADDLENLP

    def __init__(
        self,
        vocab_size: int = 12,
        n_layer: int = 2,
        n_head: int = 2,
        n_kv_head: Optional[int] = None,
        n_embd: int = 32,
        ffn_hidden: int = 112,
        rope_theta: float = 10000.0,
        max_len: int = 2048,
        init_std: float = 0.02,
    ):
        super().__init__()
        n_kv_head = n_head if n_kv_head is None else n_kv_head
        if n_embd % n_head or (n_embd // n_head) % 2:
            raise ValueError(
                f"pnlp_llama: n_embd ({n_embd}) / n_head ({n_head}) must be a whole, even head size for RoPE."
            )
        if n_head % n_kv_head:
            raise ValueError(f"pnlp_llama: n_kv_head ({n_kv_head}) must divide n_head ({n_head}).")
        llama = import_paddlenlp(type(self), "paddlenlp.transformers.llama.modeling")
        config = llama.LlamaConfig(
            vocab_size=vocab_size,
            hidden_size=n_embd,
            intermediate_size=ffn_hidden,
            num_hidden_layers=n_layer,
            num_attention_heads=n_head,
            num_key_value_heads=n_kv_head,
            max_position_embeddings=max_len,
            rope_theta=rope_theta,
            initializer_range=init_std,
            tie_word_embeddings=False,
        )
        self.vocab_size, self.n_layer, self.max_len = vocab_size, n_layer, max_len
        self.n_kv_head, self.head_dim = n_kv_head, n_embd // n_head
        self.lm = llama.LlamaForCausalLM(config)

    def forward(self, tokens):
        T = tokens.shape[1]
        if T > self.max_len:
            raise ValueError(f"pnlp_llama reads at most max_len={self.max_len} tokens, got {T}; raise max_len.")
        # No attention_mask: PaddleNLP then builds the causal mask itself.
        return self.lm(input_ids=tokens, use_cache=False, return_dict=True).logits  # [B, T, V]

    def param_groups(self):
        # PaddleNLP's LM head is its own Layer, not an nn.Linear; it is a weight matrix all the same.
        groups = super().param_groups()
        head = self.lm.lm_head.weight
        if any(p is head for p in groups["no_decay"]):
            groups["no_decay"] = [p for p in groups["no_decay"] if p is not head]
            groups["decay"].append(head)
        return groups

    def state_size(self, seq_len: int) -> int:
        # KV cache: a key and a value of n_kv_head * head_dim floats per layer per cached token.
        return 2 * self.n_layer * seq_len * self.n_kv_head * self.head_dim

    # -- cached inference ------------------------------------------------------------------------

    def init_state(self, batch_size: int):
        """An empty KV cache: per layer (keys, values), each ``[B, 0, n_kv_head, head_dim]``."""
        empty = [batch_size, 0, self.n_kv_head, self.head_dim]
        return [(paddle.zeros(empty), paddle.zeros(empty)) for _ in range(self.n_layer)]

    def step(self, tokens, state):
        """One token per sequence: ``tokens`` int64 ``[B]`` -> (logits ``[B, V]``, the grown cache)."""
        position = state[0][0].shape[1]  # tokens already cached
        if position >= self.max_len:
            raise ValueError(f"pnlp_llama reads at most max_len={self.max_len} tokens; raise max_len.")
        B = tokens.shape[0]
        out = self.lm(
            input_ids=tokens.reshape([B, 1]),
            # PaddleNLP numbers a cached call's positions from 0 unless told where it is.
            position_ids=paddle.full([B, 1], position, dtype="int64"),
            past_key_values=state,
            use_cache=True,
            return_dict=True,
        )
        return out.logits[:, 0], list(out.past_key_values)
