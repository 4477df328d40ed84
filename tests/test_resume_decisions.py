"""Resume keeps every decision of the run it continues (issue 23, item 9).

* A callback's stop (``should_stop``) is saved: an early-stopped run resumed with ``--ckpt_path
  last`` ends at once, as the resume command printed after an interruption promises.
* ``MovingAverageCheckpoint`` (and ``EarlyStopping``) refuse a saved state made with another
  ``monitor``: the saved best measures another metric.
* Another ``trainer.seed`` (the data order) and an added or dropped LR schedule are refused
  before anything is written; a changed callback list is a warning.
* A resume from a file into a folder holding another run's ``best`` is refused: the final test
  would otherwise read that stale checkpoint.

Runs are tiny (an MLP, a few steps), driven from Python in this process.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import pytest
from support import LossRecorder

from seqlab import Trainer
from seqlab.callbacks.early_stopping import EarlyStopping
from seqlab.callbacks.lr_schedule import CosineWarmupLR
from seqlab.callbacks.moving_average_checkpoint import MovingAverageCheckpoint
from seqlab.checkpoint import load_checkpoint
from seqlab.errors import SeqlabError
from seqlab.models.mlp import MLP
from seqlab.optim import AdamW
from seqlab.tasks.reverse_digits import ReverseDigits


def task():
    return ReverseDigits(
        digit_max=8, seq_len=33, batch_size=8, eval_samples=8, probe_digit_min=9, probe_digit_max=12, probe_samples=8
    )


def fit(root: Path, callbacks, name="run", max_steps=6, ckpt_path=None, seed=3, val_every=2):
    trainer = Trainer(
        max_steps=max_steps,
        val_every=val_every,
        save_every=2,
        seed=seed,
        root_dir=str(root),
        experiment="exp",
        run_name=name,
        optimizer=AdamW(lr=3e-3),
        callbacks=callbacks,
        default_callbacks=False,
    )
    trainer.fit(task(), MLP(embed_dim=8, window=4, hidden_dim=16), ckpt_path=ckpt_path)
    return trainer


def snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir")
        for p in sorted(folder.rglob("*"))
    }


def never_improves():
    """Stops at the second validation: an improvement must beat the best by more than 100."""
    return EarlyStopping(monitor="val/loss", mode="min", patience=1, min_delta=100.0)


def test_an_early_stopped_run_resumed_with_last_ends_at_once(tmp_path):
    first = fit(tmp_path, [never_improves()], max_steps=12)
    assert first.global_step == 4 and first.should_stop  # validations at 2 and 4
    assert load_checkpoint(tmp_path / "exp/run/checkpoints/last.safetensors")["trainer"]["should_stop"] is True
    recorder = LossRecorder()
    resumed = fit(tmp_path, [never_improves(), recorder], max_steps=12, ckpt_path="last")
    assert recorder.losses == {}  # no extra step
    assert resumed.global_step == 4 and resumed.should_stop


@pytest.mark.parametrize(
    "callback, needle",
    [
        (lambda: MovingAverageCheckpoint(monitor="val/loss", window=1), "monitor 'train/loss'"),
        (lambda: MovingAverageCheckpoint(monitor="train/loss", window=1, mode="max"), "mode 'min'"),
    ],
)
def test_moving_average_checkpoint_refuses_another_rule_on_resume(tmp_path, callback, needle):
    fit(tmp_path, [MovingAverageCheckpoint(monitor="train/loss", window=1)], max_steps=4)
    before = snapshot(tmp_path)
    with pytest.raises(SeqlabError, match="MovingAverageCheckpoint") as info:
        fit(tmp_path, [callback()], max_steps=6, ckpt_path="last")
    assert needle in str(info.value) and "start a new run" in str(info.value)
    assert snapshot(tmp_path) == before


def test_moving_average_checkpoint_with_another_window_warns_and_keeps_its_best(tmp_path, caplog):
    fit(tmp_path, [MovingAverageCheckpoint(monitor="train/loss", window=1)], max_steps=4)
    saved = load_checkpoint(tmp_path / "exp/run/checkpoints/last.safetensors")["callbacks"]["MovingAverageCheckpoint"]
    callback = MovingAverageCheckpoint(monitor="train/loss", window=3)
    with caplog.at_level(logging.WARNING, logger="seqlab"), pytest.raises(KeyboardInterrupt):
        fit(tmp_path, [callback, StopBeforeStep(5)], max_steps=6, ckpt_path="last")
    warned = [r for r in caplog.records if "over window 1, this run's are over 3" in r.getMessage()]
    assert len(warned) == 1, [r.getMessage() for r in caplog.records]  # once, not again from the trial load
    assert callback.best_value == saved["best_value"]


def test_moving_average_checkpoint_keeps_its_saved_best_on_resume(tmp_path):
    first = fit(tmp_path, [MovingAverageCheckpoint(monitor="train/loss", window=2)], max_steps=4)
    saved = load_checkpoint(tmp_path / "exp/run/checkpoints/last.safetensors")["callbacks"]["MovingAverageCheckpoint"]
    assert saved["monitor"] == "train/loss" and saved["window"] == 2 and saved["best_value"] is not None
    callback = MovingAverageCheckpoint(monitor="train/loss", window=2)
    with pytest.raises(KeyboardInterrupt):  # the state as restored, before step 5 changes it
        fit(tmp_path, [callback, StopBeforeStep(5)], max_steps=6, ckpt_path="last")
    assert callback.best_value == saved["best_value"] and list(callback.values) == saved["values"]
    assert first.global_step == 4


class StopBeforeStep(LossRecorder):
    """Raises at the start of step ``step`` (1-based), after the checkpoint has been restored."""

    def __init__(self, step):
        super().__init__()
        self.step = step

    def on_train_batch_start(self, trainer, task, model, batch):
        if trainer.global_step + 1 == self.step:
            raise KeyboardInterrupt("stop")


def test_another_seed_on_resume_is_refused(tmp_path):
    fit(tmp_path, [], max_steps=4, seed=3)
    before = snapshot(tmp_path)
    with pytest.raises(SeqlabError, match=r"trainer.seed=3, but this run sets 4.*data order.*--trainer.seed 3"):
        fit(tmp_path, [], max_steps=6, seed=4, ckpt_path="last")
    assert snapshot(tmp_path) == before


def test_an_added_lr_schedule_on_resume_is_refused(tmp_path):
    fit(tmp_path, [], max_steps=4)
    before = snapshot(tmp_path)
    with pytest.raises(SeqlabError, match="without an LR schedule, but this run adds one"):
        fit(tmp_path, [CosineWarmupLR(warmup_steps=1)], max_steps=6, ckpt_path="last")
    assert snapshot(tmp_path) == before


def test_a_dropped_lr_schedule_on_resume_is_refused(tmp_path):
    fit(tmp_path, [CosineWarmupLR(warmup_steps=1)], max_steps=4)
    before = snapshot(tmp_path)
    with pytest.raises(SeqlabError, match="with an LR schedule, but this run has none"):
        fit(tmp_path, [], max_steps=6, ckpt_path="last")
    assert snapshot(tmp_path) == before


def test_a_changed_callback_list_on_resume_is_a_warning(tmp_path, caplog):
    fit(tmp_path, [never_improves()], max_steps=2)
    with caplog.at_level(logging.WARNING, logger="seqlab"):
        fit(tmp_path, [LossRecorder()], max_steps=4, ckpt_path="last")
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(
        "other callbacks" in m and "added: LossRecorder" in m and "dropped: EarlyStopping" in m for m in messages
    )


def test_resuming_a_file_into_a_folder_with_another_runs_best_is_refused(tmp_path):
    # Two different runs (other seeds), each with a best checkpoint.
    fit(tmp_path, [MovingAverageCheckpoint(monitor="train/loss", window=1)], name="a", max_steps=4, seed=3)
    fit(tmp_path, [MovingAverageCheckpoint(monitor="train/loss", window=1)], name="b", max_steps=4, seed=3)
    folder = tmp_path / "exp/a/checkpoints"
    (folder / "last.safetensors").unlink()  # only a's best is left in the target folder
    before = snapshot(tmp_path)
    with pytest.raises(SeqlabError, match="holds 'best.safetensors' of another run") as info:
        fit(
            tmp_path,
            [MovingAverageCheckpoint(monitor="train/loss", window=1)],
            name="a",
            max_steps=6,
            ckpt_path=str(tmp_path / "exp/b/checkpoints/last.safetensors"),
        )
    assert str(folder / "best.safetensors") in str(info.value)
    assert snapshot(tmp_path) == before


def test_resuming_a_copy_of_the_runs_own_checkpoint_by_path_is_fine(tmp_path):
    fit(tmp_path, [MovingAverageCheckpoint(monitor="train/loss", window=1)], max_steps=4)
    copy = tmp_path / "copy.safetensors"
    copy.write_bytes((tmp_path / "exp/run/checkpoints/last.safetensors").read_bytes())
    resumed = fit(tmp_path, [MovingAverageCheckpoint(monitor="train/loss", window=1)], max_steps=6, ckpt_path=copy)
    assert resumed.global_step == 6
