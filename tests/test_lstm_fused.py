"""The fused C++ LSTM op against paddle.nn.LSTM: outputs and every gradient, and the model on it."""

from __future__ import annotations

import ctypes
import importlib
import warnings

import numpy as np
import pytest

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*ccache.*")
    import paddle
    import paddle.nn.functional as F

from seqlab.models.lstm import LSTM
from seqlab.ops._build import OpBuildError
from seqlab.ops.lstm import fusable, lstm_layer
from seqlab.ops.lstm._blas import BlasNotFound, find_blas

lstm_pkg = importlib.import_module("seqlab.ops.lstm")
TOL32 = 1e-5  # the bound for float32, relative to the largest reference value
TOL64 = 1e-10


def rel_err(got, ref) -> float:
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    assert got.shape == ref.shape
    return float(np.abs(got - ref).max() / max(np.abs(ref).max(), 1e-30))


def run_layer(layer, x_np, dy_np, use_cpp, state_np=None, dc_np=None):
    """Output, final states and gradients of x, the four parameters (and h0, c0 if given)."""
    dtype = layer.weight_ih_l0.dtype
    x = paddle.to_tensor(x_np, dtype=dtype, stop_gradient=False)
    inputs = [x] + [layer.weight_ih_l0, layer.weight_hh_l0, layer.bias_ih_l0, layer.bias_hh_l0]
    states = None
    if state_np is not None:
        states = tuple(paddle.to_tensor(s, dtype=dtype, stop_gradient=False) for s in state_np)
        inputs += list(states)
    y, (h, c) = lstm_layer(layer, x, states, use_cpp=use_cpp)
    outs, grads_in = [y], [paddle.to_tensor(dy_np, dtype=dtype)]
    if dc_np is not None:  # also a gradient through the final cell state
        outs.append(c)
        grads_in.append(paddle.to_tensor(dc_np, dtype=dtype))
    grads = paddle.grad(outs, inputs, grads_in)
    return [y.numpy(), h.numpy(), c.numpy()] + [g.numpy() for g in grads]


NAMES = ["y", "h_T", "c_T", "dx", "dW_ih", "dW_hh", "db_ih", "db_hh", "dh0", "dc0"]


def compare(B, T, I, H, dtype="float32", with_state=False, seed=0):
    rng = np.random.default_rng(seed)
    paddle.seed(seed)
    old = paddle.get_default_dtype()
    paddle.set_default_dtype(dtype)
    try:
        layer = paddle.nn.LSTM(I, H)
    finally:
        paddle.set_default_dtype(old)
    x = rng.normal(size=(B, T, I))
    dy = rng.normal(size=(B, T, H))
    state = dc = None
    if with_state:
        state = (rng.normal(size=(1, B, H)), rng.normal(size=(1, B, H)))
        dc = rng.normal(size=(1, B, H))
    ref = run_layer(layer, x, dy, False, state, dc)
    got = run_layer(layer, x, dy, True, state, dc)
    return {name: rel_err(g, r) for name, g, r in zip(NAMES, got, ref)}


SHAPES = [  # (B, T, input, hidden): T = 1, odd sizes (not multiples of 8), the model's shape
    (1, 1, 5, 3),
    (2, 1, 8, 16),
    (3, 17, 13, 20),
    (5, 9, 7, 11),
    (4, 33, 32, 128),
    (32, 128, 128, 128),
]


@pytest.mark.parametrize("B,T,I,H", SHAPES)
def test_forward_and_all_gradients_match_nn_lstm_float32(B, T, I, H):
    errors = compare(B, T, I, H)
    assert set(errors) == set(NAMES[:8])
    assert max(errors.values()) <= TOL32, errors


@pytest.mark.parametrize("B,T,I,H", [(1, 1, 5, 3), (3, 17, 13, 20), (4, 33, 32, 128)])
def test_initial_states_and_final_cell_gradient_match_nn_lstm(B, T, I, H):
    errors = compare(B, T, I, H, with_state=True, seed=1)
    assert set(errors) == set(NAMES)
    assert max(errors.values()) <= TOL32, errors


