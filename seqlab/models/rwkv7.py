"""RWKV-7 "Goose" (x070), exactly the seed notebook's 2-layer, 32-wide model (30,732 parameters).

An RNN that trains in parallel: each head keeps an N x N state matrix S that every token updates
with a data-dependent decay and a rank-1 "delta rule" correction (see ``seqlab.ops.wkv7``)::

    S_t = S_{t-1} diag(w_t) + (S_{t-1} a_t) b_t^T + v_t k_t^T,    y_t = S_t r_t

Layout, top to bottom (B batch, T time, C = n_embd, H heads of N = head_size channels)::

    tokens [B,T] -> emb -> n_layer x Block -> ln_out -> head -> logits [B,T,V]
    Block:  x = x + TimeMix(ln1(x), v_first);  x = x + ChannelMix(ln2(x))

Architecture and initialisation are the seed's, so a run of this model is a run of the seed's
model. The seed follows BlinkDL's ``rwkv7_train_simplified.py`` only approximately: its FFN key
init and its embedding and head inits differ from that file (the seed keeps Paddle's default
init for the embedding and the head, and draws the FFN key from N(0, 0.1)). seqlab follows the
seed.

The maths has one home: every element-wise formula is a function of ``seqlab.ops.fused`` (a C++
op with its Paddle form beside it) and the recurrence is ``seqlab.ops.wkv7``. This file only
wires them up, on one of two explicit paths with the same parameters:

* ``fused_ops=True`` (default): the C++ forms, on ``[B*T, C]`` rows, each with a hand-written
  backward; much faster per training step on CPU (the ``rwkv7 [unfused]`` row of
  ``benchmarks/RESULTS.md``, "Model training steps"). RNN mode runs the
  whole model's step in one C++ op (``seqlab.ops.fused.rwkv7_step``) when gradients are off.
  Off CPU, or when the C++ build fails, every op falls back to its Paddle form.
* ``fused_ops=False``: the Paddle forms (``use_cpp=False``), in the same order. The RNN step
  runs them on one token with the one-step recurrence ``seqlab.ops.wkv7.wkv7_step``, the loop
  body of the reference recurrence.

tests/test_rwkv7_fast.py checks the two paths agree (logits 1e-6, all gradients 1e-5) and that
both RNN steps match the forward.
"""

from __future__ import annotations

import numpy as np
import paddle

from seqlab.model import Model
from seqlab.ops import fused, wkv7, wkv7_step

nn = paddle.nn
F = paddle.nn.functional


def ortho_init(shape: tuple[int, int], scale: float):
    """Orthogonal ``[rows, cols]`` matrix times ``scale`` (the seed's numpy QR with sign fix).

    The seed draws the Gaussian from numpy's global RNG. Here it comes from Paddle's generator, so
    ``paddle.seed(s)`` alone makes the whole model's initialisation reproducible; the
    distribution (a Haar-random orthogonal matrix) is the same.
    """
    rows, cols = shape
    a = paddle.randn([rows, cols], dtype="float32").numpy().astype(np.float64)
    if rows < cols:
        a = a.T
    q, r = np.linalg.qr(a)
    q = q * np.sign(np.diag(r))  # make the factorisation unique, hence the distribution uniform
    if rows < cols:
        q = q.T
    return (q[:rows, :cols] * scale).astype("float32")


def _param(layer, value):
    """A trainable parameter holding ``value`` (numpy array), created on ``layer``."""
    value = np.asarray(value, dtype="float32")
    return layer.create_parameter(shape=list(value.shape), default_initializer=nn.initializer.Assign(value))


# ----------------------------------------------------------------------------------------------
# Time mixing: the attention replacement.


