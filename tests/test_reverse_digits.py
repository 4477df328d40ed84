"""The digit-reversal task: data format, determinism, the seed's mask, and the metrics."""

import logging
import math

import numpy as np
import pytest

import seqlab  # noqa: F401  (imports paddle quietly)
from seqlab.errors import SeqlabError
from seqlab.model import nn, paddle
from seqlab.tasks.reverse_digits import (
    COMMA,
    HASH,
    ReverseDigits,
    generate_rows,
    score_mask,
    score_predictions,
)

TOK = {**{str(i): i for i in range(10)}, ",": COMMA, "#": HASH}


def encode(text):
    return np.array([[TOK[c] for c in text]], dtype=np.int64)


# ---------------------------------------------------------------- the seed's two state machines
def seed_mask_rwkv(x_ids):
    """Literal copy of the RWKV notebook's mask (seed 000, ~line 397)."""
    y_len = len(x_ids) - 1
    mask = []
    mode = 0
    for tok in x_ids:
        if mode == 1:
            mask.append(True)
        else:
            mask.append(False)
        if tok == COMMA:
            mode = 1
        elif tok == HASH:
            mode = 0
    mask = mask[1:]
    return mask[:y_len]


def seed_mask_transformer_lstm(x_ids):
    """Literal copy of the Transformer/LSTM notebooks' mask (seed 000, ~lines 677 and 895)."""
    y_len = len(x_ids) - 1
    mask = []
    mode = False
    for tok in x_ids:
        if tok == COMMA:
            mode = True
            mask.append(True)
        elif tok == HASH:
            mode = False
            mask.append(False)
        else:
            mask.append(mode)
    return mask[:y_len]


def seed_accuracy(x_ids, z_ids, mask):
    """The seed's per-sample accuracy loop."""
    y_ids = x_ids[1:]
    n_correct = sum(1 for i, m in enumerate(mask) if m and y_ids[i] == z_ids[i])
    n_tokens = sum(mask)
    return n_correct / n_tokens if n_tokens > 0 else 0.0


# ------------------------------------------------------------------------------ test models
class TableModel(nn.Layer):
    """Returns fixed logits for rows it knows: one-hot of the gold next tokens (an oracle)."""

    def __init__(self, rows_list, corrupt=None):
        super().__init__()
        self.table = {}
        for rows in rows_list:
            for row in rows:
                targets = row[1:].copy()
                if corrupt is not None:
                    targets = corrupt(row[:-1], targets)
                self.table[row[:-1].tobytes()] = targets
        self.seen_training = []

    def forward(self, tokens):
        self.seen_training.append(self.training)
        x = tokens.numpy()
        targets = np.stack([self.table[r.tobytes()] for r in x])
        logits = np.eye(12, dtype=np.float32)[targets] * 10.0
        return paddle.to_tensor(logits)


class ConstantModel(nn.Layer):
    """Predicts the same token everywhere (zero logits when ``token`` is None: uniform)."""

    def __init__(self, token=None, max_len=None):
        super().__init__()
        self.token = token
        self.max_len = max_len

    def forward(self, tokens):
        B, T = tokens.shape
        if self.max_len is not None and T > self.max_len:
            raise ValueError(f"sequence length {T} exceeds max_len {self.max_len}")
        logits = np.zeros([B, T, 12], dtype=np.float32)
        if self.token is not None:
            logits[..., self.token] = 1.0
        return paddle.to_tensor(logits)


@pytest.fixture(scope="module")
def task():
    t = ReverseDigits(eval_samples=40, probe_samples=10)
    t.setup(7)
    return t


# ------------------------------------------------------------------------------ mask semantics
def test_mask_of_hand_written_rows():
    # targets of "12,21#3,3#" are "2,21#3,3#": the reversed digits and each '#' are scored.
    assert score_mask(encode("12,21#3,3#"))[0].tolist() == [
        False,
        False,
        True,
        True,
        True,
        False,
        False,
        True,
        True,
    ]
    # A segment cut off by the row end is scored for the positions present.
    assert score_mask(encode("123,32"))[0].tolist() == [False, False, False, True, True]
    # A row ending right at the comma has nothing scored yet.
    assert score_mask(encode("45,"))[0].tolist() == [False, False]
    for text in ("12,21#3,3#", "123,32", "45,", "0,0#17,71#9"):
        x = encode(text)[0].tolist()
        assert score_mask(encode(text))[0].tolist() == seed_mask_rwkv(x) == seed_mask_transformer_lstm(x)


def test_both_seed_state_machines_agree_with_score_mask():
    rng = np.random.default_rng(0)
    generated = generate_rows(rng, 64, 129, 1, 60)
    arbitrary = rng.integers(0, 12, size=(64, 40))  # any tokens, not just well-formed rows
    for rows in (generated, arbitrary):
        mask = score_mask(rows)
        for row, m in zip(rows, mask):
            x = row.tolist()
            assert m.tolist() == seed_mask_rwkv(x)
            assert m.tolist() == seed_mask_transformer_lstm(x)


