"""RWKV-7 "Goose" (x070), exactly the seed notebook's 2-layer, 32-wide model (30,732 parameters).

An RNN that trains in parallel: each head keeps an N x N state matrix S that every token updates
with a data-dependent decay and a rank-1 "delta rule" correction (see ``seqlab.ops.wkv7``)::

    S_t = S_{t-1} diag(w_t) + (S_{t-1} a_t) b_t^T + v_t k_t^T,    y_t = S_t r_t

Layout, top to bottom (B batch, T time, C = n_embd, H heads of N = head_size channels)::

    tokens [B,T] -> emb -> n_layer x Block -> ln_out -> head -> logits [B,T,V]
    Block:  x = x + TimeMix(ln1(x), v_first);  x = x + ChannelMix(ln2(x))

Every initialisation follows the seed (which follows BlinkDL's rwkv7_train_simplified.py), so a
run of this model is a run of the seed's model.

Two implementations of the same maths, same parameters:

* ``fused_ops=True`` (default): the training forward runs on ``[B*T, C]`` rows through the C++
  ops of ``seqlab.ops.fused`` (token-shift mixes, decay/key/delta-rule vectors, GroupNorm + bonus
  + gate, value residual, squared ReLU, LayerNorm, small matmuls), each with a hand-written
  backward; ~4x faster per training step on CPU (benchmarks/RESULTS.md). Those ops fall back to
  Paddle formulas on GPU or when the C++ build fails.
* ``fused_ops=False``: the plain Paddle formulas below (``token_shift_mix``, ``squared_relu``,
  ``l2_normalize_heads``, ...). RNN mode (``step()``) always uses these.

tests/test_rwkv7_fast.py checks the two agree (logits 1e-6, all gradients 1e-5).
"""

from __future__ import annotations

import numpy as np

from seqlab._paddle import import_paddle
from seqlab.model import Model
from seqlab.nn import token_shift
from seqlab.ops import wkv7
from seqlab.ops import fused as fused_ops_lib
from seqlab.registry import register_model

paddle = import_paddle()
nn = paddle.nn
F = paddle.nn.functional


# ----------------------------------------------------------------------------------------------
# The plain Paddle path (fused_ops=False, and RNN mode): one helper per element-wise hot spot,
# each replaced by one C++ op of seqlab.ops.fused in the fused path.


def token_shift_mix(x, xx, mixes):
    """``[x + xx * m for m in mixes]``: interpolate each channel between this and the last token.

    Args:
        x: ``[B, T, C]`` current tokens.
        xx: ``[B, T, C]`` previous token minus current token.
        mixes: ``[1, 1, C]`` parameters, one per projection (6 in TimeMix, 1 in the FFN).

    Returns one ``[B, T, C]`` tensor per mix. (Stacking the six mixes into one broadcast op
    measured no faster here; a fused op belongs in this function.)
    """
    return [x + xx * m for m in mixes]


def squared_relu(x):
    """``relu(x) ** 2``, written as a product: ``pow`` is ~50 ms slower per FFN on CPU."""
    x = F.relu(x)
    return x * x