class TimeMix(nn.Layer):
    """RWKV-7 time mixing (the seed's ``RWKV_Tmix_x070``)."""

    def __init__(
        self, n_embd, n_layer, layer_id, head_size, rank_w, rank_a, rank_v, rank_g, wkv_backend=None, fused_ops=True
    ):
        super().__init__()
        C, N = n_embd, head_size
        H = C // N
        self.layer_id, self.n_head, self.head_size = layer_id, H, N
        self.wkv_backend = wkv_backend
        self.use_cpp = None if fused_ops else False  # None: the C++ form where it can run

        # Depth ratios: deeper layers start with more weight on the current token and slower decay.
        ratio_0_to_1 = layer_id / (n_layer - 1) if n_layer > 1 else 0.0  # guard n_layer = 1
        ratio_1_to_almost0 = 1.0 - layer_id / n_layer
        ddd = np.arange(C, dtype=np.float64) / C  # channel position in [0, 1)

        # Token-shift mixes: 1 is "all previous token", 0 "all current token". Channel 0 of layer 0
        # starts at 1, and later channels and deeper layers lean toward the current token.
        def mix(power):
            return _param(self, (1.0 - np.power(ddd, power * ratio_1_to_almost0)).reshape(1, 1, C))

        self.x_r, self.x_w, self.x_k = mix(0.2), mix(0.9), mix(0.7)
        self.x_v, self.x_a, self.x_g = mix(0.7), mix(0.9), mix(0.2)

        n = np.arange(C, dtype=np.float64)
        linear = n / (C - 1) - 0.5  # -0.5 .. 0.5 across channels
        zigzag = ((n % N) - (N - 1) / 2) / ((N - 1) / 2)  # -1 .. 1 within each head
        zigzag = zigzag * np.abs(zigzag)
        www = -6 + 6 * (n / (C - 1)) ** (1 + 1 * ratio_0_to_1**0.3)  # decay spread over channels

        # Data-dependent decay w, in-context learning rate a, value residual v, output gate g:
        # each a bias (x0) plus a rank-r LoRA (x1 zero, so it starts as the bias alone).
        self.w1 = _param(self, np.zeros((C, rank_w)))
        self.w2 = _param(self, ortho_init((rank_w, C), 0.1))
        self.w0 = _param(self, (www + 0.5 + zigzag * 2.5).reshape(1, 1, C))
        self.a1 = _param(self, np.zeros((C, rank_a)))
        self.a2 = _param(self, ortho_init((rank_a, C), 0.1))
        self.a0 = _param(self, (-0.19 + zigzag * 0.3 + linear * 0.4).reshape(1, 1, C))
        # Layer 0 owns v0/v1/v2 too (unused, as in the seed, which counts them in 30,732).
        self.v1 = _param(self, np.zeros((C, rank_v)))
        self.v2 = _param(self, ortho_init((rank_v, C), 0.1))
        self.v0 = _param(self, (0.73 - linear * 0.4).reshape(1, 1, C))
        self.g1 = _param(self, np.zeros((C, rank_g)))
        self.g2 = _param(self, ortho_init((rank_g, C), 0.1))
        self.k_k = _param(self, (0.71 - linear * 0.1).reshape(1, 1, C))  # key scale before normalising
        self.k_a = _param(self, np.full((1, 1, C), 1.02))  # how much a rescales the key
        self.r_k = _param(self, np.full((H, N), -0.04))  # per-channel "bonus" for the current token

        self.receptance = nn.Linear(C, C, bias_attr=False)
        self.key = nn.Linear(C, C, bias_attr=False)
        self.value = nn.Linear(C, C, bias_attr=False)
        self.output = nn.Linear(C, C, bias_attr=False)
        self.ln_x = nn.GroupNorm(H, C, epsilon=64e-5)  # per-head norm of the WKV output
        nn.initializer.Uniform(-0.5 / C**0.5, 0.5 / C**0.5)(self.receptance.weight)
        nn.initializer.Uniform(-0.05 / C**0.5, 0.05 / C**0.5)(self.key.weight)
        nn.initializer.Uniform(-0.5 / C**0.5, 0.5 / C**0.5)(self.value.weight)
        nn.initializer.Constant(0.0)(self.output.weight)  # each block starts as the identity

    def _vectors(self, x, prev, v_first, use_cpp):
        """The per-token vectors of the recurrence, as ``[B*T, C]`` rows.

        ``x`` ``[B, T, C]`` normalised input; ``prev`` ``[B, C]`` the input before ``x[:, 0]``
        (RNN mode) or None (a sequence start). Returns ``(r, decay, k, v, a, b, g, v_first)``,
        where ``a = -kk`` and ``b = kk * iclr`` are the delta rule's vectors. Matmuls run on 2-D
        rows: a 3-D ``x @ W`` reduces its weight gradient over a broadcast batch axis, slowly.
        """
        B, T, C = x.shape
        mixes = (self.x_r, self.x_w, self.x_k, self.x_v, self.x_a, self.x_g)
        xr, xw, xk, xv, xa, xg = (t.reshape([B * T, C]) for t in fused.token_shift_mix6(x, mixes, use_cpp, prev=prev))

        def mm(t, w):  # t @ w (nn.Linear keeps its weight as [in, out])
            return fused.linear(t, w, use_cpp)

        r = mm(xr, self.receptance.weight)
        k = mm(xk, self.key.weight)
        v = mm(xv, self.value.weight)
        if self.layer_id == 0:
            v_first = v
        else:  # value residual: later layers blend toward layer 0's value, per channel
            v = fused.rwkv7_vres(v, v_first, mm(mm(xv, self.v1), self.v2), self.v0, use_cpp)
        wl = mm(paddle.tanh(mm(xw, self.w1)), self.w2)  # decay LoRA
        al = mm(mm(xa, self.a1), self.a2)  # in-context learning rate LoRA
        g = mm(F.sigmoid(mm(xg, self.g1)), self.g2)  # output gate
        decay, k, a, b = fused.rwkv7_tmix_pre(k, wl, al, self.w0, self.a0, self.k_k, self.k_a, self.head_size, use_cpp)
        return r, decay, k, v, a, b, g, v_first

    def _output(self, y, r, k, v, g, use_cpp):
        """GroupNorm of the WKV output, current-token bonus, gate, output projection (rows)."""
        z = fused.rwkv7_tmix_post(
            y, r, k, v, g, self.r_k, self.ln_x.weight, self.ln_x.bias, self.head_size, self.ln_x._epsilon, use_cpp
        )
        return fused.linear(z, self.output.weight, use_cpp)

    def forward(self, x, v_first):
        """``x``: ``[B, T, C]`` normalised input. Returns (out ``[B, T, C]``, v_first rows)."""
        B, T, C = x.shape
        H, N = self.n_head, self.head_size
        r, decay, k, v, a, b, g, v_first = self._vectors(x, None, v_first, self.use_cpp)
        heads = [t.reshape([B, T, H, N]) for t in (decay, r, k, v, a, b)]
        y = wkv7(*heads, backend=self.wkv_backend).reshape([B * T, C])
        return self._output(y, r, k, v, g, self.use_cpp).reshape([B, T, C]), v_first

    def step(self, x, prev, v_first, wkv_state):
        """One token, Paddle forms: ``x``, ``prev`` ``[B, C]``, ``wkv_state`` ``[B, H, N, N]``.

        Returns ``(out [B, C], v_first, new wkv_state)``.
        """
        B, C = x.shape
        H, N = self.n_head, self.head_size
        r, decay, k, v, a, b, g, v_first = self._vectors(x.unsqueeze(1), prev, v_first, False)
        y, wkv_state = wkv7_step(wkv_state, *(t.reshape([B, H, N]) for t in (decay, r, k, v, a, b)))
        return self._output(y.reshape([B, C]), r, k, v, g, False), v_first, wkv_state


