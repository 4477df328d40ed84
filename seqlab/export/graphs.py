"""The static graphs ``seqlab export`` writes: each built-in model's ``full`` and ``step`` forms.

A graph is a ``paddle.nn.Layer`` that wraps a trained model, shares its parameters, and runs the
model's maths in a form ``paddle.jit.to_static`` can trace with a dynamic batch (and, for
``full``, a dynamic length):

* shapes come from ``paddle.shape`` or ``reshape`` with ``0`` (copy this axis), never from
  ``x.shape`` as Python ints, which are ``-1`` for a dynamic axis in a static program;
* no Python ``raise`` on tensor values and no caches keyed by Python ints (the models' own
  ``forward`` and ``step`` have both: position-table checks, causal-mask and RoPE tables,
  the :class:`~seqlab.nn.KVCache` object written in place);
* only Paddle's own ops, never seqlab's C++ custom ops (``seqlab.ops.fused``, the ``cpp`` WKV7
  back end, the fused LSTM op): ONNX cannot carry a custom op, and a Paddle Inference server
  would need seqlab's compiled extension. RWKV-7's graphs call its plain-Paddle step
  (``RWKV7.step_plain``, the Paddle forms of ``seqlab.ops.fused`` and the reference
  ``wkv7_step``); the LSTM runs ``nn.LSTM``. So the served graph is the reference form of the
  model, and tests/test_export.py checks that it gives the trained model's logits.

Where a formula has to be spelt out again here (attention against a fixed-size cache, RoPE at a
position held in a tensor), it follows the model's own code line by line, and the tests compare
the two.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import paddle

from seqlab.models.lstm import LSTM
from seqlab.models.mlp import MLP
from seqlab.models.rwkv7 import RWKV7
from seqlab.models.transformer import Transformer
from seqlab.models.transformer_modern import TransformerModern
from seqlab.nn.kv_cache import MASKED

nn = paddle.nn
F = paddle.nn.functional

#: Positions of the exported KV cache of ``transformer_modern`` (RoPE has no position table, so
#: the capacity is a choice; ``seqlab export --max_len`` changes it). The seed Transformer's cache
#: holds its ``max_len`` positions, the end of its position table.
DEFAULT_CACHE_LEN = 256


@dataclass(frozen=True)
class Tensor:
    """One input or output of a graph: its name, shape (ints; strings name dynamic axes), dtype."""

    name: str
    shape: list
    dtype: str

    def spec(self) -> paddle.static.InputSpec:
        return paddle.static.InputSpec([d if isinstance(d, int) else None for d in self.shape], self.dtype, self.name)

    def as_dict(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}


@dataclass
class Graph:
    """A static graph of a model: the layer to trace, its inputs and outputs.

    Attributes:
        name: ``full`` (tokens -> logits) or ``step`` (one token and the state -> logits, state).
        layer: the ``nn.Layer`` whose ``forward`` is traced.
        inputs, outputs: in the order of ``forward``'s arguments and results.
        notes: what a server must know (e.g. the cache's capacity), written to seqlab-export.json.
    """

    name: str
    layer: nn.Layer
    inputs: list[Tensor]
    outputs: list[Tensor]
    notes: dict = field(default_factory=dict)


TOKENS = Tensor("tokens", ["batch", "time"], "int64")


def _logits(vocab: int) -> Tensor:
    return Tensor("logits", ["batch", "time", vocab], "float32")


def _step_logits(vocab: int) -> Tensor:
    return Tensor("logits", ["batch", vocab], "float32")


STEP_TOKENS = Tensor("tokens", ["batch"], "int64")
POSITION = Tensor("position", [1], "int64")


class StepMethod(nn.Layer):
    """A model's own step method as a graph, unchanged: ``(tokens [B], state) -> (logits, state)``.

    For the models whose step already uses Paddle forms only and static shapes but the batch:
    RWKV-7's ``step_plain`` (its Paddle form, not the fused C++ ``step``) and ``MLP.step``.
    """

    def __init__(self, model: nn.Layer, method: str):
        super().__init__()
        self.model, self.method = model, method

    def forward(self, tokens, state):
        return getattr(self.model, self.method)(tokens, state)


# ---------------------------------------------------------------------------------------- RWKV-7


class RWKV7Full(nn.Layer):
    """RWKV-7 over a whole sequence as the reference recurrence: ``step_plain`` in a time loop.

    The reference WKV7 (``seqlab.ops.wkv7.wkv7_reference``) is itself a loop of ``wkv7_step``;
    running the whole step per token keeps one Paddle form of every formula in the graph (the
    chunked form would need the sequence padded to a multiple of 16 inside the graph).
    """

    def __init__(self, model: RWKV7):
        super().__init__()
        self.model = model

    def forward(self, tokens):
        m = self.model
        state = paddle.zeros([paddle.shape(tokens)[0], m.n_layer, m._layer_state_size()], dtype="float32")
        logits, state = m.step_plain(tokens[:, 0], state)
        out = logits.unsqueeze(1)
        # A growing tensor, not a list: a list becomes a tensor array in the static program,
        # which paddle2onnx 2.1 writes into an invalid ONNX loop body.
        for t in range(1, paddle.shape(tokens)[1]):
            logits, state = m.step_plain(tokens[:, t], state)
            out = paddle.concat([out, logits.unsqueeze(1)], axis=1)
        return out


def _rwkv7_graphs(model: RWKV7, cache_len: int | None) -> list[Graph]:
    width = model.n_layer * model._layer_state_size()
    state = Tensor("state", ["batch", model.n_layer, model._layer_state_size()], "float32")
    return [
        Graph("full", RWKV7Full(model), [TOKENS], [_logits(model.vocab_size)]),
        Graph(
            "step",
            StepMethod(model, "step_plain"),
            [STEP_TOKENS, state],
            [_step_logits(model.vocab_size), Tensor("new_state", state.shape, "float32")],
            {"state": f"{width} floats per sequence, constant in the sequence's length"},
        ),
    ]


# ------------------------------------------------------------------------------ the KV-cache step
#
# The exported cache is two tensors [n_layer, B, H, capacity, D], passed in and returned whole,
# and the token's position is an input: a graph cannot hold seqlab.nn.KVCache (a Python object
# written in place). As KVCache does, a step writes the token's key and value at `position` and
# attends over every slot with an additive mask (0 up to `position`, -1e9 after it), so the
# shapes never change from step to step.


def _cache_tensors(n_layer: int, n_head: int, head_dim: int, capacity: int) -> list[Tensor]:
    shape = [n_layer, "batch", n_head, capacity, head_dim]
    return [Tensor("keys", shape, "float32"), Tensor("values", shape, "float32")]


def _slot_masks(position, capacity: int):
    """(``[capacity, 1]`` one at ``position``, additive ``[1, 1, 1, capacity]`` score mask)."""
    slots = paddle.arange(capacity, dtype="int64")
    here = (slots == position).astype("float32").reshape([capacity, 1])
    mask = paddle.where(slots <= position, paddle.zeros([capacity]), paddle.full([capacity], MASKED))
    return here, mask.reshape([1, 1, 1, capacity])


def _attend_cached(q, k, v, keys, values, here, mask):
    """Write ``k``, ``v`` (``[B, H, 1, D]``) into the cache slot ``here``; attend ``q`` over it.

    Returns ``(y [B, 1, H*D], keys, values)``; the sums and the softmax are KVCache.attend's.
    """
    keys = keys * (1.0 - here) + k * here  # [B, H, cap, D]: the other slots unchanged, exactly
    values = values * (1.0 - here) + v * here
    D = q.shape[-1]
    scores = paddle.matmul(q * (D**-0.5), keys, transpose_y=True) + mask  # [B, H, 1, cap]
    y = paddle.matmul(F.softmax(scores, axis=-1), values)  # [B, H, 1, D]
    return y.transpose([0, 2, 1, 3]).reshape([0, 1, q.shape[1] * D]), keys, values


def _heads(x, n_head: int, head_dim: int):
    """``[B, 1, H*D]`` -> ``[B, H, 1, D]``."""
    return x.reshape([0, 1, n_head, head_dim]).transpose([0, 2, 1, 3])


# ------------------------------------------------------------------------------ Transformer (seed)


class TransformerFull(nn.Layer):
    """The seed Transformer's ``forward`` with its causal mask and positions built in the graph."""

    def __init__(self, model: Transformer):
        super().__init__()
        self.model = model

    def forward(self, tokens):
        m = self.model
        T = paddle.shape(tokens)[1]
        positions = paddle.arange(T, dtype="int64").unsqueeze(0)  # [1, T]
        h = m.token_emb(tokens) + m.pos_emb(positions)
        mask = paddle.triu(paddle.full([T, T], MASKED, dtype="float32"), diagonal=1).unsqueeze([0, 1])
        return m.head(m.ln_f(m.transformer(h, src_mask=mask)))


class TransformerStep(nn.Layer):
    """``Transformer.step`` against the exported cache: the encoder layers' own sublayers."""

    def __init__(self, model: Transformer):
        super().__init__()
        self.model = model

    def forward(self, tokens, position, keys, values):
        m = self.model
        attn0 = m.transformer.layers[0].self_attn
        H, D, cap = attn0.num_heads, attn0.head_dim, m.max_len
        here, mask = _slot_masks(position, cap)
        x = m.token_emb(tokens.unsqueeze(1)) + m.pos_emb(position).unsqueeze(0)  # [B, 1, C]
        new_keys, new_values = [], []
        for i, layer in enumerate(m.transformer.layers):
            attn = layer.self_attn
            h = layer.norm1(x)
            q, k, v = (_heads(proj(h), H, D) for proj in (attn.q_proj, attn.k_proj, attn.v_proj))
            y, ki, vi = _attend_cached(q, k, v, keys[i], values[i], here, mask)
            x = x + attn.out_proj(y)  # eval mode: the dropouts are identities
            x = x + layer.linear2(layer.activation(layer.linear1(layer.norm2(x))))
            new_keys.append(ki)
            new_values.append(vi)
        return m.head(m.ln_f(x))[:, 0], paddle.stack(new_keys), paddle.stack(new_values)


def _transformer_graphs(model: Transformer, cache_len: int | None) -> list[Graph]:
    attn = model.transformer.layers[0].self_attn
    cap = model.max_len  # the position table ends there: a longer cache could not be used
    cache = _cache_tensors(model.n_layer, attn.num_heads, attn.head_dim, cap)
    return [
        Graph("full", TransformerFull(model), [TOKENS], [_logits(model.vocab_size)], notes={"max_len": cap}),
        Graph(
            "step",
            TransformerStep(model),
            [STEP_TOKENS, POSITION, *cache],
            [
                _step_logits(model.vocab_size),
                Tensor("new_keys", cache[0].shape, "float32"),
                Tensor("new_values", cache[1].shape, "float32"),
            ],
            {
                "position": "the token's position, 0 for the first; feed position + 1 and the returned caches next",
                "capacity": cap,
            },
        ),
    ]


# --------------------------------------------------------------------------- Transformer (modern)


def _rope(x, cos, sin):
    """``RotaryEmbedding.forward``'s rotation of ``x`` ``[B, T, H, D]``; ``cos``, ``sin`` broadcast
    to ``[B, T, H, D/2]``."""
    H, D = x.shape[2], x.shape[3]
    pairs = x.reshape([0, 0, H, D // 2, 2])
    x_even, x_odd = pairs[:, :, :, :, 0], pairs[:, :, :, :, 1]
    out = paddle.stack([cos * x_even - sin * x_odd, sin * x_even + cos * x_odd], axis=-1)
    return out.reshape([0, 0, H, D])


class _RopeAngles(nn.Layer):
    """``theta`` of a :class:`~seqlab.nn.RotaryEmbedding`, in float64 as it computes its tables."""

    def __init__(self, rope):
        super().__init__()
        i = np.arange(rope.head_dim // 2, dtype=np.float64)
        theta = np.power(np.float64(rope.base), -2.0 * i / rope.head_dim)
        self.register_buffer("theta", paddle.to_tensor(theta, dtype="float64"))

    def forward(self, positions):
        """``positions`` int64 ``[T]`` -> ``(cos, sin)`` float32 ``[T, 1, D/2]``."""
        angles = positions.astype("float64").unsqueeze(-1) * self.theta  # float64, as the model
        return paddle.cos(angles).astype("float32").unsqueeze(1), paddle.sin(angles).astype("float32").unsqueeze(1)


class TransformerModernFull(nn.Layer):
    """``TransformerModern.forward``, with RoPE's angles computed in the graph for any length."""

    def __init__(self, model: TransformerModern):
        super().__init__()
        self.model = model
        self.angles = _RopeAngles(model.layers[0].attn.rope)

    def forward(self, tokens):
        m = self.model
        cos, sin = self.angles(paddle.arange(paddle.shape(tokens)[1], dtype="int64"))
        x = m.token_embeddings(tokens)
        for block in m.layers:
            attn = block.attn
            H, D = attn.n_head, attn.head_dim
            h = block.ln1(x)
            q = _rope(attn.q_proj(h).reshape([0, 0, H, D]), cos, sin)
            k = _rope(attn.k_proj(h).reshape([0, 0, H, D]), cos, sin)
            v = attn.v_proj(h).reshape([0, 0, H, D])
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + attn.output_proj(y.reshape([0, 0, H * D]))
            x = x + block.ffn(block.ln2(x))
        return m.lm_head(m.ln_final(x))


class TransformerModernStep(nn.Layer):
    """``TransformerModern.step`` against the exported cache, RoPE at the ``position`` input."""

    def __init__(self, model: TransformerModern, capacity: int):
        super().__init__()
        self.model = model
        self.capacity = capacity
        self.angles = _RopeAngles(model.layers[0].attn.rope)

    def forward(self, tokens, position, keys, values):
        m = self.model
        here, mask = _slot_masks(position, self.capacity)
        cos, sin = self.angles(position)  # [1, 1, D/2]
        x = m.token_embeddings(tokens.unsqueeze(1))  # [B, 1, C]
        new_keys, new_values = [], []
        for i, block in enumerate(m.layers):
            attn = block.attn
            H, D = attn.n_head, attn.head_dim
            h = block.ln1(x)
            q = _rope(attn.q_proj(h).reshape([0, 1, H, D]), cos, sin).transpose([0, 2, 1, 3])
            k = _rope(attn.k_proj(h).reshape([0, 1, H, D]), cos, sin).transpose([0, 2, 1, 3])
            v = _heads(attn.v_proj(h), H, D)
            y, ki, vi = _attend_cached(q, k, v, keys[i], values[i], here, mask)
            x = x + attn.output_proj(y)
            x = x + block.ffn(block.ln2(x))
            new_keys.append(ki)
            new_values.append(vi)
        return m.lm_head(m.ln_final(x))[:, 0], paddle.stack(new_keys), paddle.stack(new_values)


def _modern_graphs(model: TransformerModern, cache_len: int | None) -> list[Graph]:
    attn = model.layers[0].attn
    cap = cache_len or DEFAULT_CACHE_LEN
    cache = _cache_tensors(model.n_layer, attn.n_head, attn.head_dim, cap)
    return [
        Graph("full", TransformerModernFull(model), [TOKENS], [_logits(model.vocab_size)]),
        Graph(
            "step",
            TransformerModernStep(model, cap),
            [STEP_TOKENS, POSITION, *cache],
            [
                _step_logits(model.vocab_size),
                Tensor("new_keys", cache[0].shape, "float32"),
                Tensor("new_values", cache[1].shape, "float32"),
            ],
            {
                "position": "the token's position, 0 for the first; feed position + 1 and the returned caches next",
                "capacity": cap,
            },
        ),
    ]


# ------------------------------------------------------------------------------------ LSTM, MLP


class LSTMFull(nn.Layer):
    """The LSTM stack through Paddle's ``nn.LSTM`` (its ``fused_ops=False`` form)."""

    def __init__(self, model: LSTM):
        super().__init__()
        self.model = model

    def forward(self, tokens):
        h = self.model.embedding(tokens)
        for layer in self.model.lstm_layers:
            h, _ = layer(h)
        return self.model.head(h)


class MLPFull(nn.Layer):
    """``MLP.forward`` with the window's zero padding and slices sized in the graph."""

    def __init__(self, model: MLP):
        super().__init__()
        self.model = model

    def forward(self, tokens):
        m = self.model
        e = m.embedding(tokens)  # [B, T, E]
        T = paddle.shape(tokens)[1]
        if m.window > 1:
            pad = paddle.zeros([paddle.shape(tokens)[0], m.window - 1, m.embed_dim], dtype="float32")
            e = paddle.concat([pad, e], axis=1)
        windows = paddle.concat([e[:, i : i + T] for i in range(m.window)], axis=-1)
        return m.head(m.act(m.hidden(windows)))


class LSTMStep(nn.Layer):
    """``LSTM.step`` with every layer's ``(h, c)`` in one ``[B, 2 * sum(hidden_sizes)]`` tensor
    (layer by layer, h then c), so a server carries one state whatever the stack."""

    def __init__(self, model: LSTM):
        super().__init__()
        self.model = model

    def forward(self, tokens, state):
        m = self.model
        h = m.embedding(tokens.unsqueeze(1))  # [B, 1, C]
        new, start = [], 0
        for layer, size in zip(m.lstm_layers, m.hidden_sizes):
            h0 = state[:, start : start + size].unsqueeze(0)
            c0 = state[:, start + size : start + 2 * size].unsqueeze(0)
            h, (h1, c1) = layer(h, (h0, c0))
            new += [h1[0], c1[0]]
            start += 2 * size
        return m.head(h)[:, 0], paddle.concat(new, axis=1)


def _lstm_graphs(model: LSTM, cache_len: int | None) -> list[Graph]:
    state = Tensor("state", ["batch", 2 * sum(model.hidden_sizes)], "float32")
    return [
        Graph("full", LSTMFull(model), [TOKENS], [_logits(model.vocab_size)]),
        Graph(
            "step",
            LSTMStep(model),
            [STEP_TOKENS, state],
            [_step_logits(model.vocab_size), Tensor("new_state", state.shape, "float32")],
            {"state": "per layer, bottom to top: h then c, hidden_sizes floats each"},
        ),
    ]


def _mlp_graphs(model: MLP, cache_len: int | None) -> list[Graph]:
    window = Tensor("window", ["batch", model.window, model.embed_dim], "float32")
    return [
        Graph("full", MLPFull(model), [TOKENS], [_logits(model.vocab_size)]),
        Graph(
            "step",
            StepMethod(model, "step"),
            [STEP_TOKENS, window],
            [_step_logits(model.vocab_size), Tensor("new_window", window.shape, "float32")],
        ),
    ]


#: Each built-in model class -> the graphs it exports. A plugin model has none (yet).
BUILDERS = {
    RWKV7: _rwkv7_graphs,
    Transformer: _transformer_graphs,
    TransformerModern: _modern_graphs,
    LSTM: _lstm_graphs,
    MLP: _mlp_graphs,
}


def graphs_of(model, cache_len: int | None = None) -> list[Graph] | None:
    """The exportable graphs of ``model`` (``full`` first), or None for a model seqlab cannot export."""
    builder = BUILDERS.get(type(model))
    return None if builder is None else builder(model, cache_len)
