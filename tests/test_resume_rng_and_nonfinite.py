"""Resume restores every RNG (exercised with dropout); non-finite steps stop or are skipped."""

import json
import math

import numpy as np
import paddle
import pytest
from support import LossRecorder, NaNLossAt, StopAt

import seqlab.checkpoint.state
from seqlab import Callback, Model, Trainer
from seqlab.callbacks import MovingAverageCheckpoint
from seqlab.optim import AdamW
from seqlab.tasks.reverse_digits import ReverseDigits
from seqlab.trainer import seed_everything

nn = paddle.nn


class DropoutMLP(Model):
    """A window MLP with dropout: its training losses depend on Paddle's global RNG."""

    def __init__(self, vocab_size: int = 12, width: int = 16, p: float = 0.3):
        super().__init__()
        self.vocab_size = vocab_size
        self.embed = nn.Embedding(vocab_size, width)
        self.drop = nn.Dropout(p)
        self.head = nn.Linear(width, vocab_size)

    def forward(self, tokens):
        return self.head(self.drop(self.embed(tokens)))


def task():
    return ReverseDigits(
        digit_max=8, seq_len=33, batch_size=8, eval_samples=8, probe_digit_min=9, probe_digit_max=10, probe_samples=4
    )


def trainer(tmp_path, name, callbacks, steps=20, **kw):
    return Trainer(
        max_steps=steps,
        val_every=0,
        save_every=5,
        seed=3,
        root_dir=str(tmp_path),
        experiment="rng",
        run_name=name,
        optimizer=AdamW(lr=1e-2),
        callbacks=callbacks,
        default_callbacks=False,
        **kw,
    )


def model(seed=0):
    seed_everything(seed)
    return DropoutMLP()


def interrupted_then_resumed(tmp_path, name, disturb=False):
    first, second = LossRecorder(), LossRecorder()
    with pytest.raises(KeyboardInterrupt):
        trainer(tmp_path, name, [first, StopAt(10)]).fit(task(), model())
    if disturb:
        paddle.seed(999)  # a different RNG state than the one the checkpoint recorded
    trainer(tmp_path, name, [second]).fit(task(), model(seed=7), ckpt_path="last")
    return {**first.losses, **second.losses}


def test_dropout_run_resumes_to_the_same_losses(tmp_path):
    straight = LossRecorder()
    trainer(tmp_path, "straight", [straight]).fit(task(), model())
    assert interrupted_then_resumed(tmp_path, "resumed", disturb=True) == straight.losses


def test_without_the_rng_restore_the_dropout_run_differs(tmp_path, monkeypatch):
    """The control: the test above fails when the checkpoint's RNG state is not restored."""
    straight = LossRecorder()
    trainer(tmp_path, "straight", [straight]).fit(task(), model())
    monkeypatch.setattr(seqlab.checkpoint.state, "restore_rng_state", lambda state: None)
    resumed = interrupted_then_resumed(tmp_path, "unrestored", disturb=True)
    assert [resumed[s] for s in range(1, 11)] == [straight.losses[s] for s in range(1, 11)]
    assert [resumed[s] for s in range(11, 21)] != [straight.losses[s] for s in range(11, 21)]


def nan_task(steps):
    return NaNLossAt(
        nan_steps=steps,
        digit_max=8,
        seq_len=33,
        batch_size=8,
        eval_samples=8,
        probe_digit_min=9,
        probe_digit_max=10,
        probe_samples=4,
    )


def test_skip_drops_the_update_and_counts_it(tmp_path):
    losses, best = LossRecorder(), MovingAverageCheckpoint(window=3)
    t = Trainer(
        max_steps=12,
        val_every=0,
        save_every=4,
        seed=3,
        root_dir=str(tmp_path),
        experiment="nan",
        run_name="skip",
        optimizer=AdamW(lr=1e-2),
        nonfinite="skip",
        callbacks=[losses, best],
    )
    m = model()
    before = {}

    class Snapshot(Callback):
        def on_train_batch_start(self, trainer, task, model, batch):
            if trainer.global_step == 5:  # before step 6, the bad one
                before.update({k: v.numpy().copy() for k, v in model.state_dict().items()})

        def on_train_batch_end(self, trainer, task, model, metrics):
            if trainer.global_step == 6:  # the update was dropped: weights unchanged
                for k, v in model.state_dict().items():
                    np.testing.assert_array_equal(v.numpy(), before[k], err_msg=k)
                assert metrics["train/skipped_steps"] == 1.0

    t.callbacks.insert(0, Snapshot())
    t.fit(nan_task([6]), m)
    assert math.isnan(losses.losses[6]) and all(math.isfinite(losses.losses[s]) for s in range(7, 13))
    summary = json.loads((tmp_path / "nan/skip/metrics.json").read_text())
    assert summary["skipped_steps"] == 1
    assert math.isfinite(best.best_value)  # the NaN never entered the moving average
    assert all(np.isfinite(v.numpy()).all() for v in m.state_dict().values())


def test_stop_names_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
    from seqlab.checkpoint import load_checkpoint
    from seqlab.errors import TrainingDiverged

    t = trainer(tmp_path, "stop", [], steps=12)
    with pytest.raises(TrainingDiverged, match="step 7 of run 'stop' has a non-finite loss") as info:
        t.fit(nan_task([7]), model())
    assert info.value.exit_code == 1
    assert load_checkpoint(tmp_path / "rng/stop/checkpoints/last.safetensors")["step"] == 5


def test_moving_average_ignores_nonfinite_values():
    cb = MovingAverageCheckpoint(window=2)
    assert cb.update(1.0, 1) is False
    assert cb.update(float("nan"), 2) is False and cb.update(float("inf"), 3) is False
    assert cb.update(3.0, 4) is True and cb.best_value == 2.0
