"""The Trainer's lifecycle: one setup before the first step, shared by ``preflight`` and ``fit``;
strict monitors; ``log_every: 0``."""

from __future__ import annotations

import dataclasses
import logging

import pytest
import yaml
from tiny import tiny_recipe

import seqlab.preflight
from seqlab import Callback, SeqlabError, Trainer
from seqlab.callbacks import EarlyStopping, MovingAverageCheckpoint, ProgressBar
from seqlab.models.mlp import MLP
from seqlab.seeding import seed_everything
from seqlab.tasks.reverse_digits import ReverseDigits
from seqlab.trainer import Setup


def small_task(cls=ReverseDigits):
    return cls(
        digit_max=8, seq_len=33, batch_size=8, eval_samples=8, probe_digit_min=9, probe_digit_max=12, probe_samples=4
    )


def small_mlp():
    seed_everything(0)
    return MLP(embed_dim=8, window=4, hidden_dim=16)


def trainer(tmp_path, callbacks=(), **kwargs):
    settings = dict(max_steps=4, val_every=2, save_every=2, seed=7, root_dir=str(tmp_path), experiment="exp")
    return Trainer(**{**settings, "run_name": "mlp", "callbacks": list(callbacks), **kwargs})


class Counter(Callback):
    def __init__(self):
        self.setups, self.steps = 0, 0

    def setup(self, trainer, task, model):
        self.setups += 1

    def on_train_batch_end(self, trainer, task, model, metrics):
        self.steps += 1


# ---------------------------------------------------------------------------------------------
# Setup: one typed result, used by preflight and fit
def test_preflight_returns_a_frozen_setup_that_fit_reuses(tmp_path):
    counter = Counter()
    t = trainer(tmp_path, [counter], default_callbacks=False)
    task, model = small_task(), small_mlp()
    setup = t.preflight(task, model)
    assert isinstance(setup, Setup) and setup.task is task and setup.model is model
    assert setup.resume_from is None and setup.checkpoint is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        setup.checkpoint = {}
    optimizer = t.optimizer
    assert not (tmp_path / "exp").exists()  # setting up writes nothing
    t.fit(task, model)
    assert counter.setups == 1 and counter.steps == 4
    assert t.optimizer is optimizer  # fit trained with the optimizer the setup built


def test_fit_sets_up_again_when_the_preflight_was_for_other_arguments(tmp_path):
    counter = Counter()
    t = trainer(tmp_path, [counter], default_callbacks=False)
    t.preflight(small_task(), small_mlp())
    t.fit(small_task(), small_mlp())  # other objects: the earlier setup is not theirs
    assert counter.setups == 2
    t2 = trainer(tmp_path, [counter], default_callbacks=False, max_steps=6)
    setup = t2.preflight(small_task(), small_mlp(), "last")
    assert setup.ckpt_path == "last" and setup.checkpoint["step"] == 4
    assert str(setup.resume_from).endswith("last.safetensors")


def test_preflight_module_holds_only_checks():
    names = [n for n in dir(seqlab.preflight) if not n.startswith("_") and callable(getattr(seqlab.preflight, n))]
    own = [n for n in names if getattr(getattr(seqlab.preflight, n), "__module__", "") == "seqlab.preflight"]
    assert own and all(n.startswith("check_") for n in own), own
    assert not hasattr(seqlab.preflight, "Event")  # it fires no events


# ---------------------------------------------------------------------------------------------
# log_every: 0 disables the plain step lines
@pytest.mark.parametrize("log_every, lines", [(0, []), (2, ["step 2/4", "step 4/4"])])
def test_log_every_zero_prints_no_step_lines(tmp_path, capsys, log_every, lines):
    bar = ProgressBar()
    bar.interactive = False  # the plain-line mode of CI logs
    t = trainer(tmp_path, [bar], default_callbacks=False, log_every=log_every, val_every=0)
    assert t.log_every == log_every
    t.fit(small_task(), small_mlp())
    out = capsys.readouterr().out.splitlines()
    assert [ln.split(" | ")[0] for ln in out if ln.startswith("step ")] == lines
    assert any(ln.startswith("test | ") for ln in out)  # the test's line is not a step line


