"""Fused CPU ops for the RWKV-7 block, each with an exact hand-written backward.

Why: on CPU, Paddle's eager formulas for these run several kernels each and some of their
gradients are slow: the ``[1,1,C]`` broadcast-multiply gradients of the token-shift mixes,
``pow(relu(x), 2)`` and ``F.normalize``'s backward (timed against the fused ops in
``benchmarks/RESULTS.md``, "Fused RWKV-7 block ops" and "RWKV-7 step: profile and fixes"). The
C++ kernels live in ``csrc/fused_cpu.cc`` and are built into the same extension as the WKV7 op
(one JIT build, one load per process).

Each function uses the C++ op for CPU tensors and the plain Paddle formula otherwise (GPU
tensors, ``use_cpp=False``, ``SEQLAB_FUSED=paddle``, or when the op cannot be built: then ONE
warning per process). Results match the Paddle formulas to float rounding (tests: 1e-6).

* ``token_shift_mix(x [B,T,C], mixes [K,C]) -> [K,B,T,C]``:
  ``out[i] = x + (shift(x) - x) * mixes[i]``, ``shift(x)[:, t] = x[:, t-1]``, zero at t = 0.
* ``squared_relu(x) = relu(x) ** 2``.
* ``l2_normalize(x, axis=-1, eps=1e-12)`` = ``paddle.nn.functional.normalize(x, 2, axis, eps)``
  (the C++ op handles the last axis; other axes use the Paddle formula).

The RWKV-7 TimeMix layer's element-wise work between its matmuls (used by ``RWKV7`` with
``fused_ops=True``; ``benchmarks/RESULTS.md``, "RWKV-7 step: profile and fixes"):

* ``token_shift_mix6(x, [m0..m5])``: six ``[B,T,C]`` token-shift mixes, one op.
* ``rwkv7_tmix_pre``: decay ``exp(-exp(-softplus(-(w0 + wl)) - 0.5))``, ``a = sigmoid(a0 + al)``,
  the rescaled key, and the delta-rule vectors ``-kkn``, ``kkn * a`` (``kkn`` per-head normalised).
* ``rwkv7_vres``: value residual ``v + (v_first - v) * sigmoid(v0 + vl)``.
* ``rwkv7_tmix_post``: ``(GroupNorm(y) + sum_head(r * k * r_k) * v) * g``.
* ``linear(x, W)`` (``x @ W`` for widths <= 1024, one-pass backward) and ``layer_norm``.

Every ``[C]`` parameter's gradient is a row reduction inside the op (per-thread, in double),
where Paddle's broadcast-multiply gradients reduced over B x T slowly.

One home per formula: each op's Paddle form is the ``*_reference`` function (or the short
expression in the op's fallback branch) in this module, and nowhere else. RWKV-7's plain path
(``RWKV7(fused_ops=False)``) and its plain RNN step call these same functions with
``use_cpp=False``; its fused path calls them with the default.

RNN mode (inference only, no backward): ``rwkv7_step`` runs one token of a whole RWKV-7 model
for every sequence of a batch in ONE C++ op (``csrc/fused_cpu.cc``, "RWKV-7 RNN step"). It
reuses the row kernels of the ops above; the Paddle form it must match is RWKV-7's plain step,
built from the ``*_reference`` functions here and ``seqlab.ops.wkv7.wkv7_step``.
"""

from __future__ import annotations

import warnings

import paddle
import paddle.nn.functional as F

from seqlab.ops._build import OpBuildError, load_cpu_ops, num_threads
from seqlab.ops.settings import setting

ENV_VAR = "SEQLAB_FUSED"
_EXP_MINUS_HALF = 0.6065306597126334  # exp(-0.5)
_STATE: dict[str, object] = {}  # "ops": loaded module or None after a failed build


def _ops(x, use_cpp):
    """The C++ op module if it should be used for tensor ``x``, else None."""
    if use_cpp is False or not x.place.is_cpu_place():
        return None
    if use_cpp is None and setting(ENV_VAR) == "paddle":
        return None
    if "ops" not in _STATE:
        try:
            _STATE["ops"] = load_cpu_ops()
        except OpBuildError as exc:
            if use_cpp:
                raise
            warnings.warn(
                f"seqlab: the fused C++ ops could not be built, using Paddle formulas instead "
                f"(set {ENV_VAR}=paddle to silence this). Cause: {exc}",
                RuntimeWarning,
                stacklevel=3,
            )
            _STATE["ops"] = None
    if _STATE["ops"] is None and use_cpp:
        raise OpBuildError("the fused C++ ops are unavailable in this process")
    return _STATE["ops"]


