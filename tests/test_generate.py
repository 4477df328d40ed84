"""seqlab.generate: greedy and sampled decoding, RNN mode against the forward fallback, and the
digit-reversal task's text interface."""

from __future__ import annotations

import numpy as np
import paddle
import pytest

from seqlab import MODELS
from seqlab.errors import SeqlabError
from seqlab.generate import generate, generate_stream, generate_text, sample_next
from seqlab.tasks.reverse_digits import ReverseDigits
from seqlab.testing import _perturb

PROMPTS = [[1, 2, 3, 4, 5, 10], [9, 10], [7, 7, 0, 1, 3, 3, 8, 10]]  # ragged on purpose


def _model(name, seed=0, **kwargs):
    """A model with perturbed weights, so its greedy choices are not all one token."""
    paddle.seed(seed)
    model = MODELS.get(name)(**kwargs)
    _perturb(model, seed, scale=0.3)
    return model


@pytest.mark.parametrize("name", ["rwkv7", "transformer", "transformer_modern", "lstm", "mlp"])
def test_rnn_mode_and_forward_fallback_give_the_same_greedy_tokens(name):
    model = _model(name)
    by_step = generate(model, PROMPTS, max_new_tokens=12, use_step=True)
    by_forward = generate(model, PROMPTS, max_new_tokens=12, use_step=False)
    assert by_step == by_forward
    assert [len(out) for out in by_step] == [12, 12, 12]
    assert len({tuple(out) for out in by_step}) > 1  # the prompts matter
    assert any(len(set(out)) > 1 for out in by_step)  # and so does the position


def test_greedy_is_deterministic_and_equals_the_argmax_of_forward():
    model = _model("transformer_modern")
    prompt = [3, 1, 4, 1, 5, 10]
    out = generate(model, prompt, max_new_tokens=8)
    assert out == generate(model, prompt, max_new_tokens=8)
    # the same thing by hand: append the argmax of forward's last position, 8 times
    context = list(prompt)
    with paddle.no_grad():
        for _ in range(8):
            logits = model(paddle.to_tensor([context], dtype="int64"))[0, -1].numpy()
            context.append(int(np.argmax(logits)))
    assert out == context[len(prompt) :]


def test_batched_ragged_prompts_equal_one_at_a_time():
    model = _model("rwkv7")
    together = generate(model, PROMPTS, max_new_tokens=7)
    assert together == [generate(model, p, max_new_tokens=7) for p in PROMPTS]


def test_sampling_is_reproducible_under_a_seed_and_varies_without_one_fixed():
    model = _model("lstm", hidden_sizes=[32, 32])
    kwargs = dict(max_new_tokens=20, temperature=1.5)
    first = generate(model, PROMPTS, seed=7, **kwargs)
    assert first == generate(model, PROMPTS, seed=7, **kwargs)
    assert first != generate(model, PROMPTS, seed=8, **kwargs)
    assert first != generate(model, PROMPTS, **kwargs | {"temperature": 0.0})


def test_top_k_restricts_samples_and_top_1_is_greedy():
    logits = np.array([0.0, 3.0, 2.5, -1.0, 2.9])
    rng = np.random.default_rng(0)
    draws = {sample_next(logits, 5.0, top_k=2, rng=rng) for _ in range(300)}
    assert draws == {1, 4}  # the two largest, both drawn at this temperature
    assert all(sample_next(logits, 2.0, top_k=1, rng=rng) == 1 for _ in range(20))
    assert sample_next(logits, 0.0) == 1
    freq = np.bincount([sample_next(logits, 1.0, rng=rng) for _ in range(4000)], minlength=5) / 4000
    p = np.exp(logits) / np.exp(logits).sum()
    np.testing.assert_allclose(freq, p, atol=0.03)  # temperature 1: the model's distribution


def test_stop_token_ends_a_sequence_and_is_included():
    model = _model("mlp")
    free = generate(model, PROMPTS, max_new_tokens=15)
    stop = free[0][3]
    out = generate(model, PROMPTS, max_new_tokens=15, stop_token=stop)
    for free_i, out_i in zip(free, out):
        cut = free_i.index(stop) + 1 if stop in free_i else len(free_i)
        assert out_i == free_i[:cut]


def test_stream_yields_tokens_as_they_come():
    model = _model("transformer")
    events = list(generate_stream(model, PROMPTS, max_new_tokens=3))
    # lockstep: the shortest prompt (2 tokens) produces first
    assert events[0][0] == 1
    assert sorted(i for i, _ in events) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    per_seq = [[t for i, t in events if i == s] for s in range(3)]
    assert per_seq == generate(model, PROMPTS, max_new_tokens=3)


def test_model_mode_is_restored():
    model = _model("transformer")
    model.train()
    generate(model, [1, 2], max_new_tokens=2)
    assert model.training
    model.eval()
    generate(model, [1, 2], max_new_tokens=2)
    assert not model.training