# ---------------------------------------------------------------------------------------------
# Strict monitors: a metric the run does not report stops it before step 1
@pytest.mark.parametrize(
    "callback, message",
    [
        (MovingAverageCheckpoint(monitor="train/los", window=1), "at every step (the closest is 'train/loss')"),
        (MovingAverageCheckpoint(monitor="val/masked_ac", window=1), "at validation (the closest is 'val/masked_acc')"),
        (EarlyStopping(monitor="val/exact", mode="max"), "at validation (the closest is 'val/exact_acc')"),
        (EarlyStopping(monitor="train/loss"), "at validation (the closest is 'val/loss')"),
    ],
)
def test_a_monitor_naming_no_metric_fails_before_step_1(tmp_path, callback, message):
    counter = Counter()
    with pytest.raises(SeqlabError, match=r"run 'mlp': .*monitor '.*' names no metric this run reports ") as err:
        trainer(tmp_path, [counter, callback]).fit(small_task(), small_mlp())
    assert message in str(err.value)
    assert counter.steps == 0 and not (tmp_path / "exp").exists()


def test_a_validation_monitor_without_validation_is_refused(tmp_path):
    with pytest.raises(SeqlabError, match="trainer.val_every is 0"):
        trainer(tmp_path, [EarlyStopping(monitor="val/loss")], val_every=0).preflight(small_task(), small_mlp())


def test_declared_names_pass(tmp_path):
    class Logs(Callback):
        logged_metrics = ("train/extra",)

        def on_train_batch_end(self, trainer, task, model, metrics):
            pass

    for cb in (
        MovingAverageCheckpoint(monitor="val/masked_acc", window=1, mode="max"),
        MovingAverageCheckpoint(monitor="train/extra", window=1),
        EarlyStopping(monitor="val/loss"),
    ):
        extra = [Logs()] if cb.monitor == "train/extra" else []
        trainer(tmp_path, [cb, *extra]).preflight(small_task(), small_mlp())


def test_strict_false_warns_and_trains(tmp_path, caplog):
    cb = MovingAverageCheckpoint(monitor="train/los", window=1, strict=False)
    with caplog.at_level(logging.WARNING, logger="seqlab"):
        trainer(tmp_path, [cb]).fit(small_task(), small_mlp())
    assert "closest is 'train/loss'" in caplog.text
    assert not (tmp_path / "exp/mlp/checkpoints/best.safetensors").exists()


class OwnEvaluate(ReverseDigits):
    """A task that scores validation itself, so it declares no names before the first validation."""

    def evaluate(self, model):
        return {"score": 0.5}


def test_a_task_with_its_own_evaluate_is_checked_at_the_first_validation(tmp_path):
    counter = Counter()
    cb = EarlyStopping(monitor="val/masked_acc", mode="max")
    t = trainer(tmp_path, [counter, cb])
    t.preflight(small_task(OwnEvaluate), small_mlp())  # nothing to check against yet
    with pytest.raises(SeqlabError, match="at validation \\(the closest is 'val/score'\\)"):
        t.fit(small_task(OwnEvaluate), small_mlp())
    assert counter.steps == 2  # the first validation
    trainer(tmp_path, [EarlyStopping(monitor="val/score")], overwrite=True).fit(small_task(OwnEvaluate), small_mlp())


def test_the_cli_exits_2_naming_the_closest_metric(tmp_path, run_seqlab):
    recipe = tiny_recipe()
    recipe["trainer"]["callbacks"] = [{"class_path": "EarlyStopping", "init_args": {"monitor": "val/los"}}]
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(recipe))
    code, out, err = run_seqlab("fit", "--recipe", path, "--trainer.root_dir", tmp_path / "runs")
    assert code == 2, err
    assert len(err) == 1 and "monitor 'val/los' names no metric" in err[0] and "'val/loss'" in err[0], err
    assert not (tmp_path / "runs").exists()
