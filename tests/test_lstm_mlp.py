"""The seed's LSTM baseline and the fixed-window MLP floor."""

import inspect

import numpy as np
import pytest

import seqlab  # noqa: F401
from seqlab.model import paddle
from seqlab.models.lstm import LSTM
from seqlab.models.mlp import MLP
from seqlab.registry import MODELS


def tokens(B, T, seed=0):
    return paddle.to_tensor(np.random.default_rng(seed).integers(0, 12, size=(B, T)))


def test_lstm_default_has_the_seeds_877452_parameters():
    model = LSTM()
    assert model.num_parameters() == 877452
    assert LSTM.documented_params == 877452
    assert model.hidden_sizes == [128] * 7
    assert len(model.lstm_layers) == 7
    assert model.state_size(128) == 2 * 7 * 128 == model.state_size(10_000)


def test_lstm_custom_stack_shapes_causality_and_rnn_mode():
    paddle.seed(0)
    model = LSTM(hidden_sizes=[8, 16], embed_dim=4)
    model.eval()
    assert model.state_size(50) == 2 * 24
    x = tokens(2, 9)
    out = model(x)
    assert out.shape == [2, 9, 12]
    y = x.numpy().copy()
    y[:, 5] = (y[:, 5] + 1) % 12
    out2 = model(paddle.to_tensor(y))
    np.testing.assert_allclose(out[:, :5].numpy(), out2[:, :5].numpy(), atol=1e-6)
    assert not np.allclose(out[:, 5:].numpy(), out2[:, 5:].numpy())
    # Token-by-token RNN mode gives the same logits as the parallel forward.
    state = model.init_state(2)
    steps = []
    for t in range(9):
        logits, state = model.step(x[:, t], state)
        steps.append(logits.numpy())
    np.testing.assert_allclose(np.stack(steps, axis=1), out.numpy(), atol=1e-5)


def test_mlp_default_parameters():
    model = MLP()
    assert model.num_parameters() == MLP.documented_params == 29794
    assert (model.embed_dim, model.window) == (16, 16)
    assert model.state_size(128) == 16 * 16


def test_mlp_is_causal_and_limited_to_its_window():
    paddle.seed(1)
    window = 4
    model = MLP(window=window, embed_dim=3, hidden_dim=10)
    x = tokens(2, 20, seed=1)
    base = model(x).numpy()
    assert base.shape == (2, 20, 12)
    s = 8
    y = x.numpy().copy()
    y[:, s] = (y[:, s] + 1) % 12
    changed = model(paddle.to_tensor(y)).numpy()
    # Before s: unchanged (causal). From s + window on: unchanged (out of reach).
    np.testing.assert_allclose(changed[:, :s], base[:, :s], atol=1e-6)
    np.testing.assert_allclose(changed[:, s + window :], base[:, s + window :], atol=1e-6)
    for t in range(s, s + window):
        assert not np.allclose(changed[:, t], base[:, t]), t
    # Short rows (shorter than the window) work: zeros stand in before the start.
    assert model(tokens(1, 2)).shape == [1, 2, 12]


@pytest.mark.parametrize("cls", [LSTM, MLP])
def test_signature_is_the_configuration(cls):
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    assert params[0].name == "vocab_size" and params[0].default == 12
    for p in params:
        assert p.annotation is not inspect.Parameter.empty and p.default is not inspect.Parameter.empty
        assert f"{p.name}:" in cls.__doc__
    assert cls.summary() == cls.__doc__.strip().splitlines()[0]
    assert MODELS.name_of(cls) == cls.__name__.lower()