def _no_carry(prev, use_cpp, name):
    """The C++ sequence ops start every row at t = 0; a carried previous token needs Paddle."""
    if prev is not None and use_cpp:
        raise ValueError(f"{name}: the C++ op has no `prev` input; pass use_cpp=None or False")
    return False if prev is not None else use_cpp


def token_shift(x, prev=None):
    """The sequence delayed by one step: ``out[:, t] = x[:, t-1]``, ``out[:, 0] = prev`` (or 0).

    ``x`` ``[B, T, C]``; ``prev`` ``[B, C]`` is the token before ``x[:, 0]`` (RNN mode), None at
    the start of a sequence. The one home of the shift (``seqlab.nn.token_shift`` is this).
    """
    if prev is None:
        return F.pad(x, [1, 0], mode="constant", value=0.0, data_format="NLC")[:, :-1]
    first = prev.unsqueeze(1)
    return paddle.concat([first, x[:, :-1]], axis=1) if x.shape[1] > 1 else first


def _token_shift_mixes(x, mixes, prev=None):
    """``[x + (shift(x) - x) * m for m in mixes]``, each ``m`` any shape of C elements."""
    C = x.shape[-1]
    xx = token_shift(x, prev) - x
    return [x + xx * m.reshape([C]) for m in mixes]


def token_shift_mix_reference(x, mixes, prev=None):
    """Paddle formula: ``[K,B,T,C]`` with ``x + (shift(x) - x) * mixes[i]``."""
    return paddle.stack(_token_shift_mixes(x, [mixes[i] for i in range(mixes.shape[0])], prev))


def token_shift_mix(x, mixes, use_cpp: bool | None = None, prev=None):
    """RWKV token shift mixed with K learned ``[C]`` vectors at once: ``[K, B, T, C]``.

    ``x`` is ``[B, T, C]``, ``mixes`` is ``[K, C]`` (e.g. the six time-mix vectors ``x_r, x_w,
    x_k, x_v, x_a, x_g`` stacked, or the one FFN vector). Gradients flow to both. ``prev``
    (``[B, C]``, RNN mode) is the token before ``x[:, 0]``; it runs the Paddle formula.
    """
    ops = _ops(x, _no_carry(prev, use_cpp, "token_shift_mix"))
    if ops is None:
        return token_shift_mix_reference(x, mixes, prev)
    return ops.seqlab_token_shift_mix(x, mixes, num_threads())


def squared_relu_reference(x):
    """``relu(x) ** 2``, as a product: ``pow`` is slower on CPU.

    Both timed in ``benchmarks/RESULTS.md``, "Fused RWKV-7 block ops".
    """
    r = F.relu(x)
    return r * r


def squared_relu(x, use_cpp: bool | None = None):
    """``relu(x) ** 2`` (the RWKV FFN activation) with a one-pass backward."""
    ops = _ops(x, use_cpp)
    if ops is None:
        return squared_relu_reference(x)
    return ops.seqlab_squared_relu(x, num_threads())


def l2_normalize(x, axis: int = -1, eps: float = 1e-12, use_cpp: bool | None = None):
    """``x / max(||x||_2, eps)`` along ``axis``, like ``paddle.nn.functional.normalize``."""
    last = axis in (-1, x.ndim - 1)
    ops = _ops(x, use_cpp) if last else None
    if ops is None:
        return F.normalize(x, p=2, axis=axis, epsilon=eps)
    return ops.seqlab_l2_normalize(x, float(eps), num_threads())


# ---------------------------------------------------------------------------------------------
# RWKV-7 TimeMix block ops: the element-wise work between one layer's matmuls in three calls.
# Rows are the flattened leading axes (B*T); [C] parameters may have any shape of C elements.


