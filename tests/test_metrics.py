"""seqlab.metrics against values computed by hand, and against Paddle's own cross-entropy."""

import math

import numpy as np
import pytest

import seqlab  # noqa: F401  (imports paddle quietly)
from seqlab.metrics import IGNORE_INDEX, BitsPerByte, CrossEntropy, ExactMatch, MaskedAccuracy, Perplexity, Scored
from seqlab.model import paddle

X = IGNORE_INDEX


def one_hot(preds, vocab=10):
    """Logits whose argmax is ``preds``."""
    return np.eye(vocab, dtype=np.float32)[np.asarray(preds)] * 5.0


TARGETS = np.array([[1, 2, 3, X], [4, 5, 6, 7]])
PREDS = np.array([[1, 0, 3, 9], [4, 5, 0, 0]])


def test_masked_accuracy_is_a_mean_of_per_row_rates():
    # No mask: every position whose target is not -100. Row 1: 2 of 3; row 2: 2 of 4.
    assert MaskedAccuracy()(one_hot(PREDS), TARGETS) == pytest.approx((2 / 3 + 2 / 4) / 2)
    # A mask narrows it; -100 stays out even where the mask says True. Row 1: 1 of 2; row 2: 0 of 2.
    mask = np.array([[True, True, False, True], [False, False, True, True]])
    assert MaskedAccuracy()(one_hot(PREDS), TARGETS, mask) == pytest.approx((1 / 2 + 0) / 2)
    # A row with nothing scored counts as 0 (the seed's rule), not left out.
    mask = np.array([[False, False, False, True], [True, True, False, False]])
    assert MaskedAccuracy()(one_hot(PREDS), TARGETS, mask) == pytest.approx((0 + 1) / 2)


def test_exact_match_counts_whole_spans():
    targets = np.array([[0, 5, 6, 9, 0, 7, 9, 0, 8]])  # 9 closes an answer
    mask = np.array([[0, 1, 1, 1, 0, 1, 1, 0, 1]], dtype=bool)  # spans: [1..3] [5..6] [8] (open)
    right = targets.copy()
    assert ExactMatch(end_token=9)(one_hot(right), targets, mask) == 1.0
    wrong = right.copy()
    wrong[0, 2] = 1  # first span wrong
    assert ExactMatch(end_token=9)(one_hot(wrong), targets, mask) == 0.5
    wrong[0, 8] = 1  # the open span: not counted with end_token, counted without
    assert ExactMatch(end_token=9)(one_hot(wrong), targets, mask) == 0.5
    assert ExactMatch()(one_hot(wrong), targets, mask) == pytest.approx(1 / 3)
    wrong[0, 0] = 3  # an unscored position changes nothing
    assert ExactMatch()(one_hot(wrong), targets, mask) == pytest.approx(1 / 3)
    assert math.isnan(ExactMatch()(one_hot(right), targets, np.zeros_like(mask)))


def test_cross_entropy_perplexity_bits_per_byte_by_hand():
    # Two classes with logits [0, ln 3]: p = [1/4, 3/4].
    logits = np.tile(np.array([0.0, math.log(3)], dtype=np.float32), (1, 3, 1))
    targets = np.array([[1, 0, X]])
    nats = (math.log(4 / 3) + math.log(4)) / 2  # the -100 position is not counted
    assert CrossEntropy()(logits, targets) == pytest.approx(nats, rel=1e-6)
    assert Perplexity()(logits, targets) == pytest.approx(math.sqrt(16 / 3), rel=1e-6)
    assert BitsPerByte()(logits, targets) == pytest.approx((math.log2(4 / 3) + 2) / 2, rel=1e-6)
    assert BitsPerByte(bytes_per_token=4.0)(logits, targets) == pytest.approx((math.log2(4 / 3) + 2) / 8, rel=1e-6)
    # Uniform logits over V tokens: loss ln V, perplexity V, bits/byte log2 V.
    uniform = np.zeros((2, 5, 256), dtype=np.float32)
    targets = np.arange(10).reshape(2, 5)
    assert CrossEntropy()(uniform, targets) == pytest.approx(math.log(256))
    assert Perplexity()(uniform, targets) == pytest.approx(256)
    assert BitsPerByte()(uniform, targets) == pytest.approx(8.0)


def test_cross_entropy_matches_paddle_and_ignores_the_mask():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((3, 7, 11)).astype(np.float32) * 3
    targets = rng.integers(0, 11, size=(3, 7))
    targets[1, 4:] = X
    valid = targets != X
    expected = paddle.nn.functional.cross_entropy(paddle.to_tensor(logits[valid]), paddle.to_tensor(targets[valid]))
    mask = rng.random((3, 7)) < 0.5  # the loss is over every counted target, whatever the mask
    assert CrossEntropy()(logits, targets, mask) == pytest.approx(expected.item(), rel=1e-6)


def test_chunked_updates_equal_one_pass():
    rng = np.random.default_rng(1)
    logits = rng.standard_normal((10, 6, 5)).astype(np.float32)
    targets = rng.integers(0, 5, size=(10, 6))
    targets[3, :2] = X
    mask = rng.random((10, 6)) < 0.7
    for metric in (MaskedAccuracy(), ExactMatch(end_token=4), CrossEntropy(), Perplexity(), BitsPerByte()):
        whole = metric(logits, targets, mask)
        metric.reset()
        for rows in (slice(0, 3), slice(3, 4), slice(4, 10)):
            metric.update(Scored(logits[rows], targets[rows], mask[rows]))
        assert metric.compute() == pytest.approx(whole, rel=1e-12), metric


def test_metrics_can_be_renamed():
    assert MaskedAccuracy(name="probe_masked_acc").name == "probe_masked_acc"
    assert ExactMatch("x", end_token=3).end_token == 3
