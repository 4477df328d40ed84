"""Any paddle.io.Dataset of token sequences as a task: order, padding, metrics, exact resume."""

import numpy as np
import pytest
from support import LossRecorder, StopAt

import seqlab  # noqa: F401  (imports paddle quietly)
from seqlab import SeqlabError, Trainer
from seqlab.checkpoint import load_checkpoint
from seqlab.metrics import IGNORE_INDEX
from seqlab.model import nn, paddle
from seqlab.models.mlp import MLP
from seqlab.optim import AdamW
from seqlab.seeding import seed_everything
from seqlab.tasks.dataset import DatasetTask


class Sequences(paddle.io.Dataset):
    """Sequences of 3..11 ids in 1..19; item i starts with i % 20 so a batch shows which items it holds."""

    def __init__(self, n, seed):
        rng = np.random.default_rng(seed)
        self.items = [np.concatenate([[i % 20], rng.integers(1, 20, size=rng.integers(2, 11))]) for i in range(n)]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def make_task(shuffle=True, n=13, batch_size=5, seed=4):
    task = DatasetTask(
        train=Sequences(n, 0), val=Sequences(9, 1), vocab_size=20, batch_size=batch_size, pad_value=0, shuffle=shuffle
    )
    task.setup(seed)
    return task


def test_every_epoch_visits_every_item_once_in_an_order_of_seed_and_epoch():
    task = make_task()
    seen = np.concatenate([task.indices(step) for step in range(13)])  # 65 items: 5 epochs of 13
    for epoch in range(5):
        assert sorted(seen[13 * epoch : 13 * (epoch + 1)]) == list(range(13))
    assert seen[:13].tolist() != seen[13:26].tolist()  # a new order each epoch
    assert (make_task().indices(7) == task.indices(7)).all()  # a function of (seed, step)
    assert not (make_task(seed=5).indices(7) == task.indices(7)).all()
    assert np.concatenate([make_task(shuffle=False).indices(s) for s in range(3)]).tolist() == [
        *range(13),
        0,
        1,
    ]  # dataset order, wrapping into the next epoch


def test_batches_are_padded_with_minus_100_labels():
    task = make_task(shuffle=False)
    batch = task.train_batch(0)
    x, y = batch.inputs.numpy(), batch.targets.numpy()
    data = Sequences(13, 0)
    for row, (inputs, targets) in enumerate(zip(x, y)):
        seq = data[row]
        n = len(seq) - 1  # targets of this row; its last token is an input whose target is padding
        assert (inputs[: n + 1] == seq[: len(inputs)]).all() and (targets[:n] == seq[1:]).all()
        assert (inputs[n + 1 :] == 0).all() and (targets[n:] == IGNORE_INDEX).all()
    assert x.shape[1] == max(len(data[i]) for i in range(5)) - 1


class Oracle(nn.Layer):
    """Knows the val set: right on every target except the first of each row."""

    def __init__(self, val):
        super().__init__()
        self.by_prefix = {tuple(s[:1].tolist()): s for s in val.items}

    def forward(self, tokens):
        rows = tokens.numpy()
        out = np.zeros(rows.shape + (20,), dtype=np.float32)
        for r, row in enumerate(rows):
            seq = self.by_prefix[(row[0],)]
            out[r, 0, 0] = 9.0  # wrong on purpose at the first position
            for t in range(1, min(len(seq) - 1, rows.shape[1])):
                out[r, t, seq[t + 1]] = 9.0
        return paddle.to_tensor(out)


def test_metrics_count_real_tokens_only():
    task = make_task()
    metrics = task.evaluate(Oracle(task.val))
    real = sum(len(s) - 1 for s in task.val.items)
    assert metrics["token_acc"] == pytest.approx((real - 9) / real)  # seed 003's n_correct / n_word
    assert set(metrics) == {"loss", "perplexity", "token_acc"}
    assert metrics["perplexity"] == pytest.approx(np.exp(metrics["loss"]))


def _fit(tmp_path, name, callbacks, ckpt_path=None, init_seed=0):
    seed_everything(init_seed)
    model = MLP(vocab_size=20, embed_dim=8, window=4, hidden_dim=16)
    trainer = Trainer(
        max_steps=12,
        val_every=4,
        save_every=3,
        seed=11,
        root_dir=str(tmp_path),
        experiment="ds",
        run_name=name,
        optimizer=AdamW(lr=3e-3),
        callbacks=callbacks,
    )
    return trainer.fit(make_task(), model, ckpt_path=ckpt_path)


def test_a_resumed_run_continues_at_the_same_data_position(tmp_path):
    """12 steps straight == 7 steps, a crash, and a resume from `last` (step 6), loss for loss.
    13 items in batches of 5: the crash falls mid-epoch, and the run crosses epoch boundaries."""
    full = LossRecorder()
    _fit(tmp_path, "full", [full])
    first, second = LossRecorder(), LossRecorder()
    with pytest.raises(KeyboardInterrupt):
        _fit(tmp_path, "resumed", [first, StopAt(7)])
    assert load_checkpoint(tmp_path / "ds/resumed/checkpoints/last.safetensors")["step"] == 6
    _fit(tmp_path, "resumed", [second], ckpt_path="last", init_seed=99)  # another init: all from the checkpoint
    assert sorted(second.losses) == list(range(7, 13))
    assert {**{s: first.losses[s] for s in range(1, 7)}, **second.losses} == full.losses  # exact equality


def test_bad_data_is_one_sentence(tmp_path):
    task = DatasetTask(train=Sequences(4, 0), val=None, vocab_size=10, batch_size=2)
    task.setup(0)
    with pytest.raises(
        SeqlabError,
        match=r"dataset \(step 0's batch\) holds token id 1\d, outside the vocabulary "
        r"of 10 \(ids 0..9\)",
    ):
        task.train_batch(0)
    with pytest.raises(SeqlabError, match="the final test need held-out sequences; pass val="):
        list(task.val_batches())
    # ... and a fit says so before its first step, not after training.
    trainer = Trainer(max_steps=5, val_every=0, root_dir=str(tmp_path), experiment="ds", run_name="noval")
    with pytest.raises(SeqlabError, match="run 'noval': dataset: validation and the final test need"):
        no_val = DatasetTask(train=[np.arange(1, 9)] * 4, val=None, vocab_size=10, batch_size=2)
        trainer.fit(no_val, MLP(vocab_size=10, embed_dim=8, window=4, hidden_dim=16))
    assert not (tmp_path / "ds").exists()  # the pre-run checks write nothing
    short = DatasetTask(train=[np.array([3])], vocab_size=10)
    with pytest.raises(SeqlabError, match="item 0 of step 0's batch is a 1-D int64 array of 1 values"):
        short.train_batch(0)
    with pytest.raises(SeqlabError, match="pad_value 10 is not a token id below vocab_size 10"):
        DatasetTask(train=Sequences(4, 0), vocab_size=10, pad_value=10)
