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
        token_shift_mix(x, m, use_cpp=True).numpy(),
        token_shift_mix_reference(x, m).numpy(),
        rtol=0,
        atol=1e-6,
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
    np.testing.assert_allclose(y1.numpy(), (F.relu(x) ** 2).numpy(), rtol=1e-6)  # r*r vs pow
    np.testing.assert_allclose(y2.numpy(), F.normalize(x, axis=-1).numpy())
    with pytest.raises(OpBuildError):
        squared_relu(x, use_cpp=True)


def test_a_failed_build_fails_the_op_tests_in_ci_and_skips_them_elsewhere(monkeypatch):
    """The models fall back silently, so a skipped fused-path test in CI would hide a broken build."""
    import support

    from seqlab.ops import _build

    def broken():
        raise OpBuildError("simulated compiler failure")

    monkeypatch.setattr(_build, "load_cpu_ops", broken)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true and the C\\+\\+ ops failed to build: simulated"):
        support.require_cpu_ops()
    for value in ("", "false", "0"):
        monkeypatch.setenv("CI", value)
        with pytest.raises(pytest.skip.Exception, match="cannot be built here"):
            support.require_cpu_ops()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception):
        support.require_cpu_ops()


# ------------------------------------------------------------------ RWKV-7 TimeMix block ops

from seqlab.ops.fused import (  # noqa: E402
    layer_norm,
    linear,
    rwkv7_tmix_post,
    rwkv7_tmix_post_reference,
    rwkv7_tmix_pre,
    rwkv7_tmix_pre_reference,
    rwkv7_vres,
    token_shift_mix6,
)


def _all_grads(fn, arrays, dtype, seed=0):
    """Outputs and the gradients of a random projection of all outputs w.r.t. every input."""
    xs = [paddle.to_tensor(a.astype(dtype), stop_gradient=False) for a in arrays]
    ys = fn(*xs)
    ys = list(ys) if isinstance(ys, (list, tuple)) else [ys]
    rng = np.random.default_rng(seed)
    loss = sum((y * paddle.to_tensor(rng.normal(size=y.shape).astype(dtype))).sum() for y in ys)
    gs = paddle.grad([loss], xs)
    return [y.numpy() for y in ys] + [g.numpy() for g in gs]


def _check(fast, ref, arrays, dtype, tol):
    assert_close(_all_grads(fast, arrays, dtype), _all_grads(ref, arrays, "float64"), tol)


TOLS = {"float32": 1e-6, "float64": 1e-10}
# float64 rows with a tiny norm or variance: the eps constants (1e-12, 64e-5) are float32 values
EPS_TOLS = {"float32": 1e-6, "float64": 1e-7}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("B,T,C", [(1, 1, 8), (3, 17, 32), (64, 128, 32)])
def test_token_shift_mix6(B, T, C, dtype):
    rng = np.random.default_rng(6)
    arrays = [rng.normal(size=(B, T, C))] + [rng.uniform(size=(1, 1, C)) for _ in range(6)]
    _check(
        lambda x, *m: token_shift_mix6(x, m, use_cpp=True),
        lambda x, *m: token_shift_mix6(x, m, use_cpp=False),
        arrays,
        dtype,
        TOLS[dtype],
    )


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("R,C,N", [(5, 16, 16), (37, 32, 16), (8192, 32, 16), (9, 64, 8)])
def test_rwkv7_tmix_pre(R, C, N, dtype):
    rng = np.random.default_rng(7)
    arrays = [
        rng.normal(size=(R, C)),
        rng.normal(size=(R, C)) * 3,
        rng.normal(size=(R, C)),
        rng.normal(size=(1, 1, C)),
        rng.normal(size=(1, 1, C)),
        rng.normal(size=(1, 1, C)),
        rng.normal(size=(1, 1, C)),
    ]
    arrays[1][0, :4] = [-30.0, -21.0, 25.0, 0.0]  # both sides of softplus' threshold (20)
    arrays[0][1, :N] *= 1e-14  # a key below the normalise eps
    _check(
        lambda *a: rwkv7_tmix_pre(*a, N, use_cpp=True),
        lambda *a: rwkv7_tmix_pre_reference(*a, N),
        arrays,
        dtype,
        EPS_TOLS[dtype],
    )