def l2_normalize_heads(x, n_head: int, eps: float = 1e-12):
    """``x / max(||x||_2, eps)`` over each head's channels; ``x`` ``[B, T, C]`` -> ``[B, T, C]``.

    The seed's ``F.normalize(..., p=2, epsilon=1e-12)``, spelled out because ``F.normalize``'s
    backward costs ~41 ms per layer on CPU; the values agree to float32 rounding.
    """
    B, T, C = x.shape
    xh = x.reshape([B, T, n_head, C // n_head])
    norm = paddle.sqrt((xh * xh).sum(axis=-1, keepdim=True))
    return (xh / paddle.clip(norm, min=eps)).reshape([B, T, C])


def _layer_norm(ln, x):
    """``ln(x)`` for an ``nn.LayerNorm`` over the last axis, through the fused C++ op."""
    return fused_ops_lib.layer_norm(x, ln.weight, ln.bias, ln._epsilon)


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
    return layer.create_parameter(
        shape=list(value.shape), default_initializer=nn.initializer.Assign(value)
    )


# ----------------------------------------------------------------------------------------------
# The WKV7 recurrence for one token (RNN mode); the sequence form is seqlab.ops.wkv7.


def wkv7_one_step(state, w, q, k, v, a, b):
    """One step of the recurrence; inputs ``[B, H, N]``, ``state`` ``[B, H, N, N]`` (value x key).

    Returns ``(y [B, H, N], new_state)`` with the same maths as ``seqlab.ops.wkv7``.
    """
    sa = (state * a.unsqueeze(2)).sum(axis=-1, keepdim=True)  # [B,H,N,1] = S a
    state = state * w.unsqueeze(2) + sa * b.unsqueeze(2) + v.unsqueeze(3) * k.unsqueeze(2)
    y = (state * q.unsqueeze(2)).sum(axis=-1)  # [B,H,N] = S q
    return y, state


# ----------------------------------------------------------------------------------------------
# Time mixing: the attention replacement.


class TimeMix(nn.Layer):
    """RWKV-7 time mixing (the seed's ``RWKV_Tmix_x070``)."""

    def __init__(self, n_embd, n_layer, layer_id, head_size, rank_w, rank_a, rank_v, rank_g,
                 wkv_backend=None, fused_ops=True):
        super().__init__()
        C, N = n_embd, head_size
        H = C // N
        self.layer_id, self.n_head, self.head_size = layer_id, H, N
        self.wkv_backend = wkv_backend
        self.fused_ops = fused_ops

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

    def _inputs(self, x, xx, v_first):
        """r, decay, k, v, kk, a, g from ``x`` and ``xx`` (both ``[..., C]``); sets v_first in layer 0."""
        mixes = (self.x_r, self.x_w, self.x_k, self.x_v, self.x_a, self.x_g)
        xr, xw, xk, xv, xa, xg = token_shift_mix(x, xx, mixes)
        r = self.receptance(xr)
        # log(-log(decay)), soft-clamped to <= -0.5, so decay = exp(-exp(w)) lies in [0.545, 1).
        w = -F.softplus(-(self.w0 + paddle.tanh(xw @ self.w1) @ self.w2)) - 0.5
        k = self.key(xk)
        v = self.value(xv)
        if self.layer_id == 0:
            v_first = v
        else:  # value residual: later layers blend toward layer 0's value, per channel
            v = v + (v_first - v) * F.sigmoid(self.v0 + (xv @ self.v1) @ self.v2)
        a = F.sigmoid(self.a0 + (xa @ self.a1) @ self.a2)  # in-context learning rate in (0, 1)
        g = F.sigmoid(xg @ self.g1) @ self.g2
        kk = k * self.k_k  # normalised per head below: the delta rule's removal direction
        k = k * (1 + (a - 1) * self.k_a)
        return r, paddle.exp(-paddle.exp(w)), k, v, kk, a, g, v_first

    def _output(self, y, r, k, v, g):
        """GroupNorm, current-token bonus, gate and output projection; all ``[B, T, C]``."""
        B, T, C = y.shape
        H, N = self.n_head, self.head_size
        y = self.ln_x(y.reshape([B * T, C])).reshape([B, T, C])
        rh, kh, vh = (t.reshape([B, T, H, N]) for t in (r, k, v))
        bonus = ((rh * kh * self.r_k).sum(axis=-1, keepdim=True) * vh).reshape([B, T, C])
        return self.output((y + bonus) * g)

    def forward(self, x, xx, v_first):
        """``x``: ``[B, T, C]`` normalised input, ``xx``: shifted minus current. Returns (out, v_first).

        With ``fused_ops`` (the default) ``xx`` may be None: the fused path shifts ``x`` itself.
        """
        if self.fused_ops:
            return self._forward_fused(x, v_first)
        if xx is None:
            xx = token_shift(x) - x
        B, T, C = x.shape
        H, N = self.n_head, self.head_size
        r, decay, k, v, kk, a, g, v_first = self._inputs(x, xx, v_first)
        kk = l2_normalize_heads(kk, H)
        heads = [t.reshape([B, T, H, N]) for t in (decay, r, k, v, -kk, kk * a)]
        y = wkv7(*heads, backend=self.wkv_backend).reshape([B, T, C])
        return self._output(y, r, k, v, g), v_first

    def _forward_fused(self, x, v_first):
        """The same maths as the Paddle path, in fused ops on ``[B*T, C]`` rows (see module docs).

        Matmuls run on 2-D ``[B*T, C]`` views (a 3-D ``x @ W`` reduces its weight gradient over a
        broadcast batch axis, slowly on CPU). The element-wise work between them is three C++ ops
        (``seqlab.ops.fused``): token-shift mixes, decay/key/delta-rule vectors, and GroupNorm +
        bonus + gate; their parameter gradients are row reductions inside the ops.
        """
        B, T, C = x.shape
        H, N = self.n_head, self.head_size
        mixes = (self.x_r, self.x_w, self.x_k, self.x_v, self.x_a, self.x_g)
        xr, xw, xk, xv, xa, xg = (t.reshape([B * T, C]) for t in fused_ops_lib.token_shift_mix6(x, mixes))
        mm = fused_ops_lib.linear  # x @ W (nn.Linear keeps W as [in, out])
        r = mm(xr, self.receptance.weight)
        k = mm(xk, self.key.weight)
        v = mm(xv, self.value.weight)
        if self.layer_id == 0:
            v_first = v
        else:
            v = fused_ops_lib.rwkv7_vres(v, v_first, mm(mm(xv, self.v1), self.v2), self.v0)
        wl = mm(paddle.tanh(mm(xw, self.w1)), self.w2)
        al = mm(mm(xa, self.a1), self.a2)
        g = mm(F.sigmoid(mm(xg, self.g1)), self.g2)
        decay, k, wa, wb = fused_ops_lib.rwkv7_tmix_pre(k, wl, al, self.w0, self.a0, self.k_k, self.k_a, N)
        heads = [t.reshape([B, T, H, N]) for t in (decay, r, k, v, wa, wb)]
        y = wkv7(*heads, backend=self.wkv_backend).reshape([B * T, C])
        z = fused_ops_lib.rwkv7_tmix_post(y, r, k, v, g, self.r_k, self.ln_x.weight, self.ln_x.bias, N,
                                          self.ln_x._epsilon)
        return mm(z, self.output.weight).reshape([B, T, C]), v_first

    def step(self, x, xx, v_first, state):
        """One token: ``x``, ``xx`` ``[B, 1, C]``, ``state`` ``[B, H, N, N]``. Returns (out, v_first, state)."""
        B, _, C = x.shape
        H, N = self.n_head, self.head_size
        r, decay, k, v, kk, a, g, v_first = self._inputs(x, xx, v_first)
        kk = l2_normalize_heads(kk, H)
        heads = [t.reshape([B, H, N]) for t in (decay, r, k, v, -kk, kk * a)]
        y, state = wkv7_one_step(state, *heads)
        return self._output(y.reshape([B, 1, C]), r, k, v, g), v_first, state


# ----------------------------------------------------------------------------------------------
# Channel mixing: the FFN.


class ChannelMix(nn.Layer):
    """RWKV FFN: token shift, C -> 4C, squared ReLU, 4C -> C; no biases (the seed's ``FFN``)."""

    def __init__(self, n_embd: int, fused_ops: bool = True):
        super().__init__()
        C = n_embd
        self.fused_ops = fused_ops
        self.x_k = _param(self, np.zeros((1, 1, C)))  # starts with the current token only
        self.key = nn.Linear(C, 4 * C, bias_attr=False)
        self.value = nn.Linear(4 * C, C, bias_attr=False)
        nn.initializer.Normal(std=0.1)(self.key.weight)
        nn.initializer.Constant(0.0)(self.value.weight)

    def forward(self, x, xx):
        """``xx`` = shifted minus current; with ``fused_ops`` it may be None (shifted inside)."""
        if self.fused_ops and xx is None:
            B, T, C = x.shape
            xk = fused_ops_lib.token_shift_mix(x, self.x_k.reshape([1, C])).reshape([B * T, C])
            h = fused_ops_lib.squared_relu(fused_ops_lib.linear(xk, self.key.weight))
            return fused_ops_lib.linear(h, self.value.weight).reshape([B, T, C])
        if xx is None:
            xx = token_shift(x) - x
        (xk,) = token_shift_mix(x, xx, [self.x_k])
        return self.value(squared_relu(self.key(xk)))


class Block(nn.Layer):
    """Pre-norm residual block: TimeMix then ChannelMix, each with its own LayerNorm."""

    def __init__(self, layer_id, n_embd, n_layer, head_size, ranks, wkv_backend, fused_ops=True):
        super().__init__()
        self.fused_ops = fused_ops
        self.ln1 = nn.LayerNorm(n_embd)  # the seed's ln{i}a
        self.att = TimeMix(n_embd, n_layer, layer_id, head_size, *ranks, wkv_backend=wkv_backend,
                           fused_ops=fused_ops)
        self.ln2 = nn.LayerNorm(n_embd)  # the seed's ln{i}b
        self.ffn = ChannelMix(n_embd, fused_ops=fused_ops)

    def forward(self, x, v_first):
        if self.fused_ops:  # the token shift happens inside the fused ops
            dx, v_first = self.att(_layer_norm(self.ln1, x), None, v_first)
            x = x + dx
            return x + self.ffn(_layer_norm(self.ln2, x), None), v_first
        h = self.ln1(x)
        dx, v_first = self.att(h, token_shift(h) - h, v_first)
        x = x + dx
        h = self.ln2(x)
        return x + self.ffn(h, token_shift(h) - h), v_first

    def step(self, x, v_first, state):
        """``x`` ``[B, 1, C]``; ``state`` = (att_prev [B,C], wkv [B,H,N,N], ffn_prev [B,C])."""
        att_prev, wkv_state, ffn_prev = state
        h = self.ln1(x)
        dx, v_first, wkv_state = self.att.step(h, att_prev.unsqueeze(1) - h, v_first, wkv_state)
        x = x + dx
        h2 = self.ln2(x)
        x = x + self.ffn(h2, ffn_prev.unsqueeze(1) - h2)
        return x, v_first, (h[:, 0], wkv_state, h2[:, 0])


# ----------------------------------------------------------------------------------------------


@register_model("rwkv7")
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
        fused_ops: Run the training forward through the fused C++ ops of ``seqlab.ops.fused``
            (same maths, ~1e-7 apart in float32; they fall back to Paddle formulas on GPU or when
            they cannot be built). False: the plain Paddle formulas. RNN ``step()`` always uses
            the Paddle formulas.
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
        ranks = (rank_w, rank_a, rank_v, rank_g)
        self.emb = nn.Embedding(vocab_size, n_embd)  # Paddle's default init, as in the seed
        self.blocks = nn.LayerList(
            [Block(i, n_embd, n_layer, head_size, ranks, wkv_backend, fused_ops) for i in range(n_layer)]
        )
        self.ln_out = nn.LayerNorm(n_embd)
        self.head = nn.Linear(n_embd, vocab_size)  # with bias, as in the seed
        # param_groups(): the base class's rule (decay on Linear/Embedding weights) is exactly the
        # seed's name rule here; tests/test_models.py checks the two sets agree.

    def forward(self, tokens):
        x = self.emb(tokens)  # [B, T, C]
        v_first = None  # layer 0's values, shared with later layers (value residual)
        for block in self.blocks:
            x, v_first = block(x, v_first)
        if self.fused_ops:  # a 2-D matmul: its weight gradient is one GEMM, not a batched reduce
            B, T, C = x.shape
            return self.head(_layer_norm(self.ln_out, x).reshape([B * T, C])).reshape([B, T, -1])
        return self.head(self.ln_out(x))  # [B, T, V]

    # -- RNN mode ---------------------------------------------------------------------------------

    def init_state(self, batch_size: int):
        """Zero state: per layer (att token shift [B,C], WKV state [B,H,N,N], ffn token shift [B,C])."""
        C, H, N = self.n_embd, self.n_head, self.head_size
        return [
            (paddle.zeros([batch_size, C]), paddle.zeros([batch_size, H, N, N]), paddle.zeros([batch_size, C]))
            for _ in range(self.n_layer)
        ]

    def step(self, tokens, state):
        """One token per sequence: ``tokens`` int64 ``[B]`` -> (logits ``[B, V]``, new state)."""
        x = self.emb(tokens.reshape([-1, 1]))  # [B, 1, C]
        v_first, new_state = None, []
        for block, layer_state in zip(self.blocks, state):
            x, v_first, layer_state = block.step(x, v_first, layer_state)
            new_state.append(layer_state)
        return self.head(self.ln_out(x))[:, 0], new_state

    def state_size(self, seq_len: int) -> int:
        # Per layer: the H x N x N WKV state plus the two token-shift vectors (TimeMix's and the
        # FFN's previous normalised input, C each). Independent of seq_len.
        return self.n_layer * (self.n_head * self.head_size**2 + 2 * self.n_embd)


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