def test_gradient_through_the_final_cell_state_alone():
    """y unused: the op gets no gradient for it (Paddle passes none) and must treat it as zero."""
    paddle.seed(9)
    layer = paddle.nn.LSTM(5, 8)
    x = paddle.to_tensor(np.random.default_rng(9).normal(size=(3, 4, 5)), dtype="float32", stop_gradient=False)
    results = []
    for use_cpp in (False, True):
        _, (_, c) = lstm_layer(layer, x, use_cpp=use_cpp)
        results.append([g.numpy() for g in paddle.grad([c.sum()], [x] + list(layer.parameters()))])
    for got, ref in zip(results[1], results[0]):
        assert np.abs(ref).max() > 0.1 and rel_err(got, ref) <= TOL32


@pytest.mark.parametrize("B,T,I,H", [(3, 17, 13, 20), (2, 1, 8, 16)])
def test_float64_matches_nn_lstm_to_rounding(B, T, I, H):
    """float64 uses libm's tanh/exp: any maths or gate-order slip would show far above 1e-10."""
    errors = compare(B, T, I, H, dtype="float64", with_state=True, seed=2)
    assert max(errors.values()) <= TOL64, errors


def test_gate_order_is_i_f_g_o_as_in_nn_lstm():
    """A float64 numpy LSTM with gates [i, f, g, o] in the 4H rows matches both implementations."""
    B, T, I, H = 2, 5, 3, 4
    rng = np.random.default_rng(3)
    old = paddle.get_default_dtype()
    paddle.set_default_dtype("float64")
    try:
        layer = paddle.nn.LSTM(I, H)
    finally:
        paddle.set_default_dtype(old)
    x = rng.normal(size=(B, T, I))
    w_ih, w_hh = layer.weight_ih_l0.numpy(), layer.weight_hh_l0.numpy()
    b = layer.bias_ih_l0.numpy() + layer.bias_hh_l0.numpy()
    sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    h, c, ys = np.zeros((B, H)), np.zeros((B, H)), []
    for t in range(T):
        pre = x[:, t] @ w_ih.T + h @ w_hh.T + b
        i, f, g, o = sig(pre[:, :H]), sig(pre[:, H : 2 * H]), np.tanh(pre[:, 2 * H : 3 * H]), sig(pre[:, 3 * H :])
        c = f * c + i * g
        h = o * np.tanh(c)
        ys.append(h)
    expect = np.stack(ys, axis=1)
    xt = paddle.to_tensor(x)
    for use_cpp in (False, True):
        y, _ = lstm_layer(layer, xt, use_cpp=use_cpp)
        np.testing.assert_allclose(y.numpy(), expect, rtol=0, atol=1e-12)


@pytest.mark.parametrize("B,T,I,H", [(32, 40, 32, 64), (33, 17, 20, 32), (7, 5, 9, 16)])
def test_every_thread_count_gives_bit_identical_results(B, T, I, H, monkeypatch):
    """The work is cut into fixed groups of sequences (and of gate rows), not by thread count, so
    1, 2 and 3 threads give the same bits: what lets --parallel give a run more cores mid-run.
    (33 sequences: a group of one; 7: fewer than one group.)"""
    rng = np.random.default_rng(4)
    x, dy = rng.normal(size=(B, T, I)), rng.normal(size=(B, T, H))
    state, dc = (rng.normal(size=(1, B, H)), rng.normal(size=(1, B, H))), rng.normal(size=(1, B, H))
    paddle.seed(4)
    layer = paddle.nn.LSTM(I, H)
    results = {}
    for threads in ("1", "2", "3"):
        monkeypatch.setenv("SEQLAB_NUM_THREADS", threads)
        results[threads] = run_layer(layer, x, dy, True, state, dc)
    for threads in ("2", "3"):
        for name, got, ref in zip(NAMES, results[threads], results["1"]):
            assert np.array_equal(got, ref), f"{name} differs at {threads} threads"
    # and the result is the right one (not just stable)
    errors = {n: rel_err(g, r) for n, g, r in zip(NAMES, results["1"], run_layer(layer, x, dy, False, state, dc))}
    assert max(errors.values()) <= TOL32, errors


