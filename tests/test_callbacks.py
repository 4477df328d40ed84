"""Tests of the built-in callbacks: unit tests that drive their hooks with a real (tiny) Paddle
model and optimizer, and integration tests with short real fits, including an interrupted and
resumed run compared with an uninterrupted one."""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path

import numpy as np
import pytest
from support import StopAt

import seqlab  # noqa: F401
from seqlab._paddle import import_paddle
from seqlab.callback import Callback
from seqlab.callbacks import (
    ConstantLR,
    CosineWarmupLR,
    CSVLogger,
    EarlyStopping,
    GradientClip,
    MovingAverageCheckpoint,
    ProgressBar,
    SaveConfig,
    SaveSamples,
    SaveSummary,
    VisualDLLogger,
    default_callbacks,
)
from seqlab.errors import SeqlabError

paddle = import_paddle()


# ---------------------------------------------------------------------------------------------
# A minimal stand-in for the Trainer: the attributes docs/api.md lets a callback use, backed by a
# real Paddle optimizer. It records checkpoints instead of writing them.
class StubTrainer:
    def __init__(self, tmp_path: Path, lr: float = 1e-2, max_steps: int = 100, params=None):
        self.max_steps = max_steps
        self.val_every = 10
        self.log_every = 10
        self.save_every = 0
        self.seed = 0
        self.global_step = 0
        self.base_lr = lr
        self.layer = paddle.nn.Linear(4, 3)
        self.optimizer = paddle.optimizer.AdamW(learning_rate=lr, parameters=params or self.layer.parameters())
        self.run_dir = tmp_path / "run"
        self.checkpoint_dir = self.run_dir / "checkpoints"
        self.experiment, self.run_name, self.config = "exp", "run", {}
        self.is_global_zero = True
        self.callbacks = []
        self.logged: dict[str, float] = {}
        self.saved: list[tuple[Path, dict]] = []

    def log(self, key, value):
        self.logged[key] = float(value)

    def save_checkpoint(self, path, meta=None):
        self.saved.append((Path(path), dict(meta or {}), self.global_step))

    def hparams(self):
        return {"lr": self.base_lr, "max_steps": self.max_steps}