def test_learned_positions_stop_at_max_len_with_a_clear_error():
    model = _model("transformer")  # 129 positions
    assert len(generate(model, [1] * 100, max_new_tokens=30)) == 30  # 100 + 30 - 1 = 129 read
    with pytest.raises(SeqlabError, match=r"max_len=129.*prompt \+ new tokens <= 129"):
        generate(model, [1] * 100, max_new_tokens=31)
    # stepping by hand past the table: the same message, at the step that would need it
    state = model.init_state(1, max_len=129)
    with paddle.no_grad():
        for _ in range(129):
            _, state = model.step(paddle.to_tensor([1], dtype="int64"), state)
        with pytest.raises(SeqlabError, match="max_len=129"):
            model.step(paddle.to_tensor([1], dtype="int64"), state)


def test_rope_transformer_cache_grows_past_its_first_size():
    model = _model("transformer_modern")
    model.eval()
    tokens = paddle.to_tensor(np.random.default_rng(0).integers(0, 12, (2, 40)), dtype="int64")
    with paddle.no_grad():
        full = model(tokens).numpy()
        tol = 1e-5 * np.abs(full).max()  # as seqlab.testing's step check: relative to the scale
        state = model.init_state(2, max_len=8)  # grows 8 -> 16 -> 32 -> 64
        for t in range(40):
            logits, state = model.step(tokens[:, t], state)
            assert np.abs(logits.numpy() - full[:, t]).max() <= tol, t
    assert state.capacity == 64 and state.length == 40


@pytest.mark.parametrize(
    "bad, match",
    [
        (dict(prompts=[]), "at least one prompt"),
        (dict(prompts=[[1, 2], []]), "prompt 1 is empty"),
        (dict(prompts=[1, 12]), "token id 12, outside the model's vocabulary 0..11"),
        (dict(prompts="12,"), "encode text first"),
        (dict(temperature=-1.0), "temperature"),
        (dict(top_k=0), "top_k"),
        (dict(max_new_tokens=-1), "max_new_tokens"),
    ],
)
def test_bad_arguments_are_seqlab_errors(bad, match):
    args = dict(prompts=[1, 2], max_new_tokens=3) | bad
    with pytest.raises(SeqlabError, match=match):
        generate(_model("mlp"), **args)


def test_forward_only_plugin_uses_the_fallback():
    class ForwardOnly(MODELS.get("mlp")):
        init_state = None  # no RNN mode
        step = None

    paddle.seed(0)
    model = ForwardOnly()
    _perturb(model, 0, scale=0.3)
    reference = MODELS.get("mlp")()
    reference.set_state_dict(model.state_dict())
    assert generate(model, PROMPTS, max_new_tokens=5) == generate(reference, PROMPTS, max_new_tokens=5)
    with pytest.raises(SeqlabError, match="no RNN mode"):
        generate(model, PROMPTS, max_new_tokens=5, use_step=True)


# ------------------------------------------------------------------ the task's text interface


def test_reverse_digits_encode_decode_round_trip():
    task = ReverseDigits()
    assert task.encode("12345,54321#") == [1, 2, 3, 4, 5, 10, 5, 4, 3, 2, 1, 11]
    assert task.decode([1, 2, 3, 4, 5, 10, 5, 4, 3, 2, 1, 11]) == "12345,54321#"
    assert task.decode(task.encode("0,0#9")) == "0,0#9"
    with pytest.raises(SeqlabError, match=r"character 'x' \(position 3 of '12x4,'\)"):
        task.encode("12x4,")
    with pytest.raises(SeqlabError, match="character ' '"):
        task.encode("12 ,")


def test_reverse_digits_expected_continuation():
    task = ReverseDigits()
    assert task.expected_continuation("12345,") == "54321#"
    assert task.expected_continuation("12345") == ",54321#"
    assert task.expected_continuation("12,21#907,") == "709#"  # the last number counts
    assert task.is_correct_continuation("12345,", "54321#")
    assert task.is_correct_continuation("12345,", "54321#8,8#")  # what follows is ignored
    assert not task.is_correct_continuation("12345,", "54312#")
    assert not task.is_correct_continuation("12345,", "54321")  # no closing '#'
    for bad in ("12,3", ",", "12#"):
        with pytest.raises(SeqlabError, match="does not end in a number"):
            task.expected_continuation(bad)


def test_generate_text_decodes_and_stops_at_hash():
    task = ReverseDigits()
    model = _model("rwkv7")
    texts = generate_text(model, task, ["12345,", "9,"], max_new_tokens=10)
    ids = generate(model, [task.encode("12345,"), task.encode("9,")], max_new_tokens=10, stop_token=11)
    assert texts == [task.decode(i) for i in ids]
    assert all(len(t) <= 10 and ("#" not in t[:-1]) for t in texts)
    with pytest.raises(SeqlabError, match="character 'a'"):
        generate_text(model, task, "1a,", max_new_tokens=3)
