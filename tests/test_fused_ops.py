"""Fused RWKV-7 block ops (C++) against their Paddle formulas: forward and gradients, 1e-6."""

from __future__ import annotations

import importlib
import warnings

import numpy as np
import pytest

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*ccache.*")
    import paddle
    import paddle.nn.functional as F

from seqlab.ops._build import OpBuildError
from seqlab.ops.fused import l2_normalize, squared_relu, token_shift_mix, token_shift_mix_reference

fused_pkg = importlib.import_module("seqlab.ops.fused")
TOL = 1e-6


def grads_of(fn, arrays, dtype, seed=0):
    xs = [paddle.to_tensor(a.astype(dtype), stop_gradient=False) for a in arrays]
    y = fn(*xs)
    dy = np.random.default_rng(seed).normal(size=y.shape).astype(dtype)
    gs = paddle.grad([y], xs, [paddle.to_tensor(dy)])
    return [y.numpy()] + [g.numpy() for g in gs]


def assert_close(got, ref, tol=TOL):
    for g, r in zip(got, ref):
        assert g.shape == r.shape
        err = np.abs(g.astype(np.float64) - r).max() / (np.abs(r).max() or 1.0)
        assert err <= tol, err


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("B,T,C,K", [(1, 1, 8, 1), (3, 17, 32, 6), (4, 64, 48, 1), (64, 128, 32, 6)])
def test_token_shift_mix(B, T, C, K, dtype):
    rng = np.random.default_rng(1)
    arrays = [rng.normal(size=(B, T, C)), rng.uniform(size=(K, C))]
    ref = grads_of(token_shift_mix_reference, arrays, "float64")
    got = grads_of(lambda x, m: token_shift_mix(x, m, use_cpp=True), arrays, dtype)
    assert_close(got, ref, TOL if dtype == "float32" else 1e-12)


def test_token_shift_mix_formula_is_the_seed_one():
    """out[i] = x + (shift(x) - x) * mixes[i] with shift(x)[t] = x[t-1] and zeros at t = 0."""
    x = np.arange(2 * 3 * 2, dtype="float64").reshape(2, 3, 2)
    m = np.array([[0.25, 0.5]])
    shifted = np.concatenate([np.zeros((2, 1, 2)), x[:, :-1]], axis=1)
    expect = (x + (shifted - x) * m[0])[None]
    got = token_shift_mix(paddle.to_tensor(x), paddle.to_tensor(m), use_cpp=True).numpy()
    np.testing.assert_allclose(got, expect, rtol=0, atol=1e-12)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", [(7,), (3, 5, 33), (256, 128, 128)])
def test_squared_relu(shape, dtype):
    x = np.random.default_rng(2).normal(size=shape)
    x.reshape(-1)[0] = 0.0  # the kink: gradient 0 like relu's
    ref = grads_of(lambda t: F.relu(t) * F.relu(t), [x], "float64")
    got = grads_of(lambda t: squared_relu(t, use_cpp=True), [x], dtype)
    assert_close(got, ref, TOL if dtype == "float32" else 1e-12)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", [(5, 16), (3, 7, 2, 16), (256, 128, 2, 16)])
def test_l2_normalize(shape, dtype):
    x = np.random.default_rng(3).normal(size=shape)
    x[0] = 0.0  # a zero row: norm below eps
    x[-1] *= 1e-14  # a tiny row: also below eps = 1e-12 for C = 16
    ref = grads_of(lambda t: F.normalize(t, axis=-1, epsilon=1e-12), [x], "float64")
    got = grads_of(lambda t: l2_normalize(t, use_cpp=True), [x], dtype)
    # float64: the op's eps is a float32 attribute, so rows below eps differ by ~4e-9.
    assert_close(got, ref, TOL if dtype == "float32" else 1e-7)


def test_l2_normalize_other_axis_uses_paddle():
    x = paddle.to_tensor(np.random.default_rng(4).normal(size=(3, 4, 5)))
    np.testing.assert_allclose(l2_normalize(x, axis=1).numpy(), F.normalize(x, axis=1).numpy())


def test_non_contiguous_input():
    base = paddle.to_tensor(np.random.default_rng(5).normal(size=(17, 3, 32)).astype("float32"))
    x = base.transpose([1, 0, 2])  # [3, 17, 32] view
    m = paddle.rand([6, 32])
    np.testing.assert_allclose(
        token_shift_mix(x, m, use_cpp=True).numpy(), token_shift_mix_reference(x, m).numpy(),
        rtol=0, atol=1e-6,
    )


def test_failed_build_falls_back_with_one_warning(monkeypatch):
    def broken():
        raise OpBuildError("simulated")

    monkeypatch.setattr(fused_pkg, "load_cpu_ops", broken)
    monkeypatch.setattr(fused_pkg, "_STATE", {})
    x = paddle.randn([2, 3, 8])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        y1 = squared_relu(x)
        y2 = l2_normalize(x)
    assert len([w for w in caught if "could not be built" in str(w.message)]) == 1, caught
    np.testing.assert_allclose(y1.numpy(), (F.relu(x) ** 2).numpy())
    np.testing.assert_allclose(y2.numpy(), F.normalize(x, axis=-1).numpy())
    with pytest.raises(OpBuildError):
        squared_relu(x, use_cpp=True)