def test_mask_is_reversed_digits_and_hash():
    rows = generate_rows(np.random.default_rng(1), 32, 129, 1, 60)
    mask = score_mask(rows)
    targets = rows[:, 1:]
    # Every '#' is scored, no comma ever is, and each row has something scored.
    assert mask[targets == HASH].all()
    assert not mask[targets == COMMA].any()
    assert (mask.sum(axis=1) > 0).all()


# ----------------------------------------------------------------------------------- batches
def test_train_batch_shapes_dtypes_and_mask(task):
    batch = task.train_batch(0)
    assert batch.inputs.shape == [256, 128] and batch.targets.shape == [256, 128]
    assert batch.inputs.dtype == paddle.int64 and batch.targets.dtype == paddle.int64
    assert batch.mask.dtype == paddle.bool
    x, y, m = batch.inputs.numpy(), batch.targets.numpy(), batch.mask.numpy()
    assert (x[:, 1:] == y[:, :-1]).all()
    rows = np.concatenate([x, y[:, -1:]], axis=1)
    assert (m == score_mask(rows)).all()


def test_batches_deterministic_in_seed_and_step():
    a, b = ReverseDigits(), ReverseDigits()
    a.setup(3)
    b.setup(3)
    np.random.seed(0)
    first = a.train_batch(5).inputs.numpy()
    np.random.seed(99)  # global RNG state must not matter
    np.random.rand(10)
    assert (b.train_batch(5).inputs.numpy() == first).all()
    assert (a.train_batch(5).inputs.numpy() == first).all()  # nor call order
    assert not (a.train_batch(6).inputs.numpy() == first).all()
    b.setup(4)
    assert not (b.train_batch(5).inputs.numpy() == first).all()


def test_eval_set_is_fixed_and_independent_of_run_seed():
    a, b = ReverseDigits(eval_samples=10), ReverseDigits(eval_samples=10)
    a.setup(1)
    b.setup(2)
    assert (a.eval_rows == b.eval_rows).all()
    c = ReverseDigits(eval_samples=10, eval_seed=5)
    assert not (c.eval_rows == a.eval_rows).all()
    # Training with seed == eval_seed still never shows the held-out rows.
    d = ReverseDigits(batch_size=10, eval_samples=10)
    d.setup(d.eval_seed)
    assert not (d.batch_rows(0)[0] == d.eval_rows).all()


def parse_row(row, digit_min, digit_max):
    """Check a row's format; return the digit counts of its complete examples."""
    text = "".join("0123456789,#"[t] for t in row)
    pieces = text.split("#")
    lengths = []
    for i, piece in enumerate(pieces):
        complete = i < len(pieces) - 1
        fwd, comma, rev = piece.partition(",")
        if not complete and not comma:  # truncated inside the forward digits
            assert fwd.isdigit() or fwd == ""
            continue
        assert comma and fwd.isdigit(), text
        k = len(fwd)
        assert digit_min <= k <= digit_max, text
        assert k == 1 or fwd[0] != "0", text
        if complete:
            assert rev == fwd[::-1], text
            lengths.append(k)
        else:
            assert fwd[::-1].startswith(rev), text
    return lengths


def test_generated_rows_are_well_formed():
    rows = generate_rows(np.random.default_rng(2), 200, 129, 1, 60)
    lengths = [k for row in rows for k in parse_row(row, 1, 60)]
    assert rows.shape == (200, 129) and rows.dtype == np.int64
    assert min(lengths) == 1 and max(lengths) >= 55
    # Every row starts with a complete example (seq_len >= 2 * digit_max + 2).
    assert all(parse_row(row, 1, 60) for row in rows)


def test_digit_distribution_small_range():
    rows = generate_rows(np.random.default_rng(3), 300, 40, 1, 3)
    lengths = [k for row in rows for k in parse_row(row, 1, 3)]
    assert set(lengths) == {1, 2, 3}
    counts = np.bincount(lengths)[1:] / len(lengths)
    assert np.allclose(counts, 1 / 3, atol=0.03)
    text = "#".join("".join("0123456789,#"[t] for t in row) for row in rows)
    assert "#0,0#" in text  # k=1 includes 0, as the seed's randint(0, 9)
    rows = generate_rows(np.random.default_rng(4), 50, 163, 61, 80)
    lengths = [k for row in rows for k in parse_row(row, 61, 80)]
    assert lengths and min(lengths) >= 61 and max(lengths) <= 80


def test_invalid_config_is_a_clear_error():
    with pytest.raises(SeqlabError, match="seq_len"):
        ReverseDigits(digit_max=60, seq_len=100)
    with pytest.raises(SeqlabError, match="digit_min"):
        ReverseDigits(digit_min=5, digit_max=3)


# ----------------------------------------------------------------------------------- metrics
def test_oracle_scores_perfectly_and_beats_uniform_loss(task):
    oracle = TableModel([task.eval_rows, task.probe_rows])
    metrics = task.test(oracle)
    assert metrics["masked_acc"] == 1.0 and metrics["exact_acc"] == 1.0
    assert metrics["probe_masked_acc"] == 1.0 and metrics["probe_exact_acc"] == 1.0
    uniform = task.evaluate(ConstantModel())
    assert uniform["loss"] == pytest.approx(math.log(12), rel=1e-6)
    assert metrics["loss"] < 0.01 < uniform["loss"]
    assert all(isinstance(v, float) for v in metrics.values())