# ----------------------------------------------------------------------------------------------
# Channel mixing: the FFN.


class ChannelMix(nn.Layer):
    """RWKV FFN: token shift, C -> 4C, squared ReLU, 4C -> C; no biases (the seed's ``FFN``)."""

    def __init__(self, n_embd: int, fused_ops: bool = True):
        super().__init__()
        C = n_embd
        self.use_cpp = None if fused_ops else False
        self.x_k = _param(self, np.zeros((1, 1, C)))  # starts with the current token only
        self.key = nn.Linear(C, 4 * C, bias_attr=False)
        self.value = nn.Linear(4 * C, C, bias_attr=False)
        nn.initializer.Normal(std=0.1)(self.key.weight)
        nn.initializer.Constant(0.0)(self.value.weight)

    def _ffn(self, x, prev, use_cpp):
        B, T, C = x.shape
        xk = fused.token_shift_mix(x, self.x_k.reshape([1, C]), use_cpp, prev=prev)
        h = fused.squared_relu(fused.linear(xk.reshape([B * T, C]), self.key.weight, use_cpp), use_cpp)
        return fused.linear(h, self.value.weight, use_cpp).reshape([B, T, C])

    def forward(self, x):
        """``x`` ``[B, T, C]`` normalised input -> ``[B, T, C]``."""
        return self._ffn(x, None, self.use_cpp)

    def step(self, x, prev):
        """One token, Paddle forms: ``x``, ``prev`` ``[B, C]`` -> ``[B, C]``."""
        return self._ffn(x.unsqueeze(1), prev, False)[:, 0]


