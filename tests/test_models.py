"""Every registered model passes seqlab.testing; the seed models match the seed exactly."""

import math
from types import SimpleNamespace

import numpy as np
import paddle
import paddle.nn.functional as F
import pytest
from paddle import nn

import seqlab
from seqlab import MODELS
from seqlab.models.rwkv7 import RWKV7, seed_param_name
from seqlab.models.transformer import Transformer
from seqlab.models.transformer_modern import TransformerModern
from seqlab.registry import missing_requirement
from seqlab.testing import assert_causal, assert_step_matches_forward, run_model_checks


@pytest.mark.parametrize("name", MODELS.names())
def test_model_contract(name):
    if missing_requirement(MODELS.get(name)):  # e.g. the PaddleNLP plugins: `make test-nlp`
        pytest.skip(f"{name} needs an optional package: {missing_requirement(MODELS.get(name))}")
    run_model_checks(MODELS.get(name))


@pytest.mark.parametrize("name, count", [("rwkv7", 30_732), ("transformer", 30_380), ("lstm", 877_452)])
def test_seed_parameter_counts(name, count):
    assert MODELS.get(name)().num_parameters() == count


def test_suite_catches_a_leak():
    class Leaky(seqlab.Model):
        """Sees the whole sequence (mean over time): not causal."""

        documented_params = 12 * 8 + 8 * 12 + 12

        def __init__(self, vocab_size: int = 12):
            super().__init__()
            self.vocab_size = vocab_size
            self.emb = nn.Embedding(vocab_size, 8)
            self.head = nn.Linear(8, vocab_size)

        def forward(self, tokens):
            h = self.emb(tokens)
            return self.head(h + h.mean(axis=1, keepdim=True))

    with pytest.raises(AssertionError, match="not causal"):
        assert_causal(Leaky)


def test_step_check_catches_a_wrong_step_and_a_wrong_state_size():
    MLP = MODELS.get("mlp")

    class ForgetfulMLP(MLP):
        """Its step forgets the window: it sees only the current token."""

        def step(self, tokens, state):
            return super().step(tokens, paddle.zeros_like(state))

    class MiscountedMLP(MLP):
        """Right step, wrong state_size."""

        def state_size(self, seq_len):
            return super().state_size(seq_len) + 1

    with pytest.raises(AssertionError, match="step\\(\\) at position 1 .* RNN mode and forward disagree"):
        assert_step_matches_forward(ForgetfulMLP, seq_len=20)
    with pytest.raises(AssertionError, match="holds 256 floats per sequence but state_size\\(20\\) reports 257"):
        assert_step_matches_forward(MiscountedMLP, seq_len=20)
    assert assert_step_matches_forward(MLP, seq_len=20) <= 1e-5


@pytest.mark.parametrize("name", MODELS.names())
def test_every_registered_model_has_rnn_mode(name):
    cls = MODELS.get(name)  # the class: the PaddleNLP plugins cannot be built without their extra
    assert callable(getattr(cls, "init_state", None)) and callable(getattr(cls, "step", None))


# ------------------------------------------------------------------------------------------------
# The seed notebook's RWKV-7, transcribed (indentation restored) as the oracle.


def _seed_wkv(w, q, k, v, a, b):
    B, T, H, N = w.shape
    w = paddle.exp(-paddle.exp(w))
    state = paddle.zeros([B, H, N, N])
    ys = []
    for t in range(T):
        wt, qt, kt, vt, at, bt = (x[:, t] for x in (w, q, k, v, a, b))
        sa = (state * at.unsqueeze(2)).sum(axis=-1, keepdim=True)
        state = state * wt.unsqueeze(2) + sa * bt.unsqueeze(2) + vt.unsqueeze(3) * kt.unsqueeze(2)
        ys.append((state * qt.unsqueeze(2)).sum(axis=-1))
    return paddle.stack(ys, axis=1)


