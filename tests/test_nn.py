"""seqlab.nn against the formulas of the seeds (CS336 RMSNorm/SwiGLU/RoPE, sinusoidal positions)."""

import math

import numpy as np
import paddle
import pytest

import seqlab  # noqa: F401  (quiet Paddle import, CPU defaults)
from seqlab.nn import RMSNorm, RotaryEmbedding, SwiGLU, TokenShift, sinusoidal_position_embedding, token_shift


def test_rmsnorm_hand_computed():
    norm = RMSNorm(2, eps=1e-5)
    out = norm(paddle.to_tensor([[3.0, 4.0]])).numpy()
    np.testing.assert_allclose(out, [[3.0, 4.0]] / np.sqrt(12.5 + 1e-5), rtol=1e-6)
    with paddle.no_grad():
        norm.weight.set_value(paddle.to_tensor([2.0, -1.0]))
    out = norm(paddle.to_tensor([[3.0, 4.0]])).numpy()
    np.testing.assert_allclose(out, [[6.0, -4.0]] / np.sqrt(12.5 + 1e-5), rtol=1e-6)
    assert norm(paddle.zeros([1, 2])).numpy().tolist() == [[0.0, 0.0]]  # eps keeps it finite


def test_swiglu_matches_formula():
    paddle.seed(0)
    ffn = SwiGLU(4, 6)
    x = paddle.randn([2, 3, 4])
    w1, w2, w3 = (l.weight.numpy() for l in (ffn.w1, ffn.w2, ffn.w3))  # Paddle weights are [in, out]
    xn = x.numpy()
    a = xn @ w1
    expected = ((a / (1 + np.exp(-a))) * (xn @ w3)) @ w2  # SiLU(x W1) * (x W3), then W2
    np.testing.assert_allclose(ffn(x).numpy(), expected, rtol=1e-5, atol=1e-6)
    assert sum(int(p.numel()) for p in ffn.parameters()) == 3 * 4 * 6  # bias-free


def test_sinusoidal_embedding_values():
    emb = sinusoidal_position_embedding(5, 4).numpy()
    assert emb.shape == (5, 4) and emb.dtype == np.float32
    for p in range(5):
        for i in range(2):
            theta = 10000 ** (-2 * i / 4)
            assert emb[p, 2 * i] == pytest.approx(math.sin(p * theta), abs=1e-6)
            assert emb[p, 2 * i + 1] == pytest.approx(math.cos(p * theta), abs=1e-6)
    with pytest.raises(ValueError):
        sinusoidal_position_embedding(3, 5)


def test_rope_rotates_pairs_by_position():
    rope = RotaryEmbedding(4, base=10000.0)
    x = paddle.to_tensor(np.tile(np.array([1.0, 0.0, 1.0, 0.0], np.float32), (1, 3, 1, 1)))  # [1,3,1,4]
    out = rope(x).numpy()[0, :, 0]
    for p in range(3):
        for i, theta in enumerate((1.0, 10000 ** (-2 / 4))):
            # (1, 0) rotated by p*theta is (cos, sin)
            np.testing.assert_allclose(out[p, 2 * i : 2 * i + 2], [math.cos(p * theta), math.sin(p * theta)], atol=1e-6)
    # rotations keep the norm, and position 0 is the identity
    np.testing.assert_allclose(np.linalg.norm(out, axis=-1), np.sqrt(2), rtol=1e-6)
    np.testing.assert_allclose(out[0], [1, 0, 1, 0], atol=0)


def test_rope_relative_position_property():
    """q.k after RoPE at positions (m, n) equals q.k at (m + s, n + s)."""
    paddle.seed(1)
    D = 16
    rope = RotaryEmbedding(D)
    q, k = paddle.randn([D]).numpy(), paddle.randn([D]).numpy()
    T = 40
    x = np.zeros((1, T, 2, D), np.float32)
    x[0, :, 0], x[0, :, 1] = q, k  # head 0 holds q, head 1 holds k at every position
    rot = rope(paddle.to_tensor(x)).numpy()[0]
    dot = lambda m, n: float(rot[m, 0] @ rot[n, 1])  # noqa: E731
    for m, n, s in ((3, 1, 5), (0, 7, 20), (10, 10, 29)):
        assert dot(m, n) == pytest.approx(dot(m + s, n + s), abs=1e-4)
    assert abs(dot(3, 1) - dot(3, 2)) > 1e-3  # and it does depend on the offset
    # offset= is the same as slicing a longer sequence (RNN-style decoding)
    tail = rope(paddle.to_tensor(x[:, 5:9]), offset=5).numpy()
    np.testing.assert_allclose(tail, rot[None, 5:9], atol=1e-6)


def test_token_shift():
    x = paddle.arange(12, dtype="float32").reshape([1, 3, 4])
    shifted = token_shift(x).numpy()
    np.testing.assert_array_equal(shifted[0, 0], 0)
    np.testing.assert_array_equal(shifted[0, 1:], x.numpy()[0, :2])
    prev = paddle.full([1, 4], 7.0)
    np.testing.assert_array_equal(token_shift(x, prev).numpy()[0, 0], 7)
    np.testing.assert_array_equal(TokenShift()(x).numpy(), shifted - x.numpy())
    np.testing.assert_array_equal(token_shift(x[:, :1], prev).numpy()[0, 0], 7)  # T = 1