class Block(nn.Layer):
    """Pre-norm residual block: TimeMix then ChannelMix, each with its own LayerNorm."""

    def __init__(self, layer_id, n_embd, n_layer, head_size, ranks, wkv_backend, fused_ops=True):
        super().__init__()
        self.use_cpp = None if fused_ops else False
        self.ln1 = nn.LayerNorm(n_embd)  # the seed's ln{i}a
        self.att = TimeMix(n_embd, n_layer, layer_id, head_size, *ranks, wkv_backend=wkv_backend, fused_ops=fused_ops)
        self.ln2 = nn.LayerNorm(n_embd)  # the seed's ln{i}b
        self.ffn = ChannelMix(n_embd, fused_ops=fused_ops)

    def forward(self, x, v_first):
        dx, v_first = self.att(_layer_norm(self.ln1, x, self.use_cpp), v_first)
        x = x + dx
        return x + self.ffn(_layer_norm(self.ln2, x, self.use_cpp)), v_first

    def step(self, x, v_first, att_prev, ffn_prev, wkv_state):
        """One token, Paddle forms: ``x`` ``[B, C]``; the carried inputs and WKV state of this layer.

        Returns ``(x, v_first, (att_prev, ffn_prev, wkv_state))`` for the next token.
        """
        h = _layer_norm(self.ln1, x, False)
        dx, v_first, wkv_state = self.att.step(h, att_prev, v_first, wkv_state)
        x = x + dx
        h2 = _layer_norm(self.ln2, x, False)
        return x + self.ffn.step(h2, ffn_prev), v_first, (h, h2, wkv_state)


def _layer_norm(ln, x, use_cpp):
    """``ln(x)`` for an ``nn.LayerNorm`` over the last axis, through ``seqlab.ops.fused``."""
    return fused.layer_norm(x, ln.weight, ln.bias, ln._epsilon, use_cpp)


# ----------------------------------------------------------------------------------------------