def test_the_op_leaves_numpys_blas_thread_count_as_it_was():
    blas = find_blas()
    lib = ctypes.CDLL(str(blas.path))
    get, set_ = getattr(lib, blas.get_threads), getattr(lib, blas.set_threads)
    before = get()
    try:
        set_(2)
        compare(4, 5, 6, 7)
        assert get() == 2
    finally:
        set_(before)


# ------------------------------------------------------------------ the model on the op


def model_pair(**kwargs):
    paddle.seed(5)
    fused = LSTM(fused_ops=True, **kwargs)
    plain = LSTM(fused_ops=False, **kwargs)
    plain.set_state_dict(fused.state_dict())
    return fused, plain


def logits_and_grads(model, tokens, targets):
    model.clear_gradients()
    logits = model(tokens)
    loss = F.cross_entropy(logits.reshape([-1, model.vocab_size]), targets.reshape([-1]))
    loss.backward()
    return logits.numpy(), {n: p.grad.numpy() for n, p in model.named_parameters()}


@pytest.mark.parametrize(
    "kwargs,B,T", [({}, 4, 24), ({"hidden_sizes": [8, 13, 5], "embed_dim": 6}, 3, 11), ({"hidden_sizes": [16]}, 2, 1)]
)
def test_model_fused_and_plain_give_the_same_logits_and_gradients(kwargs, B, T):
    fused, plain = model_pair(**kwargs)
    rng = np.random.default_rng(6)
    data = paddle.to_tensor(rng.integers(0, 12, (B, T + 1)))
    tokens, targets = data[:, :-1], data[:, 1:]
    logits_f, grads_f = logits_and_grads(fused, tokens, targets)
    logits_p, grads_p = logits_and_grads(plain, tokens, targets)
    assert rel_err(logits_f, logits_p) <= TOL32
    assert grads_f.keys() == grads_p.keys() and len(grads_f) == len(list(plain.parameters()))
    errors = {n: rel_err(grads_f[n], grads_p[n]) for n in grads_p}
    assert max(errors.values()) <= TOL32, errors


def test_model_parameters_and_checkpoint_keys_do_not_depend_on_fused_ops():
    fused, plain = LSTM(fused_ops=True), LSTM(fused_ops=False)
    assert fused.num_parameters() == plain.num_parameters() == 877_452
    assert list(fused.state_dict().keys()) == list(plain.state_dict().keys())
    assert {n: p.shape for n, p in fused.named_parameters()} == {n: p.shape for n, p in plain.named_parameters()}


def test_model_rnn_mode_matches_the_fused_forward():
    paddle.seed(7)
    model = LSTM(hidden_sizes=[8, 16], embed_dim=4)  # fused_ops=True by default
    model.eval()
    x = paddle.to_tensor(np.random.default_rng(7).integers(0, 12, (2, 9)))
    out = model(x).numpy()
    state, steps = model.init_state(2), []
    for t in range(9):
        logits, state = model.step(x[:, t], state)
        steps.append(logits.numpy())
    np.testing.assert_allclose(np.stack(steps, axis=1), out, atol=1e-5)


# ------------------------------------------------------------------ fallback and dispatch