def test_rwkv7_tmix_pre_reference_is_the_model_formula():
    rng = np.random.default_rng(8)
    k, wl, al = (paddle.to_tensor(rng.normal(size=(4, 6, 32))) for _ in range(3))
    w0, a0, k_k, k_a = (paddle.to_tensor(rng.normal(size=(1, 1, 32))) for _ in range(4))
    decay, kout, wa, wb = rwkv7_tmix_pre_reference(k, wl, al, w0, a0, k_k, k_a, 16)
    w = -F.softplus(-(w0 + wl)) - 0.5
    a = F.sigmoid(a0 + al)
    kk = F.normalize((k * k_k).reshape([4, 6, 2, 16]), axis=-1, epsilon=1e-12).reshape([4, 6, 32])
    for got, want in [(decay, paddle.exp(-paddle.exp(w))), (kout, k * (1 + (a - 1) * k_a)), (wa, -kk), (wb, kk * a)]:
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_rwkv7_vres(dtype):
    rng = np.random.default_rng(9)
    arrays = [rng.normal(size=(300, 32)) for _ in range(3)] + [rng.normal(size=(1, 1, 32))]
    _check(
        lambda *a: rwkv7_vres(*a, use_cpp=True), lambda *a: rwkv7_vres(*a, use_cpp=False), arrays, dtype, TOLS[dtype]
    )


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("R,C,N", [(7, 32, 16), (8192, 32, 16), (5, 24, 8)])
def test_rwkv7_tmix_post(R, C, N, dtype):
    rng = np.random.default_rng(10)
    arrays = [rng.normal(size=(R, C)) for _ in range(5)] + [
        rng.normal(size=(C // N, N)),
        rng.normal(size=(C,)),
        rng.normal(size=(C,)),
    ]
    arrays[0][0, :N] = 0.25  # a constant group: variance 0, only eps in the denominator
    _check(
        lambda *a: rwkv7_tmix_post(*a, N, 64e-5, use_cpp=True),
        lambda *a: rwkv7_tmix_post_reference(*a, N, 64e-5),
        arrays,
        dtype,
        EPS_TOLS[dtype],
    )


def test_rwkv7_tmix_post_reference_uses_groupnorm():
    rng = np.random.default_rng(11)
    y = paddle.to_tensor(rng.normal(size=(50, 32)))
    gn = paddle.nn.GroupNorm(2, 32, epsilon=64e-5)
    gn.to(dtype="float64")
    zeros = paddle.zeros_like(y)
    out = rwkv7_tmix_post_reference(
        y, zeros, zeros, zeros, zeros + 1, paddle.zeros([2, 16], "float64"), gn.weight, gn.bias, 16, 64e-5
    )
    np.testing.assert_allclose(out.numpy(), gn(y).numpy(), rtol=0, atol=1e-12)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(
    "R,K,N", [(37, 32, 8), (1000, 8, 32), (32768, 32, 128), (4099, 128, 32), (5, 32, 32), (7, 13, 5), (3, 4, 12)]
)
def test_linear(R, K, N, dtype):
    rng = np.random.default_rng(12)
    arrays = [rng.normal(size=(R, K)), rng.normal(size=(K, N))]
    _check(
        lambda x, w: linear(x, w, use_cpp=True),
        lambda x, w: paddle.matmul(x, w),
        arrays,
        dtype,
        2e-6 if dtype == "float32" else 1e-12,
    )


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", [(5, 32), (4, 33, 32), (32768, 32), (3, 7)])
def test_layer_norm(shape, dtype):
    rng = np.random.default_rng(13)
    C = shape[-1]
    arrays = [rng.normal(size=shape) * 2 + 1, rng.normal(size=(C,)), rng.normal(size=(C,))]
    arrays[0].reshape(-1, C)[0] = 0.5  # a constant row
    _check(
        lambda x, w, b: layer_norm(x, w, b, 1e-5, use_cpp=True),
        lambda x, w, b: F.layer_norm(x, [C], weight=w, bias=b, epsilon=1e-5),
        arrays,
        dtype,
        TOLS[dtype],
    )


@pytest.mark.parametrize("threads", ["1", "2", "3"])
def test_thread_counts_give_the_same_result(threads, monkeypatch):
    """Parameter gradients are summed per thread: any thread count stays within 1e-6."""
    monkeypatch.setenv("SEQLAB_NUM_THREADS", threads)
    rng = np.random.default_rng(14)
    arrays = [rng.normal(size=(70000, 32)), rng.normal(size=(32, 32))]
    _check(lambda x, w: linear(x, w, use_cpp=True), lambda x, w: paddle.matmul(x, w), arrays, "float32", 2e-6)
    arrays = [rng.normal(size=(70000, 32)), rng.normal(size=(32,)), rng.normal(size=(32,))]
    _check(
        lambda x, w, b: layer_norm(x, w, b, use_cpp=True),
        lambda x, w, b: F.layer_norm(x, [32], weight=w, bias=b, epsilon=1e-5),
        arrays,
        "float32",
        1e-6,
    )


def test_token_shift_mixes_continue_from_a_carried_previous_token():
    """RNN mode: mixing x[:, 1:] with prev = x[:, 0] is the sequence mix at positions 1.."""
    rng = np.random.default_rng(11)
    x = paddle.to_tensor(rng.normal(size=(3, 9, 16)).astype("float32"))
    m = paddle.to_tensor(rng.uniform(size=(6, 16)).astype("float32"))
    whole = token_shift_mix(x, m, use_cpp=True).numpy()
    cont = token_shift_mix(x[:, 1:], m, prev=x[:, 0]).numpy()
    np.testing.assert_allclose(cont, whole[:, :, 1:], rtol=0, atol=1e-6)
    six = token_shift_mix6(x[:, 1:], [m[i] for i in range(6)], prev=x[:, 0])
    np.testing.assert_allclose(np.stack([t.numpy() for t in six]), whole[:, :, 1:], rtol=0, atol=1e-6)
    one = token_shift_mix(x[:, 3:4], m, prev=x[:, 2]).numpy()  # a single token
    np.testing.assert_allclose(one, whole[:, :, 3:4], rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="no `prev` input"):
        token_shift_mix(x[:, 1:], m, use_cpp=True, prev=x[:, 0])


def test_nn_token_shift_is_the_ops_formula():
    from seqlab.nn import token_shift as nn_token_shift
    from seqlab.ops.fused import token_shift

    assert nn_token_shift is token_shift
