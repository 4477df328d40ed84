"""Gradient accumulation: the same data and the same update, in N micro-batches."""

import numpy as np
import pytest

from seqlab import Callback, Trainer
from seqlab.models.mlp import MLP
from seqlab.models.rwkv7 import RWKV7
from seqlab.optim import AdamW
from seqlab.tasks.reverse_digits import ReverseDigits
from seqlab.trainer import seed_everything


class Recorder(Callback):
    def __init__(self):
        self.losses, self.backwards, self.rows = [], 0, []

    def on_train_batch_start(self, trainer, task, model, batch):
        self.rows.append(batch.num_rows)

    def on_before_backward(self, trainer, task, model, loss):
        self.backwards += 1

    def on_train_batch_end(self, trainer, task, model, metrics):
        self.losses.append(metrics["train/loss"])


def train(tmp_path, make_model, accumulate, steps=6):
    seed_everything(0)
    model = make_model()
    recorder = Recorder()
    task = ReverseDigits(
        digit_max=8, seq_len=33, batch_size=12, eval_samples=8, probe_digit_min=9, probe_digit_max=10, probe_samples=4
    )
    Trainer(
        max_steps=steps,
        val_every=0,
        save_every=0,
        seed=5,
        root_dir=str(tmp_path),
        experiment="acc",
        run_name=f"n{accumulate}",
        optimizer=AdamW(lr=3e-3),
        accumulate_grad_batches=accumulate,
        callbacks=[recorder],
        default_callbacks=False,
    ).fit(task, model)
    weights = {k: v.numpy() for k, v in model.state_dict().items()}
    return recorder, weights


@pytest.mark.parametrize("make_model", [lambda: MLP(embed_dim=8, window=4, hidden_dim=16), RWKV7], ids=["mlp", "rwkv7"])
def test_accumulated_steps_match_one_batch(tmp_path, make_model):
    one, w1 = train(tmp_path, make_model, 1)
    for n in (2, 4):
        acc, wn = train(tmp_path, make_model, n)
        assert acc.backwards == n * len(one.losses)  # really n micro-batches per step
        assert acc.rows == one.rows == [12] * 6  # ... cut from the same batches
        np.testing.assert_allclose(acc.losses, one.losses, rtol=1e-5, atol=1e-6)
        for key in w1:
            np.testing.assert_allclose(wn[key], w1[key], rtol=1e-4, atol=1e-5, err_msg=key)
    assert one.losses[-1] != one.losses[0]  # it trained


def test_uneven_micro_batches_are_weighted_by_their_rows(tmp_path):
    """12 rows in 5 micro-batches (3, 2, 2, 3, 2 rows... sizes differ): still the batch's mean loss."""
    one, _ = train(tmp_path, lambda: MLP(embed_dim=8, window=4, hidden_dim=16), 1, steps=3)
    five, _ = train(tmp_path, lambda: MLP(embed_dim=8, window=4, hidden_dim=16), 5, steps=3)
    np.testing.assert_allclose(five.losses, one.losses, rtol=1e-5, atol=1e-6)


def test_more_micro_batches_than_rows_is_a_clear_error(tmp_path):
    from seqlab import SeqlabError

    with pytest.raises(SeqlabError, match="accumulate_grad_batches=13 needs at least 13 rows"):
        train(tmp_path, lambda: MLP(embed_dim=8, window=4, hidden_dim=16), 13, steps=1)
