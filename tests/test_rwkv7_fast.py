"""RWKV-7's fused fast path (``fused_ops=True``) against its pure-Paddle path on the same weights.

The two paths must compute the same model: logits to 1e-6 and every parameter gradient to 1e-5
(relative to the largest entry), with the same parameter names, shapes and count.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*ccache.*")
    import paddle
    import paddle.nn.functional as F

from seqlab.models.rwkv7 import RWKV7
from seqlab.ops._build import OpBuildError, load_cpu_ops


def _ops_available():
    try:
        load_cpu_ops()
        return True
    except OpBuildError:
        return False


pytestmark = pytest.mark.skipif(not _ops_available(), reason="the C++ ops cannot be built here")


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
    assert _rel(outs[0], outs[1]) <= 1e-6
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