class _SeedTmix(nn.Layer):
    def __init__(self, args, layer_id):
        super().__init__()
        C, N = args.n_embd, args.head_size
        H = C // N
        self.layer_id, self.n_head = layer_id, H
        for name in ("x_r", "x_w", "x_k", "x_v", "x_a", "x_g", "w0", "a0", "v0", "k_k", "k_a"):
            setattr(self, name, self.create_parameter([1, 1, C]))
        for name in ("w", "a", "v", "g"):
            setattr(self, name + "1", self.create_parameter([C, 8]))
            setattr(self, name + "2", self.create_parameter([8, C]))
        self.r_k = self.create_parameter([H, N])
        self.receptance = nn.Linear(C, C, bias_attr=False)
        self.key = nn.Linear(C, C, bias_attr=False)
        self.value = nn.Linear(C, C, bias_attr=False)
        self.output = nn.Linear(C, C, bias_attr=False)
        self.ln_x = nn.GroupNorm(H, C, epsilon=64e-5)

    def forward(self, x, v_first=None):
        B, T, C = x.shape
        H = self.n_head
        xx = paddle.concat([paddle.zeros([B, 1, C]), x[:, :-1, :]], axis=1) - x
        xr, xw, xk = x + xx * self.x_r, x + xx * self.x_w, x + xx * self.x_k
        xv, xa, xg = x + xx * self.x_v, x + xx * self.x_a, x + xx * self.x_g
        r = self.receptance(xr)
        w = -F.softplus(-(self.w0 + paddle.tanh(xw @ self.w1) @ self.w2)) - 0.5
        k = self.key(xk)
        v = self.value(xv)
        if self.layer_id == 0:
            v_first = v
        else:
            v = v + (v_first - v) * F.sigmoid(self.v0 + (xv @ self.v1) @ self.v2)
        a = F.sigmoid(self.a0 + (xa @ self.a1) @ self.a2)
        g = F.sigmoid(xg @ self.g1) @ self.g2
        kk = k * self.k_k
        kk = F.normalize(kk.reshape([B, T, H, -1]), axis=-1, p=2.0, epsilon=1e-12).reshape([B, T, C])
        k = k * (1 + (a - 1) * self.k_a)
        heads = [t.reshape([B, T, H, -1]) for t in (w, r, k, v, -kk, kk * a)]
        x = _seed_wkv(*heads).reshape([B, T, C])
        x = self.ln_x(x.reshape([B * T, C])).reshape([B, T, C])
        rh, kh, vh = (t.reshape([B, T, H, -1]) for t in (r, k, v))
        x = x + ((rh * kh * self.r_k).sum(axis=-1, keepdim=True) * vh).reshape([B, T, C])
        return self.output(x * g), v_first


class _SeedFFN(nn.Layer):
    def __init__(self, C):
        super().__init__()
        self.x_k = self.create_parameter([1, 1, C])
        self.key = nn.Linear(C, C * 4, bias_attr=False)
        self.value = nn.Linear(C * 4, C, bias_attr=False)

    def forward(self, x):
        B, T, C = x.shape
        xx = paddle.concat([paddle.zeros([B, 1, C]), x[:, :-1, :]], axis=1) - x
        return self.value(paddle.pow(F.relu(self.key(x + xx * self.x_k)), 2))


class _SeedModel(nn.Layer):
    def __init__(self, V=12, C=32):
        super().__init__()
        args = SimpleNamespace(head_size=16, n_embd=C, n_layer=2)
        self.e = nn.Embedding(V, C)
        self.ln1a, self.ln1b = nn.LayerNorm(C), nn.LayerNorm(C)
        self.rwkv1, self.ffn1 = _SeedTmix(args, 0), _SeedFFN(C)
        self.ln2a, self.ln2b = nn.LayerNorm(C), nn.LayerNorm(C)
        self.rwkv2, self.ffn2 = _SeedTmix(args, 1), _SeedFFN(C)
        self.lno = nn.LayerNorm(C)
        self.o = nn.Linear(C, V, bias_attr=True)

    def forward(self, x):
        x = self.e(x)
        xx, v_first = self.rwkv1(self.ln1a(x), None)
        x = x + xx
        x = x + self.ffn1(self.ln1b(x))
        xx, v_first = self.rwkv2(self.ln2a(x), v_first)
        x = x + xx
        x = x + self.ffn2(self.ln2b(x))
        return self.o(self.lno(x))


