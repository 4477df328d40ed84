"""Shared evaluation: the digit-reversal numbers are the ones the task's own loop gave, and the
shared path runs in eval mode, without gradients, in chunks.

``OLD`` below is the evaluation code digit reversal had before tasks declared their metrics
(seqlab/tasks/reverse_digits.py at commit 70641ee), copied verbatim but for the names. The new
shared path must give the same masked_acc, exact_acc, loss and probe values for the same weights.
"""

import logging
import math

import numpy as np
import pytest

import seqlab  # noqa: F401  (imports paddle quietly)
from seqlab.evaluation import EVAL_CHUNK_ROWS, evaluate, score
from seqlab.metrics import CrossEntropy, MaskedAccuracy
from seqlab.model import nn, paddle
from seqlab.registry import MODELS
from seqlab.seeding import seed_everything
from seqlab.task import Batch, EvalSet
from seqlab.tasks.reverse_digits import HASH, ReverseDigits, score_mask


# ------------------------------------------------------------------ the old code (commit 70641ee)
def old_score_predictions(targets, preds, mask):
    targets, preds, mask = np.asarray(targets), np.asarray(preds), np.asarray(mask, dtype=bool)
    correct = mask & (preds == targets)
    scored = mask.sum(axis=1)
    per_row = np.where(scored > 0, correct.sum(axis=1) / np.maximum(scored, 1), 0.0)
    prev = np.zeros_like(mask)
    prev[:, 1:] = mask[:, :-1]
    run_start = (mask & ~prev).ravel()
    flat_mask = mask.ravel()
    run_id = (np.cumsum(run_start) - 1)[flat_mask]
    n_runs = int(run_start.sum())
    wrong = np.bincount(run_id, weights=(~correct.ravel())[flat_mask], minlength=n_runs)
    closed = np.bincount(run_id, weights=(targets.ravel() == HASH)[flat_mask], minlength=n_runs) > 0
    exact = float(np.mean(wrong[closed] == 0)) if closed.any() else math.nan
    return {"masked_acc": float(per_row.mean()) if len(per_row) else math.nan, "exact_acc": exact}


