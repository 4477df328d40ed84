"""Padded variable-length samples (seed 003's collate): pad_batch, -100 labels that no loss or
metric counts, and the reverse_digits_padded task scored with the packed task's metrics."""

import math

import numpy as np
import pytest

import seqlab  # noqa: F401  (imports paddle quietly)
from seqlab import SeqlabError, Trainer
from seqlab.data import pad_batch, shift
from seqlab.evaluation import evaluate, logits
from seqlab.metrics import IGNORE_INDEX
from seqlab.model import paddle
from seqlab.optim import AdamW
from seqlab.registry import MODELS
from seqlab.seeding import seed_everything
from seqlab.task import Batch, Task
from seqlab.tasks.reverse_digits import COMMA, HASH, score_mask, score_predictions
from seqlab.tasks.reverse_digits_padded import ReverseDigitsPadded

X = IGNORE_INDEX


def small(**kwargs):
    task = ReverseDigitsPadded(
        **{
            **dict(
                digit_max=8, batch_size=16, eval_samples=40, probe_digit_min=9, probe_digit_max=12, probe_samples=10
            ),
            **kwargs,
        }
    )
    task.setup(7)
    return task


def test_pad_batch_is_seed_003s_collate():
    ids, labels = pad_batch([[1, 2, 3], [4], [5, 6]], pad_value=5)
    assert ids.tolist() == [[1, 2, 3], [4, 5, 5], [5, 6, 5]]  # pad_sequence(..., padding_value=5)
    assert labels.tolist() == [[1, 2, 3], [4, X, X], [5, 6, X]]  # pad_sequence(..., padding_value=-100)
    assert ids.dtype == labels.dtype == np.int64
    batch = shift(ids, labels)  # calculate_acc's logit[..., :-1] against labels[..., 1:]
    assert batch.inputs.tolist() == [[1, 2], [4, 5], [5, 6]]
    assert batch.targets.tolist() == [[2, 3], [X, X], [6, X]]


def test_rows_are_one_number_each_and_padding_is_never_a_target():
    task = small()
    batch = task.train_batch(0)
    x, y, m = batch.inputs.numpy(), batch.targets.numpy(), batch.mask.numpy()
    assert x.shape == y.shape == m.shape and x.shape[0] == 16
    lengths = (y != X).sum(axis=1) + 1  # tokens of each number: 2k + 2
    assert x.shape[1] == lengths.max() - 1  # padded to the longest row of this batch only
    for row, target, mask, n in zip(x, y, m, lengths):
        k = (n - 2) // 2
        seq = np.concatenate([row[:1], target[: n - 1]])
        assert 1 <= k <= 8 and seq[k] == COMMA and seq[-1] == HASH
        assert (seq[k + 1 : 2 * k + 1] == seq[:k][::-1]).all()  # the reversed digits
        assert (target[n - 1 :] == X).all() and (row[n - 1 :] == HASH).all()  # labels -100, inputs pad_id
        # targets: k-1 digits and ',' unscored, k reversed digits and '#' scored, then padding
        assert mask.tolist() == [False] * k + [True] * (k + 1) + [False] * (len(mask) - n + 1)
    assert (small().train_batch(0).inputs.numpy() == x).all()  # a function of (seed, step)
    assert task.train_batch(1).inputs.numpy().tolist() != x.tolist()


def test_the_loss_ignores_padding():
    task = small()
    batch = task.train_batch(3)
    rng = np.random.default_rng(0)
    raw = rng.standard_normal(list(batch.inputs.shape) + [12]).astype(np.float32)
    y = batch.targets.numpy()
    valid = y != X
    logp = raw - np.log(np.exp(raw).sum(-1, keepdims=True))
    expected = -np.take_along_axis(logp, np.where(valid, y, 0)[..., None], -1)[..., 0][valid].mean()
    logits_t = paddle.to_tensor(raw, stop_gradient=False)
    loss = task.loss(logits_t, batch)
    assert loss.item() == pytest.approx(expected, rel=1e-5)  # mean over real targets, not all positions
    loss.backward()
    assert (logits_t.grad.numpy()[~valid] == 0).all()  # padding gets no gradient
    changed = raw.copy()
    changed[~valid] = 100.0  # whatever the model says at padded positions
    assert task.loss(paddle.to_tensor(changed), batch).item() == pytest.approx(loss.item(), rel=1e-6)


def test_a_batch_without_padding_keeps_the_plain_mean():
    rng = np.random.default_rng(1)
    raw = paddle.to_tensor(rng.standard_normal((4, 9, 12)).astype(np.float32))
    targets = paddle.to_tensor(rng.integers(0, 12, (4, 9)))
    batch = Batch(paddle.zeros([4, 9], dtype="int64"), targets)
    plain = paddle.nn.functional.cross_entropy(raw.reshape([-1, 12]), targets.reshape([-1]))
    assert Task().loss(raw, batch).item() == plain.item()  # bit for bit: the packed task's loss is unchanged


def _rwkv7():
    seed_everything(1)
    return MODELS.get("rwkv7")(vocab_size=12)


def test_padding_cannot_change_the_metrics_of_a_causal_model():
    model = _rwkv7()
    by_pad = {pad: evaluate(small(pad_id=pad), model, "test") for pad in (HASH, 0)}
    first = by_pad[HASH]
    assert set(first) == {"masked_acc", "exact_acc", "loss", "probe_masked_acc", "probe_exact_acc"}
    for metrics in by_pad.values():
        assert metrics["masked_acc"] == first["masked_acc"] and metrics["exact_acc"] == first["exact_acc"]
        assert metrics["loss"] == pytest.approx(first["loss"], rel=1e-6)


def test_masked_accuracy_is_the_packed_tasks_metric_per_number():
    """On each number alone, unpadded, the packed task's scoring gives the same per-row rates."""
    task, model = small(), _rwkv7()
    rates = []
    ids = task.eval_rows
    for row in ids:
        seq = row[: int(np.argmax(row == HASH)) + 1][None]  # the number without its padding
        preds = logits(model, seq[:, :-1]).argmax(-1)
        rates.append(score_predictions(seq[:, 1:], preds, score_mask(seq))["masked_acc"])
    assert task.evaluate(model)["masked_acc"] == pytest.approx(np.mean(rates), rel=1e-12)


def test_it_trains_through_the_trainer_with_accumulation(tmp_path):
    seed_everything(0)
    model = MODELS.get("mlp")(embed_dim=8, window=4, hidden_dim=16)
    trainer = Trainer(
        max_steps=4,
        val_every=2,
        save_every=2,
        root_dir=str(tmp_path),
        experiment="pad",
        run_name="mlp",
        optimizer=AdamW(lr=3e-3),
        accumulate_grad_batches=3,
    )
    metrics = trainer.fit(small(), model)
    assert 0.0 <= metrics["test/masked_acc"] <= 1.0 and math.isfinite(metrics["test/loss"])
    assert (tmp_path / "pad/mlp/samples.txt").read_text().startswith("sample 1:")


def test_pad_id_must_not_open_an_answer():
    with pytest.raises(SeqlabError, match="pad_id must be a token id 0..11 other than ','"):
        ReverseDigitsPadded(pad_id=COMMA)