def _perturbed_rwkv7(seed=0, **kwargs):
    """An RWKV7 with noise on every weight, so zero-initialised paths are exercised too."""
    paddle.seed(seed)
    model = RWKV7(**kwargs)
    rng = np.random.default_rng(seed)
    with paddle.no_grad():
        for p in model.parameters():
            p.set_value(p.numpy() + 0.2 * rng.standard_normal(p.shape).astype(np.float32))
    return model


def test_rwkv7_matches_seed_model():
    model = _perturbed_rwkv7()
    seed_model = _SeedModel()
    seed_model.set_state_dict({seed_param_name(n): p for n, p in model.named_parameters()})
    tokens = paddle.to_tensor(np.random.default_rng(0).integers(0, 12, (2, 20)), dtype="int64")
    np.testing.assert_allclose(model(tokens).numpy(), seed_model(tokens).numpy(), rtol=1e-5, atol=1e-5)


def test_rwkv7_param_groups_match_seed_name_rule():
    model = RWKV7()
    seed_names = {seed_param_name(n): n for n, _ in model.named_parameters()}
    assert set(seed_names) == {n for n, _ in _SeedModel().named_parameters()}

    def seed_rule(n):  # the seed notebook's optimizer grouping, verbatim
        return ("." + "weight" in n or "emb" in n) and ("ln" not in n)

    expected_decay = {seed_names[n] for n in seed_names if seed_rule(n)}
    groups = model.param_groups()
    name_of = {id(p): n for n, p in model.named_parameters()}
    assert {name_of[id(p)] for p in groups["decay"]} == expected_decay
    assert {name_of[id(p)] for p in groups["no_decay"]} == set(seed_names.values()) - expected_decay
    assert len(expected_decay) == 1 + 2 * (4 + 2) + 1  # emb, 4 att + 2 ffn matrices per layer, head


def test_rwkv7_init_follows_seed():
    paddle.seed(3)
    model = RWKV7()
    C, N = 32, 16
    att0, att1 = model.blocks[0].att, model.blocks[1].att
    for block in model.blocks:
        assert not block.att.output.weight.numpy().any()
        assert not block.ffn.value.weight.numpy().any()
        assert not block.ffn.x_k.numpy().any()
        for lora in ("w1", "a1", "v1", "g1"):
            assert not getattr(block.att, lora).numpy().any()
        for lora in ("w2", "a2", "v2", "g2"):  # orthogonal rows, scale 0.1
            m = getattr(block.att, lora).numpy()
            np.testing.assert_allclose(m @ m.T, 0.01 * np.eye(8), atol=1e-6)
        assert np.abs(block.att.receptance.weight.numpy()).max() <= 0.5 / math.sqrt(C)
        assert np.abs(block.att.key.weight.numpy()).max() <= 0.05 / math.sqrt(C)
    for c in (0, 1, 17, 31):  # layer 0: ratio_1_to_almost0 = 1; layer 1 of 2: 0.5
        assert att0.x_r.numpy()[0, 0, c] == pytest.approx(1 - (c / C) ** 0.2, abs=1e-6)
        assert att0.x_w.numpy()[0, 0, c] == pytest.approx(1 - (c / C) ** 0.9, abs=1e-6)
        assert att1.x_k.numpy()[0, 0, c] == pytest.approx(1 - (c / C) ** (0.7 * 0.5), abs=1e-6)
        linear = c / (C - 1) - 0.5
        z = ((c % N) - (N - 1) / 2) / ((N - 1) / 2)
        zigzag = z * abs(z)
        for att, ratio_0_to_1 in ((att0, 0.0), (att1, 1.0)):
            www = -6 + 6 * (c / (C - 1)) ** (1 + ratio_0_to_1**0.3)
            assert att.w0.numpy()[0, 0, c] == pytest.approx(www + 0.5 + zigzag * 2.5, abs=1e-5)
        assert att0.a0.numpy()[0, 0, c] == pytest.approx(-0.19 + zigzag * 0.3 + linear * 0.4, abs=1e-6)
        assert att0.v0.numpy()[0, 0, c] == pytest.approx(0.73 - linear * 0.4, abs=1e-6)
        assert att0.k_k.numpy()[0, 0, c] == pytest.approx(0.71 - linear * 0.1, abs=1e-6)
    np.testing.assert_allclose(att0.k_a.numpy(), 1.02, atol=1e-7)
    np.testing.assert_allclose(att0.r_k.numpy(), -0.04, atol=1e-7)
    # paddle.seed alone makes the init reproducible (ortho_init draws from Paddle's generator)
    paddle.seed(3)
    again = RWKV7()
    for (n, p), (_, q) in zip(model.named_parameters(), again.named_parameters()):
        np.testing.assert_array_equal(p.numpy(), q.numpy(), err_msg=n)
    RWKV7(n_layer=1)  # ratio_0_to_1 guard


