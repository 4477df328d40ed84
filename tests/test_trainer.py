"""The Trainer: hook order, exact resume, metrics.json, checkpoint safety."""

import json
import os

import pytest
from support import LossRecorder, StopAt

import seqlab
from seqlab import Callback, Event, SeqlabError, Trainer
from seqlab.callbacks import CosineWarmupLR, GradientClip, MovingAverageCheckpoint
from seqlab.checkpoint import load_checkpoint
from seqlab.models.lstm import LSTM
from seqlab.models.mlp import MLP
from seqlab.optim import AdamW
from seqlab.tasks.reverse_digits import ReverseDigits
from seqlab.trainer import seed_everything


def small_task():
    return ReverseDigits(
        digit_max=8, seq_len=33, batch_size=8, eval_samples=16, probe_digit_min=9, probe_digit_max=12, probe_samples=8
    )


def small_mlp():
    seed_everything(0)
    return MLP(embed_dim=8, window=4, hidden_dim=16)


def make_trainer(tmp_path, run_name, callbacks, max_steps=60, **kwargs):
    return Trainer(
        max_steps=max_steps,
        val_every=20,
        save_every=10,
        seed=7,
        root_dir=str(tmp_path),
        experiment="exp",
        run_name=run_name,
        optimizer=AdamW(lr=3e-3),
        callbacks=callbacks,
        **kwargs,
    )


def test_resume_is_exact(tmp_path):
    """60 steps in one go == 30 steps, a crash, and a resume from `last` to 60, bit for bit."""
    full = LossRecorder()
    make_trainer(
        tmp_path, "full", [full, CosineWarmupLR(warmup_steps=10), GradientClip(0.5), MovingAverageCheckpoint(window=5)]
    ).fit(small_task(), small_mlp())

    first = LossRecorder()
    with pytest.raises(KeyboardInterrupt):
        make_trainer(
            tmp_path,
            "resumed",
            [first, StopAt(30), CosineWarmupLR(warmup_steps=10), GradientClip(0.5), MovingAverageCheckpoint(window=5)],
        ).fit(small_task(), small_mlp())
    assert load_checkpoint(tmp_path / "exp/resumed/checkpoints/last.safetensors")["step"] == 30
    second = LossRecorder()
    # A fresh model with another init: everything must come from the checkpoint.
    seed_everything(123)
    other_init = MLP(embed_dim=8, window=4, hidden_dim=16)
    make_trainer(
        tmp_path,
        "resumed",
        [second, CosineWarmupLR(warmup_steps=10), GradientClip(0.5), MovingAverageCheckpoint(window=5)],
    ).fit(small_task(), other_init, ckpt_path="last")

    assert sorted(first.losses) == list(range(1, 31))
    assert sorted(second.losses) == list(range(31, 61))
    resumed = {**first.losses, **second.losses}
    assert resumed == full.losses  # exact float equality, step by step
    a = json.loads((tmp_path / "exp/full/metrics.json").read_text())
    b = json.loads((tmp_path / "exp/resumed/metrics.json").read_text())
    for key in ("masked_acc", "exact_acc", "loss", "best_step", "best_value", "steps"):
        assert a[key] == b[key], key


class EventRecorder(Callback):
    def __init__(self, log, name, runs_last=False):
        self.log, self.name, self.runs_last = log, name, runs_last

    @property
    def state_key(self):
        return f"EventRecorder[{self.name}]"

    def __getattribute__(self, attr):
        if attr in {e.value for e in Event}:

            def hook(trainer, task, model, *extra, _attr=attr):
                self.log.append((_attr, self.name))

            return hook
        return object.__getattribute__(self, attr)


def test_hook_order_and_monitors_last(tmp_path):
    log = []
    callbacks = [EventRecorder(log, "monitor", runs_last=True), EventRecorder(log, "a"), EventRecorder(log, "b")]
    make_trainer(tmp_path, "hooks", callbacks, max_steps=2, default_callbacks=False).fit(small_task(), small_mlp())
    events = [e for e, name in log if name == "a"]
    step = [
        "on_train_batch_start",
        "on_before_backward",
        "on_after_backward",
        "on_before_optimizer_step",
        "on_train_batch_end",
    ]
    assert events == [
        "setup",
        "on_fit_start",
        "on_train_start",
        *step,
        *step,
        "on_validation_start",
        "on_validation_end",
        "on_save_checkpoint",
        "on_train_end",
        "on_test_end",
        "on_fit_end",
        "teardown",
    ]
    # Within every event: a, then b, then the monitoring callback, whatever the given order.
    for i in range(0, len(log), 3):
        assert [name for _, name in log[i : i + 3]] == ["a", "b", "monitor"]


def test_exception_fires_on_exception_then_teardown(tmp_path):
    log = []
    with pytest.raises(KeyboardInterrupt):
        make_trainer(tmp_path, "crash", [StopAt(1), EventRecorder(log, "a")], max_steps=5, default_callbacks=False).fit(
            small_task(), small_mlp()
        )
    assert [e for e, _ in log][-2:] == ["on_exception", "teardown"]