class RWKV7(Model):
    """RWKV-7 "Goose" (x070) RNN with WKV7 state; the seed's 2x32 model, 30,732 params.

    Args:
        vocab_size: Number of token ids (12 for digit reversal: 0-9, ',' and '#').
        n_layer: Number of blocks.
        n_embd: Model width C; a multiple of head_size.
        head_size: Channels per head N; each head keeps an N x N state.
        rank_w: LoRA rank of the data-dependent decay.
        rank_a: LoRA rank of the in-context learning rate.
        rank_v: LoRA rank of the value-residual gate.
        rank_g: LoRA rank of the output gate.
        wkv_backend: WKV7 back end passed to ``seqlab.ops.wkv7`` (None: its default choice).
        fused_ops: Run through the fused C++ ops of ``seqlab.ops.fused`` (same maths, ~1e-7
            apart in float32; they fall back to their Paddle forms on GPU or when they cannot be
            built), and RNN ``step()`` through its one-op C++ form when gradients are off.
            False: the Paddle forms everywhere.
    """

    documented_params: int = 30_732

    def __init__(
        self,
        vocab_size: int = 12,
        n_layer: int = 2,
        n_embd: int = 32,
        head_size: int = 16,
        rank_w: int = 8,
        rank_a: int = 8,
        rank_v: int = 8,
        rank_g: int = 8,
        wkv_backend: str | None = None,
        fused_ops: bool = True,
    ):
        super().__init__()
        if n_embd % head_size:
            raise ValueError(f"n_embd ({n_embd}) must be a multiple of head_size ({head_size}).")
        self.vocab_size, self.n_layer, self.n_embd, self.head_size = vocab_size, n_layer, n_embd, head_size
        self.n_head = n_embd // head_size
        self.fused_ops = fused_ops
        self.use_cpp = None if fused_ops else False
        ranks = (rank_w, rank_a, rank_v, rank_g)
        self.emb = nn.Embedding(vocab_size, n_embd)  # Paddle's default init, as in the seed
        self.blocks = nn.LayerList(
            [Block(i, n_embd, n_layer, head_size, ranks, wkv_backend, fused_ops) for i in range(n_layer)]
        )
        self.ln_out = nn.LayerNorm(n_embd)
        self.head = nn.Linear(n_embd, vocab_size)  # with bias, as in the seed
        self._fused_step_args = None  # see step()
        # param_groups(): the base class's rule (decay on Linear/Embedding weights) is exactly the
        # seed's name rule here; tests/test_models.py checks the two sets agree.

    def forward(self, tokens):
        x = self.emb(tokens)  # [B, T, C]
        v_first = None  # layer 0's values, shared with later layers (value residual)
        for block in self.blocks:
            x, v_first = block(x, v_first)
        B, T, C = x.shape
        # The head on 2-D rows: its weight gradient is one GEMM, not a batched reduce.
        return self.head(_layer_norm(self.ln_out, x, self.use_cpp).reshape([B * T, C])).reshape([B, T, -1])

    # -- RNN mode ---------------------------------------------------------------------------------
    #
    # The state is one tensor [B, n_layer, 2C + H*N*N]: per layer the TimeMix and FFN inputs of
    # the previous token (C each, for the token shift), then the H x N x N WKV state (value x
    # key). One tensor, so that the fused step passes it to its C++ op as is.

    def init_state(self, batch_size: int):
        """The state before the first token: all zeros, ``[batch_size, n_layer, 2C + H*N*N]``."""
        return paddle.zeros([batch_size, self.n_layer, self._layer_state_size()])

    def _layer_state_size(self) -> int:
        return 2 * self.n_embd + self.n_head * self.head_size**2

    def step(self, tokens, state):
        """One token per sequence: ``tokens`` int64 ``[B]`` -> (logits ``[B, V]``, new state).

        The old state is left unchanged. With ``fused_ops`` and gradients off (inference), on
        CPU, the whole step is one C++ op; otherwise :meth:`step_plain`.
        """
        if self.fused_ops and not paddle.is_grad_enabled() and fused.rwkv7_step_available(state):
            if self._fused_step_args is None:
                # Cached: collecting the parameters on every token took longer than the op
                # itself at the seed's size. It stays valid because set_state_dict(),
                # set_value() and the optimizers update these parameter objects in place.
                self._fused_step_args = (
                    self.step_params(),
                    self.n_layer,
                    self.head_size,
                    self.ln_out._epsilon,
                    self.blocks[0].att.ln_x._epsilon,
                )
            return fused.rwkv7_step(tokens, state, *self._fused_step_args)
        return self.step_plain(tokens, state)

    def step_plain(self, tokens, state):
        """:meth:`step` in Paddle forms (differentiable), the oracle of the fused step."""
        B, C = tokens.shape[0], self.n_embd
        H, N = self.n_head, self.head_size
        x = self.emb(tokens.reshape([B]))  # [B, C]
        v_first, layers = None, []
        for i, block in enumerate(self.blocks):
            s = state[:, i]
            wkv = s[:, 2 * C :].reshape([B, H, N, N])
            x, v_first, (att_prev, ffn_prev, wkv) = block.step(x, v_first, s[:, :C], s[:, C : 2 * C], wkv)
            layers.append(paddle.concat([att_prev, ffn_prev, wkv.reshape([B, H * N * N])], axis=1))
        logits = self.head(_layer_norm(self.ln_out, x, False))
        return logits, paddle.stack(layers, axis=1)

    def step_params(self) -> list:
        """The parameters in the order the fused step op reads them (``csrc/fused_cpu.cc``):
        emb, ln_out weight and bias, head weight and bias, then per layer: ln1 weight, bias; the
        six mixes x_r x_w x_k x_v x_a x_g; w0 w1 w2, a0 a1 a2, v0 v1 v2, g1 g2; k_k k_a r_k;
        receptance, key, value, output weights; ln_x weight, bias; ln2 weight, bias; the FFN's
        x_k, key and value weights."""
        params = [self.emb.weight, self.ln_out.weight, self.ln_out.bias, self.head.weight, self.head.bias]
        for block in self.blocks:
            att, ffn = block.att, block.ffn
            params += [
                block.ln1.weight, block.ln1.bias,
                att.x_r, att.x_w, att.x_k, att.x_v, att.x_a, att.x_g,
                att.w0, att.w1, att.w2, att.a0, att.a1, att.a2, att.v0, att.v1, att.v2, att.g1, att.g2,
                att.k_k, att.k_a, att.r_k,
                att.receptance.weight, att.key.weight, att.value.weight, att.output.weight,
                att.ln_x.weight, att.ln_x.bias,
                block.ln2.weight, block.ln2.bias,
                ffn.x_k, ffn.key.weight, ffn.value.weight,
            ]  # fmt: skip
        return params

    def state_size(self, seq_len: int) -> int:
        # Per layer: the two token-shift vectors (C each) and the H x N x N WKV state: what
        # init_state() holds per sequence, independent of seq_len.
        return self.n_layer * self._layer_state_size()


# Parameter names of the seed notebook's MODEL (n_layer = 2), e.g. to load its checkpoints.
def seed_param_name(name: str) -> str:
    """Map a parameter name of :class:`RWKV7` to the seed's (``blocks.0.att.key.weight`` ->
    ``rwkv1.key.weight``, ``emb.weight`` -> ``e.weight``). Shapes are the same."""
    head, _, rest = name.partition(".")
    if head != "blocks":
        return {"emb": "e", "ln_out": "lno", "head": "o"}[head] + "." + rest
    i, sub, rest = rest.split(".", 2)
    n = int(i) + 1
    return {"ln1": f"ln{n}a", "ln2": f"ln{n}b", "att": f"rwkv{n}", "ffn": f"ffn{n}"}[sub] + "." + rest