def old_cross_entropy(logits, targets):
    z = logits.astype(np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
    return float(-np.take_along_axis(logp, targets[..., None], axis=-1).mean())


def old_logits(model, inputs):
    was_training = model.training
    model.eval()
    try:
        with paddle.no_grad():
            out = [
                model(paddle.to_tensor(np.ascontiguousarray(inputs[i : i + 128]))).numpy()
                for i in range(0, len(inputs), 128)
            ]
    finally:
        if was_training:
            model.train()
    return np.concatenate(out, axis=0)


def old_evaluate(task, model):
    rows = task.eval_rows
    logits = old_logits(model, rows[:, :-1])
    targets = rows[:, 1:]
    metrics = old_score_predictions(targets, logits.argmax(axis=-1), score_mask(rows))
    metrics["loss"] = old_cross_entropy(logits, targets)
    return metrics


def old_test(task, model):
    metrics = old_evaluate(task, model)
    rows = task.probe_rows
    try:
        logits = old_logits(model, rows[:, :-1])
    except Exception:
        metrics["probe_masked_acc"] = math.nan
        metrics["probe_exact_acc"] = math.nan
        return metrics
    probe = old_score_predictions(rows[:, 1:], logits.argmax(axis=-1), score_mask(rows))
    metrics["probe_masked_acc"] = probe["masked_acc"]
    metrics["probe_exact_acc"] = probe["exact_acc"]
    return metrics


# ------------------------------------------------------------------ models
class NoisyOracle(nn.Layer):
    """Gold next tokens, but every 7th scored position of every 3rd row wrong: exact match in (0, 1)."""

    def forward(self, tokens):
        rows = tokens.numpy()
        out = np.zeros(rows.shape + (12,), dtype=np.float32)
        full = np.concatenate([rows, np.zeros_like(rows[:, :1])], axis=1)
        gold = full[:, 1:].copy()
        # The model sees only the inputs; its "gold" guess comes from the digits before the comma.
        mask = score_mask(full)
        for r in range(len(rows)):
            text = rows[r].tolist()
            for i in np.nonzero(mask[r])[0]:
                comma = max(j for j in range(i + 1) if text[j] == 10)
                k = comma - max([j for j in range(comma) if text[j] == 11] + [-1]) - 1
                back = i - comma  # 0-based index into the reversed digits; k means '#'
                gold[r, i] = HASH if back >= k else text[comma - 1 - back]
            if r % 3 == 0:
                gold[r, np.nonzero(mask[r])[0][::7]] = 0
        out[np.arange(len(rows))[:, None], np.arange(rows.shape[1]), gold] = 5.0
        return paddle.to_tensor(out)


def _model(name, **kwargs):
    seed_everything(3)
    return MODELS.get(name)(vocab_size=12, **kwargs)


@pytest.fixture(scope="module")
def task():
    t = ReverseDigits(
        digit_max=20, seq_len=65, eval_samples=100, probe_digit_min=21, probe_digit_max=40, probe_samples=40
    )
    t.setup(5)
    return t


@pytest.mark.parametrize("name", ["noisy_oracle", "rwkv7", "transformer", "lstm", "mlp"])
def test_shared_evaluation_gives_the_old_numbers(task, name):
    model = (
        NoisyOracle() if name == "noisy_oracle" else _model(name, **({"max_len": 65} if name == "transformer" else {}))
    )
    old, new = old_test(task, model), evaluate(task, model, "test")
    assert list(new) == list(old)  # the same names, in the same order
    for key in old:
        if math.isnan(old[key]):
            assert math.isnan(new[key]), key
        else:
            assert new[key] == old[key], (key, new[key], old[key])  # bit for bit: one chunk of 100 rows
    if name == "noisy_oracle":
        assert 0.0 < new["exact_acc"] < 1.0 and 0.8 < new["masked_acc"] < 1.0
        assert 0.0 < new["probe_exact_acc"] < 1.0
    if name == "transformer":  # learned positions stop at 65, probe rows have 82 tokens: NaN, as before
        assert math.isnan(new["probe_masked_acc"])
    assert evaluate(task, model, "val") == {k: new[k] for k in ("masked_acc", "exact_acc", "loss")}


def test_more_rows_than_one_chunk(task):
    big = ReverseDigits(
        digit_max=20,
        seq_len=65,
        eval_samples=EVAL_CHUNK_ROWS * 2 + 44,
        probe_samples=4,
        probe_digit_min=21,
        probe_digit_max=22,
    )
    big.setup(5)
    model = _model("mlp")
    old, new = old_evaluate(big, model), big.evaluate(model)
    assert new["masked_acc"] == pytest.approx(old["masked_acc"], rel=1e-12)
    assert new["exact_acc"] == old["exact_acc"]
    assert new["loss"] == pytest.approx(old["loss"], rel=1e-12)  # sums per chunk: rounding may differ


class Recorder(nn.Layer):
    """Uniform logits; records the batch size and mode of every call and whether gradients were on."""

    def __init__(self):
        super().__init__()
        self.w = paddle.create_parameter([1], "float32")
        self.calls = []

    def forward(self, tokens):
        out = paddle.zeros(list(tokens.shape) + [5]) + self.w * 0
        self.calls.append((int(tokens.shape[0]), self.training, out.stop_gradient))
        return out


def test_score_runs_eval_mode_without_gradients_in_chunks():
    model = Recorder()
    model.train()
    targets = np.zeros((300, 4), dtype=np.int64)
    batches = [Batch(np.zeros((300, 4), dtype=np.int64), targets), Batch(np.zeros((3, 4), dtype=np.int64), targets[:3])]
    result = score(model, [EvalSet(batches, [CrossEntropy(), MaskedAccuracy(name="acc")])], chunk_rows=128)
    assert result == {"loss": pytest.approx(math.log(5)), "acc": 1.0}  # all-zero targets, argmax 0
    assert [c[0] for c in model.calls] == [128, 128, 44, 3]
    assert not any(c[1] for c in model.calls) and all(c[2] for c in model.calls)  # eval, no grad
    assert model.training  # restored


class Short(Recorder):
    """Declares ``max_len = 4`` and, like the Transformer, raises on longer rows."""

    max_len = 4

    def forward(self, tokens):
        if tokens.shape[1] > self.max_len:
            raise ValueError("max_len is 4")
        return super().forward(tokens)


OK = Batch(np.zeros((2, 4), dtype=np.int64), np.zeros((2, 4), dtype=np.int64))
LONG = Batch(np.zeros((2, 9), dtype=np.int64), np.zeros((2, 9), dtype=np.int64))


def test_an_optional_set_longer_than_the_models_max_len_is_nan_with_a_warning(caplog):
    sets = [
        EvalSet([OK], [CrossEntropy()]),
        EvalSet([LONG], [CrossEntropy()], prefix="probe_", optional=True, about="rows of 9 tokens"),
    ]
    model = Short()
    with caplog.at_level(logging.WARNING):
        result = score(model, sets)
    assert result["loss"] == pytest.approx(math.log(5)) and math.isnan(result["probe_loss"])
    assert "probe set skipped" in caplog.text and "rows of 9 tokens" in caplog.text and "max_len is 4" in caplog.text
    assert [c[0] for c in model.calls] == [2]  # the long rows never reach the model
    with pytest.raises(ValueError, match="max_len"):  # a set that is not optional fails loudly
        score(Short(), [EvalSet([LONG], [CrossEntropy()])])


def test_the_length_check_runs_per_batch_of_a_generator(caplog):
    def batches():
        yield OK
        yield LONG

    with caplog.at_level(logging.WARNING):
        result = score(Short(), [EvalSet(batches(), [CrossEntropy()], prefix="probe_", optional=True)])
    assert math.isnan(result["probe_loss"]) and "its rows of 9 tokens" in caplog.text


@pytest.mark.parametrize("declares_max_len", [True, False])
def test_a_model_bug_on_an_optional_set_propagates(declares_max_len):
    """Only the declared failure (rows beyond ``max_len``) gives NaN: a bug must not read as "n/a"."""

    class Buggy(Recorder):
        def forward(self, tokens):
            raise RuntimeError("index 9 is out of bounds")  # a model bug, on rows it should read

    model = Buggy()
    if declares_max_len:
        model.max_len = 16
    optional = EvalSet([LONG], [CrossEntropy()], prefix="probe_", optional=True, about="rows of 9 tokens")
    with pytest.raises(RuntimeError, match="out of bounds"):
        score(model, [optional])


def test_a_model_without_max_len_that_fails_on_long_rows_is_not_hidden():
    """Without a declared ``max_len`` the rows are not known to be too long, so the error shows."""

    class Undeclared(Recorder):
        def forward(self, tokens):
            if tokens.shape[1] > 4:
                raise ValueError("cannot read 9 tokens")
            return super().forward(tokens)

    with pytest.raises(ValueError, match="cannot read"):
        score(Undeclared(), [EvalSet([LONG], [CrossEntropy()], prefix="probe_", optional=True)])