def test_metrics_json_and_best_checkpoint(tmp_path):
    trainer = make_trainer(tmp_path, "mlp", [MovingAverageCheckpoint(window=5)], max_steps=20)
    test_metrics = trainer.fit(small_task(), small_mlp())
    metrics = json.loads((tmp_path / "exp/mlp/metrics.json").read_text())
    for key in (
        "params",
        "tokens_per_s",
        "wall_time_s",
        "steps",
        "masked_acc",
        "exact_acc",
        "loss",
        "best_step",
        "best_value",
        "probe_masked_acc",
        "state_size",
    ):
        assert key in metrics, key
    assert metrics["steps"] == 20 and metrics["tested_checkpoint"] == "best"
    assert 5 <= metrics["best_step"] <= 20
    assert metrics["params"] == small_mlp().num_parameters()
    assert metrics["tokens_per_s"] > 0 and metrics["wall_time_s"] > 0
    assert metrics["masked_acc"] == test_metrics["test/masked_acc"]
    # Where it trained: the CPU's model name and the cores this process may use.
    from seqlab.machine import cpu_name

    assert metrics["machine"].startswith(f"{cpu_name()}, {len(os.sched_getaffinity(0))} cores")
    best = load_checkpoint(tmp_path / "exp/mlp/checkpoints/best.safetensors")
    assert best["step"] == metrics["best_step"]
    assert best["meta"]["best_value"] == pytest.approx(metrics["best_value"])


def test_checkpoint_contents(tmp_path):
    make_trainer(tmp_path, "mlp", [CosineWarmupLR(warmup_steps=2)], max_steps=4).fit(small_task(), small_mlp())
    ckpt = load_checkpoint(tmp_path / "exp/mlp/checkpoints/last.safetensors")
    for key in ("format_version", "step", "model", "optimizer", "callbacks", "task", "rng", "config"):
        assert key in ckpt, key
    assert set(ckpt["rng"]) == {"python", "numpy", "paddle"}
    assert ckpt["format_version"] == 2 and ckpt["model"]["head.weight"].shape == (16, 12)
    assert "CosineWarmupLR" in ckpt["callbacks"] and "MovingAverageCheckpoint" in ckpt["callbacks"]
    assert ckpt["model_name"] == "mlp" and ckpt["task_name"] == "reverse_digits"
    assert not list((tmp_path / "exp/mlp/checkpoints").glob("*.tmp"))


def test_corrupt_checkpoint_is_a_clear_error_and_is_kept(tmp_path):
    run_dir = tmp_path / "exp/mlp/checkpoints"
    run_dir.mkdir(parents=True)
    (run_dir / "last.safetensors").write_bytes(b"not a checkpoint")
    with pytest.raises(SeqlabError, match="unreadable"):
        make_trainer(tmp_path, "mlp", [], max_steps=2).fit(small_task(), small_mlp(), ckpt_path="last")
    assert (run_dir / "last.safetensors").read_bytes() == b"not a checkpoint"


def test_incompatible_checkpoint_names_the_mismatch(tmp_path):
    make_trainer(tmp_path, "mlp", [], max_steps=2, default_callbacks=False).fit(small_task(), small_mlp())
    path = tmp_path / "exp/mlp/checkpoints/last.safetensors"
    before = path.read_bytes()
    seed_everything(0)
    with pytest.raises(SeqlabError, match="written for model 'mlp'"):
        make_trainer(tmp_path, "lstm", [], max_steps=4).fit(small_task(), LSTM(hidden_sizes=[8]), ckpt_path=str(path))
    # A run driven from Python records its config, so the settings are checked first...
    with pytest.raises(SeqlabError, match="model.init_args.hidden_dim=16, but this run sets 32"):
        seed_everything(0)
        make_trainer(tmp_path, "mlp", [], max_steps=4).fit(
            small_task(), MLP(embed_dim=8, window=4, hidden_dim=32), ckpt_path=str(path)
        )
    # ...and the tensors' shapes whatever the config says.
    from seqlab.checkpoint import check_compatible

    with pytest.raises(SeqlabError, match="shape"):
        check_compatible(
            load_checkpoint(path), path, "mlp", "reverse_digits", MLP(embed_dim=8, window=4, hidden_dim=32).state_dict()
        )
    assert path.read_bytes() == before


def test_duplicate_state_keys_are_refused():
    with pytest.raises(SeqlabError, match="state_key"):
        Trainer(callbacks=[MovingAverageCheckpoint(), MovingAverageCheckpoint(window=5)])


def test_sharding_splits_the_global_batch():
    trainer = Trainer(default_callbacks=False)
    task = small_task()
    task.setup(0)
    batch = task.train_batch(0)
    trainer.dp.world_size, trainer.dp.rank = 2, 1
    shard = trainer.dp.shard(batch)
    assert shard.inputs.shape[0] == 4
    assert (shard.inputs.numpy() == batch.inputs.numpy()[1::2]).all()


def test_public_api():
    for name in ("Trainer", "Task", "Model", "Callback", "register_model", "register_task"):
        assert hasattr(seqlab, name)