def token_shift_mix6(x, mixes, use_cpp: bool | None = None, prev=None):
    """Six token-shift mixes at once: ``[x + (shift(x) - x) * m for m in mixes]`` (``x`` [B,T,C]).

    Returns a list of six ``[B, T, C]`` tensors; gradients flow to ``x`` and each mix. ``prev``
    as in :func:`token_shift_mix`.
    """
    if len(mixes) != 6:
        raise ValueError("token_shift_mix6 takes exactly six mixes")
    ops = _ops(x, _no_carry(prev, use_cpp, "token_shift_mix6"))
    if ops is None:
        return _token_shift_mixes(x, mixes, prev)
    return list(ops.seqlab_token_shift_mix6(x, *mixes, num_threads()))


def l2_normalize_heads_reference(x, head_size: int, eps: float = 1e-12):
    """``x / max(||x||_2, eps)`` over each head's ``head_size`` channels of the last axis.

    The seed's ``F.normalize(..., p=2, epsilon=1e-12)`` per head, spelled out because
    ``F.normalize``'s backward is slow on CPU (``benchmarks/RESULTS.md``, "Fused RWKV-7 block ops");
    the values agree to rounding.
    """
    shape = list(x.shape)
    xh = x.reshape(shape[:-1] + [shape[-1] // head_size, head_size])
    norm = paddle.sqrt((xh * xh).sum(axis=-1, keepdim=True))
    return (xh / paddle.clip(norm, min=eps)).reshape(shape)


def rwkv7_tmix_pre_reference(k, wl, al, w0, a0, k_k, k_a, head_size):
    """Paddle form of :func:`rwkv7_tmix_pre` (the seed's TimeMix lines, in its order)."""
    C = k.shape[-1]
    w0, a0, k_k, k_a = (p.reshape([C]) for p in (w0, a0, k_k, k_a))
    # The seed: w = -softplus(-(w0 + wl)) - 0.5 (log(-log(decay)), soft-clamped to <= -0.5) and
    # decay = exp(-exp(w)), in [0.545, 1). Since exp(-softplus(-u)) = sigmoid(u), that is
    # decay = exp(-e^-0.5 * sigmoid(w0 + wl)): the same function in fewer roundings, as the C++
    # op computes it (tests/test_fused_ops.py checks it against the seed's form).
    decay = paddle.exp(-_EXP_MINUS_HALF * F.sigmoid(w0 + wl))
    a = F.sigmoid(a0 + al)  # in-context learning rate in (0, 1)
    kk = l2_normalize_heads_reference(k * k_k, head_size)  # the delta rule's removal direction
    kout = k * (1 + (a - 1) * k_a)
    return decay, kout, -kk, kk * a


def rwkv7_tmix_pre(k, wl, al, w0, a0, k_k, k_a, head_size: int, use_cpp: bool | None = None):
    """RWKV-7 decay, key and delta-rule vectors from the projections (see ``csrc``).

    ``k`` key projection, ``wl`` / ``al`` the decay and learning-rate LoRA outputs, all [..., C];
    returns ``(decay, k * (1 + (a - 1) * k_a), -kkn, kkn * a)`` with ``a = sigmoid(a0 + al)``,
    ``kkn`` = per-head L2-normalised ``k * k_k`` and ``decay = exp(-exp(-softplus(-(w0 + wl)) - 0.5))``.
    """
    ops = _ops(k, use_cpp)
    if ops is None:
        return rwkv7_tmix_pre_reference(k, wl, al, w0, a0, k_k, k_a, head_size)
    return tuple(ops.seqlab_rwkv7_tmix_pre(k, wl, al, w0, a0, k_k, k_a, int(head_size), num_threads()))


def rwkv7_vres_reference(v, v_first, vl, v0):
    """Paddle form of :func:`rwkv7_vres`."""
    return v + (v_first - v) * F.sigmoid(v0.reshape([v.shape[-1]]) + vl)


def rwkv7_vres(v, v_first, vl, v0, use_cpp: bool | None = None):
    """Value residual ``v + (v_first - v) * sigmoid(v0 + vl)``: later layers blend toward layer 0."""
    ops = _ops(v, use_cpp)
    if ops is None:
        return rwkv7_vres_reference(v, v_first, vl, v0)
    return ops.seqlab_rwkv7_vres(v, v_first, vl, v0, num_threads())


def rwkv7_tmix_post_reference(y, r, k, v, g, r_k, gn_w, gn_b, head_size, eps):
    """Paddle form of :func:`rwkv7_tmix_post` (the seed's ``ln_x`` GroupNorm, written out)."""
    shape = list(y.shape)
    C = shape[-1]
    H = C // head_size
    hs = shape[:-1] + [H, head_size]
    yh = y.reshape(hs)
    mu = yh.mean(axis=-1, keepdim=True)
    var = ((yh - mu) * (yh - mu)).mean(axis=-1, keepdim=True)
    yn = ((yh - mu) / paddle.sqrt(var + eps)).reshape(shape) * gn_w.reshape([C]) + gn_b.reshape([C])
    bonus = (
        (r.reshape(hs) * k.reshape(hs) * r_k.reshape([H, head_size])).sum(axis=-1, keepdim=True) * v.reshape(hs)
    ).reshape(shape)
    return (yn + bonus) * g


def rwkv7_tmix_post(y, r, k, v, g, r_k, gn_w, gn_b, head_size: int, eps: float = 64e-5, use_cpp: bool | None = None):
    """``(GroupNorm_H(y) + sum_head(r * k * r_k) * v) * g``: the WKV output's norm, bonus and gate."""
    ops = _ops(y, use_cpp)
    if ops is None:
        return rwkv7_tmix_post_reference(y, r, k, v, g, r_k, gn_w, gn_b, head_size, eps)
    return ops.seqlab_rwkv7_tmix_post(y, r, k, v, g, r_k, gn_w, gn_b, int(head_size), float(eps), num_threads())


def linear(x, w, use_cpp: bool | None = None):
    """``x @ w`` for ``x`` [..., K], ``w`` [K, N] with small K, N (<= 1024), e.g. nn.Linear's
    weight: a C++ op whose backward computes ``dx`` and ``dW`` in one pass over the rows."""
    ops = _ops(x, use_cpp)
    if ops is None or w.shape[0] > 1024 or w.shape[1] > 1024:
        return paddle.matmul(x, w)
    return ops.seqlab_linear(x, w, num_threads())


def layer_norm(x, weight, bias, eps: float = 1e-5, use_cpp: bool | None = None):
    """``paddle.nn.functional.layer_norm`` over the last axis (weight and bias [C] required)."""
    ops = _ops(x, use_cpp)
    C = x.shape[-1]
    if ops is None or C > 1024:
        return F.layer_norm(x, [C], weight=weight, bias=bias, epsilon=eps)
    return ops.seqlab_layer_norm(x, weight, bias, float(eps), num_threads())


# ---------------------------------------------------------------------------------------------
# RWKV-7 RNN mode: one token through the whole model in one C++ op (inference only).


def rwkv7_step_available(x) -> bool:
    """Whether :func:`rwkv7_step` can run for tensor ``x``: a CPU tensor, the ops built, and
    ``SEQLAB_FUSED`` not set to ``paddle`` (then callers use their Paddle step)."""
    return _ops(x, None) is not None


def rwkv7_step(tokens, state, params, n_layer: int, head_size: int, ln_eps: float, gn_eps: float):
    """One RWKV-7 token for every sequence: ``(logits [B, V], new_state)``; no gradients.

    ``tokens`` int64 ``[B]``; ``state`` ``[B, n_layer, 2C + H*N*N]`` (per layer: the TimeMix and
    FFN token-shift inputs of the previous token, then the H x N x N WKV state, value x key);
    ``params`` the model's parameters in the order ``RWKV7.step_params()`` documents. The old
    state is not modified.
    """
    ops = _ops(state, True)
    logits, new_state = ops.seqlab_rwkv7_step(
        tokens,
        state,
        list(params),
        int(n_layer),
        int(head_size),
        float(ln_eps),
        float(gn_eps),
        num_threads(),
    )
    return logits, new_state


__all__ = [
    "l2_normalize",
    "l2_normalize_heads_reference",
    "layer_norm",
    "linear",
    "rwkv7_step",
    "rwkv7_step_available",
    "rwkv7_tmix_post",
    "rwkv7_tmix_post_reference",
    "rwkv7_tmix_pre",
    "rwkv7_tmix_pre_reference",
    "rwkv7_vres",
    "rwkv7_vres_reference",
    "squared_relu",
    "squared_relu_reference",
    "token_shift",
    "token_shift_mix",
    "token_shift_mix6",
    "token_shift_mix_reference",
]