def test_constant_model_matches_the_seed_loop(task):
    for token in (0, HASH):
        metrics = task.evaluate(ConstantModel(token))
        expected = np.mean(
            [seed_accuracy(row.tolist(), [token] * 128, seed_mask_rwkv(row.tolist())) for row in task.eval_rows]
        )
        assert metrics["masked_acc"] == pytest.approx(expected)
        assert metrics["exact_acc"] == 0.0
    assert 0.0 < task.evaluate(ConstantModel(0))["masked_acc"] < 0.2


def test_exact_acc_counts_whole_numbers():
    rows = encode("12,21#3,3#45,5")
    targets = rows[:, 1:]
    mask = score_mask(rows)
    preds = targets.copy()
    assert score_predictions(targets, preds, mask) == {"masked_acc": 1.0, "exact_acc": 1.0}
    preds[0, 3] = 7  # one wrong digit in "21#"
    got = score_predictions(targets, preds, mask)
    assert got["exact_acc"] == 0.5  # the truncated "5" is not a complete example
    assert got["masked_acc"] == pytest.approx(5 / 6)
    preds = targets.copy()
    preds[0, 12] = 7  # wrong inside the truncated segment: exact unaffected
    assert score_predictions(targets, preds, mask)["exact_acc"] == 1.0
    preds[0, 0] = 7  # wrong on an unscored position: nothing changes
    assert score_predictions(targets, preds, mask)["masked_acc"] == pytest.approx(5 / 6)


def test_one_wrong_digit_lowers_exact_by_one_number(task):
    def corrupt(inputs, targets):
        targets = targets.copy()
        first = int(np.argmax(inputs == COMMA))  # first reversed digit of the first example
        targets[first] = (targets[first] + 1) % 10
        return targets

    metrics = task.evaluate(TableModel([task.eval_rows], corrupt=corrupt))
    closed = int((task.eval_rows[:, 1:] == HASH).sum())
    assert metrics["exact_acc"] == pytest.approx(1 - len(task.eval_rows) / closed)
    assert metrics["masked_acc"] < 1.0


def test_evaluate_uses_eval_mode_and_restores_training(task):
    oracle = TableModel([task.eval_rows])
    oracle.train()
    task.evaluate(oracle)
    assert oracle.seen_training and not any(oracle.seen_training)
    assert oracle.training
    oracle.eval()
    task.evaluate(oracle)
    assert not oracle.training


def test_probe_is_nan_when_the_model_cannot_read_long_rows(task, caplog):
    model = ConstantModel(0, max_len=128)
    with caplog.at_level(logging.WARNING):
        metrics = task.test(model)
    assert math.isnan(metrics["probe_masked_acc"]) and math.isnan(metrics["probe_exact_acc"])
    assert not math.isnan(metrics["masked_acc"])
    assert "probe" in caplog.text and "max_len" in caplog.text
    assert task.probe_rows.shape[1] >= 2 * 80 + 3


def test_describe_shows_input_gold_pred_diff(task):
    row = task.eval_rows[0]
    text = "".join("0123456789,#"[t] for t in row)
    fwd = text.split(",")[0]
    good = task.describe(TableModel([task.eval_rows]))
    assert f"input : {fwd}," in good
    assert f"gold  : {fwd[::-1]}#" in good
    assert f"pred  : {fwd[::-1]}#" in good
    assert "diff  : " + " " * (len(fwd) + 1) in good
    assert "exact: yes" in good
    bad = task.describe(ConstantModel(HASH), num_samples=2)
    assert "pred  : " + "#" * (len(fwd) + 1) in bad
    assert "diff  : " + "^" * len(fwd) + " " in bad
    assert bad.count("input : ") == 2


def test_a_separate_test_set_keeps_the_seeds_100_row_figure_beside_it():
    from seqlab.evaluation import evaluate
    from seqlab.models.mlp import MLP

    paddle.seed(0)
    model = MLP(embed_dim=8, window=4, hidden_dim=16)
    seed_style, bigger = ReverseDigits(), ReverseDigits(test_samples=1000)
    for task in (seed_style, bigger):
        task.setup(0)
    assert bigger.test_rows.shape == (1000, 129)
    assert not np.array_equal(bigger.test_rows[:100], bigger.eval_rows)  # its own rows, not the held-out ones
    np.testing.assert_array_equal(seed_style.test_rows, seed_style.eval_rows)  # the seed: test = held-out rows
    a, b = evaluate(seed_style, model, "test"), evaluate(bigger, model, "test")
    assert "val100_masked_acc" not in a and b["val100_masked_acc"] == a["masked_acc"]
    assert b["masked_acc"] != a["masked_acc"] and b["probe_masked_acc"] == a["probe_masked_acc"]
    assert [c.key for c in bigger.report_spec().columns][:2] == ["masked_acc", "val100_masked_acc"]
    with pytest.raises(SeqlabError, match="test_samples must be >= 0"):
        ReverseDigits(test_samples=-1)