def test_failed_build_falls_back_to_nn_lstm_with_one_warning(monkeypatch):
    def broken():
        raise OpBuildError("simulated compiler failure")

    monkeypatch.delenv("SEQLAB_FUSED", raising=False)
    monkeypatch.setattr(lstm_pkg, "load", broken)
    monkeypatch.setattr(lstm_pkg, "_STATE", {})
    fused, plain = model_pair(hidden_sizes=[8, 8])
    tokens = paddle.to_tensor(np.random.default_rng(8).integers(0, 12, (2, 6)))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out1 = fused(tokens)
        out2 = fused(tokens)
    ours = [w for w in caught if "could not be built" in str(w.message)]
    assert len(ours) == 1 and "paddle.nn.LSTM" in str(ours[0].message), [str(w.message) for w in caught]
    np.testing.assert_array_equal(out1.numpy(), plain(tokens).numpy())  # nn.LSTM itself ran
    np.testing.assert_array_equal(out1.numpy(), out2.numpy())
    # Asking for the op explicitly is an error, not a silent fallback.
    with pytest.raises(OpBuildError):
        lstm_layer(fused.lstm_layers[0], fused.embedding(tokens), use_cpp=True)


def test_missing_blas_is_a_build_error_not_a_crash(monkeypatch, tmp_path):
    monkeypatch.setenv("SEQLAB_BLAS_LIB", str(tmp_path / "libopenblas_missing.so"))
    with pytest.raises(BlasNotFound, match="SEQLAB_BLAS_LIB"):
        find_blas()
    with pytest.raises(OpBuildError, match="no OpenBLAS"):
        lstm_pkg.load()


def test_layers_the_op_does_not_cover_run_nn_lstm(monkeypatch):
    x = paddle.randn([2, 3, 4])
    assert fusable(paddle.nn.LSTM(4, 5), x)
    for layer in (
        paddle.nn.LSTM(4, 5, num_layers=2),
        paddle.nn.LSTM(4, 5, direction="bidirect"),
        paddle.nn.LSTM(4, 5, time_major=True),
    ):
        assert not fusable(layer, x)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no fallback warning: nothing failed
            y, _ = lstm_layer(layer, x)
        np.testing.assert_array_equal(y.numpy(), layer(x)[0].numpy())
        with pytest.raises(ValueError, match="cannot use the C\\+\\+ op"):
            lstm_layer(layer, x, use_cpp=True)
    monkeypatch.setenv("SEQLAB_FUSED", "paddle")  # the switch shared with the other fused ops
    assert lstm_pkg._ops(None) is None


@pytest.mark.slow
def test_training_on_the_recipe_batches_follows_the_same_trajectory():
    """60 AdamW steps of the default 7 x 128 model on the CPU recipe's batches (B = 32, T = 128,
    lr 1e-3, clip 1.0), fused and plain from the same weights: the same losses and weights.

    AdamW divides by the gradients' running RMS, so float32 rounding in tiny gradients grows
    into weight differences above rounding level (a 1e-5 relative bound failed once, at 1.9e-5
    for one matrix after 100 steps); the bound is absolute, against updates of ~1e-3 a step."""
    from seqlab.tasks.reverse_digits import ReverseDigits

    task = ReverseDigits(digit_max=60, seq_len=129, batch_size=32)
    task.setup(42)
    fused, plain = model_pair()
    models = (fused, plain)
    opts = [
        paddle.optimizer.AdamW(
            learning_rate=1e-3,
            parameters=m.parameters(),
            weight_decay=0.01,
            grad_clip=paddle.nn.ClipGradByGlobalNorm(1.0),
        )
        for m in models
    ]
    losses = [[], []]
    for step in range(60):
        batch = task.train_batch(step)
        for model, opt, record in zip(models, opts, losses):
            loss = task.loss(model(batch.inputs), batch)
            loss.backward()
            opt.step()
            opt.clear_grad()
            record.append(loss.item())
    assert losses[0][-1] < losses[0][0] - 0.05  # it trained
    np.testing.assert_allclose(losses[0], losses[1], rtol=0, atol=1e-5)
    weights_p = dict(plain.named_parameters())
    for name, p in fused.named_parameters():
        assert np.abs(p.numpy() - weights_p[name].numpy()).max() <= 1e-5, name