def test_rwkv7_rnn_mode_matches_forward():
    model = _perturbed_rwkv7(seed=1)
    model.eval()
    tokens = paddle.to_tensor(np.random.default_rng(1).integers(0, 12, (3, 16)), dtype="int64")
    full = model(tokens).numpy()
    state = model.init_state(3)
    with paddle.no_grad():
        for t in range(tokens.shape[1]):
            logits, state = model.step(tokens[:, t], state)
            np.testing.assert_allclose(logits.numpy(), full[:, t], rtol=1e-5, atol=1e-5, err_msg=f"t={t}")
    assert model.state_size(128) == model.state_size(10_000) == 2 * (2 * 16 * 16 + 2 * 32)


# ------------------------------------------------------------------------------------------------


def test_transformer_matches_seed_model_and_caches_mask():
    paddle.seed(0)
    model = Transformer()
    model.eval()
    tokens = paddle.to_tensor(np.random.default_rng(0).integers(0, 12, (2, 20)), dtype="int64")
    out = model(tokens)
    # the seed's forward, with its numpy mask rebuilt on every call
    T = 20
    h = model.token_emb(tokens) + model.pos_emb(paddle.arange(T, dtype="int64").unsqueeze(0))
    mask = paddle.to_tensor(np.triu(np.ones((T, T)) * -1e9, k=1), dtype="float32").reshape([1, 1, T, T])
    seed_out = model.head(model.ln_f(model.transformer(h, src_mask=mask)))
    np.testing.assert_array_equal(out.numpy(), seed_out.numpy())
    assert model.transformer.norm is None
    mask_obj = model._causal_masks[20]
    model(tokens[:, :10])
    model(tokens)
    assert model._causal_masks[20] is mask_obj and set(model._causal_masks) == {10, 20}
    assert not any("mask" in k for k in model.state_dict())
    model(paddle.zeros([1, 129], dtype="int64"))
    with pytest.raises(ValueError, match="max_len"):
        model(paddle.zeros([1, 130], dtype="int64"))
    assert model.state_size(128) == 2 * 2 * 128 * 32


def test_transformer_modern_runs_longer_than_trained():
    paddle.seed(0)
    model = TransformerModern()
    model.eval()
    tokens = paddle.to_tensor(np.random.default_rng(0).integers(0, 12, (1, 300)), dtype="int64")
    out = model(tokens).numpy()
    assert out.shape == (1, 300, 12) and np.isfinite(out).all()
    # prefixes agree with the full sequence (causal at every length)
    np.testing.assert_allclose(model(tokens[:, :50]).numpy(), out[:, :50], rtol=1e-5, atol=1e-5)
    assert_causal(TransformerModern, positions=(0, 150, 299), seq_len=300)


def test_transformer_modern_attention_matches_manual_softmax():
    paddle.seed(0)
    attn = TransformerModern().layers[0].attn
    x = paddle.randn([2, 7, 32])
    B, T, H, D = 2, 7, 2, 16
    q = attn.rope(attn.q_proj(x).reshape([B, T, H, D])).transpose([0, 2, 1, 3])
    k = attn.rope(attn.k_proj(x).reshape([B, T, H, D])).transpose([0, 2, 1, 3])
    v = attn.v_proj(x).reshape([B, T, H, D]).transpose([0, 2, 1, 3])
    scores = q @ k.transpose([0, 1, 3, 2]) / math.sqrt(D)
    scores = scores + paddle.triu(paddle.full([T, T], float("-inf")), diagonal=1)
    y = (F.softmax(scores, axis=-1) @ v).transpose([0, 2, 1, 3]).reshape([B, T, 32])
    np.testing.assert_allclose(attn(x).numpy(), attn.output_proj(y).numpy(), rtol=1e-5, atol=1e-6)