# ---------------------------------------------------------------------------------------------
# CosineWarmupLR / ConstantLR
def expected_lr(k: int, base: float, warmup: int, total: int, min_lr: float) -> float:
    """The lr step k (0-based) should use: linear warmup from 0, then half a cosine to min_lr."""
    if k < warmup:
        return base * k / warmup
    progress = (k - warmup) / (total - warmup)
    return min_lr + (base - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def lrs_used(callback, trainer, steps: int) -> list[float]:
    out = []
    for _ in range(steps):
        out.append(float(trainer.optimizer.get_lr()))
        trainer.global_step += 1
        callback.on_train_batch_end(trainer, None, None, {})
    return out


@pytest.mark.parametrize("warmup", [0, 10])
def test_cosine_warmup_lr_matches_closed_form(tmp_path, warmup):
    base, total, min_lr = 4e-3, 100, 1e-6
    trainer = StubTrainer(tmp_path, lr=base, max_steps=total)
    cb = CosineWarmupLR(warmup_steps=warmup, min_lr=min_lr)
    cb.setup(trainer, None, None)
    used = lrs_used(cb, trainer, total)
    checkpoints = {0, warmup, (warmup + total) // 2, total - 1}
    for k in sorted(checkpoints):
        assert used[k] == pytest.approx(expected_lr(k, base, warmup, total, min_lr), rel=1e-6, abs=1e-12)
    # After the last step the schedule has reached min_lr.
    assert float(trainer.optimizer.get_lr()) == pytest.approx(min_lr, rel=1e-6)
    if warmup == 0:
        assert used[0] == base  # the seed starts at lr0
    else:
        assert used[0] == 0.0 and used[warmup] == pytest.approx(base)


def test_cosine_warmup_lr_state_resumes_mid_warmup(tmp_path):
    trainer = StubTrainer(tmp_path, lr=1e-3, max_steps=40)
    cb = CosineWarmupLR(warmup_steps=10, max_steps=40)
    cb.setup(trainer, None, None)
    first = lrs_used(cb, trainer, 7)
    state = cb.state_dict()
    rest = lrs_used(cb, trainer, 20)

    resumed_trainer = StubTrainer(tmp_path, lr=1e-3, max_steps=40)
    resumed = CosineWarmupLR(warmup_steps=10, max_steps=40)
    resumed.setup(resumed_trainer, None, None)
    resumed.load_state_dict(state)
    assert lrs_used(resumed, resumed_trainer, 20) == rest  # resume is exact
    assert first[0] == 0.0


def test_cosine_warmup_lr_rejects_warmup_longer_than_schedule(tmp_path):
    trainer = StubTrainer(tmp_path, max_steps=10)
    with pytest.raises(SeqlabError, match="warmup_steps"):
        CosineWarmupLR(warmup_steps=10).setup(trainer, None, None)


def test_constant_lr_keeps_base_lr(tmp_path):
    trainer = StubTrainer(tmp_path, lr=1e-3)
    cb = ConstantLR()
    cb.setup(trainer, None, None)
    assert lrs_used(cb, trainer, 5) == [1e-3] * 5


# ---------------------------------------------------------------------------------------------
# GradientClip
def global_norm(params) -> float:
    return math.sqrt(sum(float((p.grad.numpy().astype(np.float64) ** 2).sum()) for p in params))


@pytest.mark.parametrize("scale, clipped", [(100.0, True), (1e-3, False)])
def test_gradient_clip_global_norm(tmp_path, scale, clipped):
    paddle.seed(0)
    trainer = StubTrainer(tmp_path)
    layer = trainer.layer
    x = paddle.randn([8, 4])
    (layer(x).sum() * scale).backward()
    params = layer.parameters()
    before = global_norm(params)
    grads_before = [p.grad.numpy().copy() for p in params]
    assert (before > 1.0) == clipped

    cb = GradientClip(max_norm=1.0)
    cb.on_train_start(trainer, None, layer)
    cb.on_before_optimizer_step(trainer, None, layer, trainer.optimizer)

    assert trainer.logged["train/grad_norm"] == pytest.approx(before, rel=1e-5)
    after = global_norm(params)
    if clipped:
        assert after == pytest.approx(1.0, rel=1e-5)
        # Clipping scales all gradients by one factor: their directions are unchanged.
        for g0, p in zip(grads_before, params):
            np.testing.assert_allclose(p.grad.numpy() * before, g0, rtol=1e-4, atol=1e-6)
    else:
        assert after == pytest.approx(before, rel=1e-6)


# ---------------------------------------------------------------------------------------------
# MovingAverageCheckpoint
def synthetic_losses(n: int = 400, seed: int = 3) -> list[float]:
    rng = np.random.default_rng(seed)
    steps = np.arange(n)
    # Falls, then rises again after step ~250 (overfitting-like), with noise.
    return list(2.0 * np.exp(-steps / 80) + 1e-5 * (steps - 250).clip(0) ** 2 + 0.3 * rng.random(n))


def expected_best_step(values, window, mode="min"):
    """Brute force: the 1-based step whose trailing window mean is the first strict optimum."""
    best, best_step = None, None
    for end in range(window, len(values) + 1):
        avg = float(np.mean(values[end - window : end]))
        if best is None or (avg < best if mode == "min" else avg > best):
            best, best_step = avg, end
    return best_step, best


def drive_steps(cb, trainer, values, start=0):
    for i, v in enumerate(values, start=start + 1):
        trainer.global_step = i
        cb.on_train_batch_end(trainer, None, None, {"train/loss": v})


@pytest.mark.parametrize("mode", ["min", "max"])
def test_moving_average_checkpoint_picks_the_best_window(tmp_path, mode):
    values = synthetic_losses()
    trainer = StubTrainer(tmp_path)
    cb = MovingAverageCheckpoint(window=50, mode=mode)
    drive_steps(cb, trainer, values)
    step, value = expected_best_step(values, 50, mode)
    path, meta, saved_at = trainer.saved[-1]
    assert path == trainer.checkpoint_dir / "best.safetensors"
    assert meta["best_step"] == step == saved_at
    assert meta["best_value"] == pytest.approx(value, rel=1e-9)
    assert meta["monitor"] == "train/loss"
    # Nothing is saved before the window is full.
    assert min(s for _, _, s in trainer.saved) == 50


def test_moving_average_checkpoint_state_round_trip(tmp_path):
    values = synthetic_losses()
    whole = StubTrainer(tmp_path)
    cb = MovingAverageCheckpoint(window=30)
    drive_steps(cb, whole, values)

    split = StubTrainer(tmp_path)
    first = MovingAverageCheckpoint(window=30)
    drive_steps(first, split, values[:123])
    state = first.state_dict()
    second = MovingAverageCheckpoint(window=30)
    second.load_state_dict(state)
    assert second.state_dict() == state
    drive_steps(second, split, values[123:], start=123)
    assert [m for _, m, _ in split.saved] == [m for _, m, _ in whole.saved]
    assert second.state_dict() == cb.state_dict()


def test_moving_average_checkpoint_on_validation_metric(tmp_path):
    trainer = StubTrainer(tmp_path)
    cb = MovingAverageCheckpoint(monitor="val/masked_acc", window=1, mode="max")
    for step, acc in [(10, 0.2), (20, 0.5), (30, 0.4)]:
        trainer.global_step = step
        cb.on_train_batch_end(trainer, None, None, {"train/loss": 1.0})
        cb.on_validation_end(trainer, None, None, {"val/masked_acc": acc})
    assert [m["best_step"] for _, m, _ in trainer.saved] == [10, 20]


def test_early_stopping_patience_and_state(tmp_path):
    trainer = StubTrainer(tmp_path)
    trainer.should_stop = False
    cb = EarlyStopping(monitor="val/masked_acc", mode="max", patience=2, min_delta=0.01)
    accs = [0.10, 0.20, 0.205, 0.25, 0.24, 0.25, 0.30]
    for i, acc in enumerate(accs[:5], start=1):
        trainer.global_step = 10 * i
        cb.on_validation_end(trainer, None, None, {"val/masked_acc": acc})
    # 0.205 is within min_delta of 0.20 (one bad), 0.25 improves, 0.24 is bad: not yet 2 in a row.
    assert not trainer.should_stop and cb.bad_validations == 1 and cb.best_value == 0.25
    resumed = EarlyStopping(monitor="val/masked_acc", mode="max", patience=2, min_delta=0.01)
    resumed.load_state_dict(cb.state_dict())
    trainer.global_step = 60
    resumed.on_validation_end(trainer, None, None, {"val/masked_acc": 0.25})
    assert trainer.should_stop and resumed.stopped_step == 60
    assert EarlyStopping.runs_last is True


def test_default_callbacks():
    kinds = [type(cb) for cb in default_callbacks()]
    assert kinds == [
        ProgressBar,
        CSVLogger,
        VisualDLLogger,
        MovingAverageCheckpoint,
        SaveConfig,
        SaveSummary,
        SaveSamples,
    ]
    assert MovingAverageCheckpoint.runs_last is True


# ---------------------------------------------------------------------------------------------
# Real fits
from seqlab.models.mlp import MLP  # noqa: E402
from seqlab.tasks.reverse_digits import ReverseDigits  # noqa: E402
from seqlab.trainer import Trainer  # noqa: E402

MAX_STEPS = 30


def tiny_task():
    return ReverseDigits(
        batch_size=8, seq_len=33, digit_max=8, eval_samples=8, probe_digit_min=9, probe_digit_max=12, probe_samples=4
    )


def tiny_model():
    paddle.seed(0)
    return MLP(embed_dim=8, window=4, hidden_dim=16)


class RecordLR(Callback):
    def __init__(self):
        self.seen: dict[int, tuple[float, float]] = {}

    def on_train_batch_end(self, trainer, task, model, metrics):
        self.seen[trainer.global_step] = (metrics["train/lr"], metrics["train/loss"])


def make_trainer(root, extra=(), max_steps=MAX_STEPS, run_name="mlp"):
    callbacks = [CosineWarmupLR(warmup_steps=5), GradientClip(1.0), MovingAverageCheckpoint(window=5), *extra]
    return Trainer(
        max_steps=max_steps,
        val_every=10,
        log_every=10,
        save_every=10,
        seed=7,
        root_dir=str(root),
        experiment="exp",
        run_name=run_name,
        callbacks=callbacks,
    )


def read_csv(path):
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return reader.fieldnames, list(reader)


def stateful(trainer):
    return {cb.state_key: cb.state_dict() for cb in trainer.callbacks if type(cb).state_dict is not Callback.state_dict}


def fit(trainer, ckpt_path=None):
    return trainer.fit(tiny_task(), tiny_model(), ckpt_path=ckpt_path)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    root = tmp_path_factory.mktemp("whole")
    rec = RecordLR()
    trainer = make_trainer(root, [rec])
    metrics = fit(trainer)
    return root, trainer, rec, metrics


@pytest.fixture(scope="module")
def resumed(tmp_path_factory):
    root = tmp_path_factory.mktemp("resumed")
    with pytest.raises(KeyboardInterrupt):
        fit(make_trainer(root, [StopAt(25)]))  # last.safetensors was written at step 20
    rec = RecordLR()
    trainer = make_trainer(root, [rec])
    metrics = fit(trainer, ckpt_path="last")
    return root, trainer, rec, metrics


def test_csv_columns_and_rows_after_fit(uninterrupted):
    root, trainer, _, _ = uninterrupted
    header, rows = read_csv(root / "exp" / "mlp" / "metrics.csv")
    assert header == ["step", "loss", "lr", "grad_norm", "tokens_per_s", "val_masked_acc", "val_exact_acc", "val_loss"]
    assert [int(r["step"]) for r in rows] == list(range(1, MAX_STEPS + 1))
    for r in rows:
        assert all(r[c] != "" for c in ("loss", "lr", "grad_norm", "tokens_per_s"))
        has_val = int(r["step"]) % 10 == 0
        assert (r["val_masked_acc"] != "") == has_val


def test_state_survives_resume(uninterrupted, resumed):
    _, whole, whole_rec, whole_metrics = uninterrupted
    root, again, again_rec, again_metrics = resumed
    # The resumed session ran steps 21..30 with exactly the lr and loss of the uninterrupted run:
    # resume is exact, so everything below is compared with ==.
    assert sorted(again_rec.seen) == list(range(21, MAX_STEPS + 1))
    assert again_rec.seen == {step: whole_rec.seen[step] for step in again_rec.seen}
    states_whole, states_again = stateful(whole), stateful(again)
    assert set(states_whole) >= {"CosineWarmupLR", "MovingAverageCheckpoint"}
    assert states_again.keys() == states_whole.keys()
    lr_w, lr_a = states_whole["CosineWarmupLR"], states_again["CosineWarmupLR"]
    assert lr_a["last_epoch"] == lr_w["last_epoch"] == MAX_STEPS
    assert lr_a["last_lr"] == lr_w["last_lr"]
    mac_w, mac_a = states_whole["MovingAverageCheckpoint"], states_again["MovingAverageCheckpoint"]
    assert mac_a["best_step"] == mac_w["best_step"]
    assert mac_a["best_value"] == mac_w["best_value"] and list(mac_a["values"]) == list(mac_w["values"])
    assert again_metrics.keys() == whole_metrics.keys()
    assert all(
        a == b or (a != a and b != b) for a, b in zip(again_metrics.values(), whole_metrics.values())
    )  # NaN == NaN


def test_csv_after_resume_has_each_step_once(uninterrupted, resumed):
    root, *_ = resumed
    header, rows = read_csv(root / "exp" / "mlp" / "metrics.csv")
    assert [int(r["step"]) for r in rows] == list(range(1, MAX_STEPS + 1))
    _, whole_rows = read_csv(uninterrupted[0] / "exp" / "mlp" / "metrics.csv")
    for a, b in zip(rows, whole_rows):
        assert (a["lr"], a["loss"]) == (b["lr"], b["loss"])


def test_visualdl_records_after_resume_are_continuous(resumed):
    from visualdl import LogReader

    root, *_ = resumed
    vdl = root / "exp" / "mlp" / "vdl"
    files = sorted(p for p in vdl.iterdir() if "vdlrecords" in p.name)
    # The interrupted session's file stays untouched; VisualDL reads only the newest one.
    assert len(files) == 2, files

    def read(path):
        # LogReader keys tags in its escaped form ("train%loss").
        return {
            kind: {tag.replace("%", "/"): values for tag, values in tags.items()}
            for kind, tags in LogReader(file_path=str(path)).log_data.items()
        }

    old, data = read(files[0]), read(files[1])
    assert [v.id for v in old["scalar"]["train/loss"]] == list(range(1, 26))  # ran up to 25
    # Replayed points keep their original values and wall times.
    assert [(v.value, v.timestamp) for v in old["scalar"]["train/loss"][:20]] == [
        (v.value, v.timestamp) for v in data["scalar"]["train/loss"][:20]
    ]
    for tag in ("train/loss", "train/lr", "train/grad_norm", "train/tokens_per_s"):
        assert [v.id for v in data["scalar"][tag]] == list(range(1, MAX_STEPS + 1)), tag
    assert [v.id for v in data["scalar"]["val/masked_acc"]] == [10, 20, 30]
    assert [v.id for v in data["text"]["val/sample"]] == [10, 20, 30]
    assert "trial/masked_acc" in data["scalar"] and not any(t.startswith("test/") for t in data["scalar"])
    assert [v.id for v in data["text"]["trial/result"]] == [MAX_STEPS]
    assert len(data["hyper_parameters"]) == 1


PLAIN_LINE = re.compile(
    r"^step (\d+)/30 \| loss \d+\.\d{4} \| lr \d\.\d{2}e[-+]\d{2} \| \d+\.\d kt/s \| eta (\d+h\d{2}m|\d+m\d{2}s|\d+s)$"
)


def test_progress_plain_lines(tmp_path, capsys):
    fit(make_trainer(tmp_path, [ProgressBar()]))
    out = capsys.readouterr().out.splitlines()
    steps = [int(m.group(1)) for m in map(PLAIN_LINE.match, out) if m]
    assert steps == [10, 20, 30], out
    val = [line for line in out if line.startswith("val step ")]
    assert len(val) == 3 and re.match(r"^val step 10 \| masked_acc \d\.\d{4} \| exact_acc", val[0])
    test = [line for line in out if line.startswith("test | ")]
    assert len(test) == 1 and "masked_acc" in test[0] and "checkpoint" in test[0]
    # Nothing else prints: no stray lines from the library.
    assert len(out) == 3 + 3 + 1, out


def test_format_duration():
    from seqlab.callbacks.progress import format_duration

    assert [format_duration(s) for s in (0, 45, 192, 3720)] == ["0s", "45s", "3m12s", "1h02m"]


class StopEarly(Callback):
    def on_train_batch_end(self, trainer, task, model, metrics):
        if trainer.global_step == 13:
            trainer.should_stop = True


def test_csv_after_early_stop_amends_the_last_row(tmp_path):
    fit(make_trainer(tmp_path, [StopEarly()]))
    _, rows = read_csv(tmp_path / "exp" / "mlp" / "metrics.csv")
    assert [int(r["step"]) for r in rows] == list(range(1, 14))
    # The validation after the stop lands in the row of step 13, which keeps its train columns.
    assert rows[-1]["val_masked_acc"] != "" and rows[-1]["loss"] != ""
    assert [int(r["step"]) for r in rows if r["val_masked_acc"]] == [10, 13]


def test_boolean_model_arguments_reach_visualdl_hparams(tmp_path):
    """VisualDL's add_hparams rejects bools; a model with a bool init_arg must still finish."""
    from visualdl import LogReader

    trainer = Trainer(
        max_steps=3, val_every=0, root_dir=str(tmp_path), experiment="e", run_name="mlp", callbacks=[VisualDLLogger()]
    )
    trainer.config = {"model": {"init_args": {"fused_ops": True, "width": 8}}}
    trainer.fit(
        ReverseDigits(
            digit_max=8,
            seq_len=33,
            batch_size=4,
            eval_samples=4,
            probe_digit_min=9,
            probe_digit_max=10,
            probe_samples=2,
        ),
        MLP(embed_dim=4, window=2, hidden_dim=8),
    )
    reader = LogReader(file_path=str(next((tmp_path / "e/mlp/vdl").glob("vdlrecords.*"))))
    records = reader.get_data("hyper_parameters", "hparam")
    infos = {h.name: h for h in records[0].hparam.hparamInfos}
    assert infos["model.fused_ops"].string_value == "true"
    assert infos["model.width"].int_value == 8
