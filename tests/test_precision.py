"""precision: validated everywhere, float32 with one warning on CPU, recorded as it ran."""

import json
import logging
from pathlib import Path

import paddle
import pytest

from seqlab import SeqlabError, Trainer
from seqlab.models.mlp import MLP
from seqlab.precision import Precision
from seqlab.tasks.reverse_digits import ReverseDigits
from seqlab.trainer import seed_everything

ON_GPU = paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0


def small_task():
    return ReverseDigits(
        digit_max=8, seq_len=33, batch_size=8, eval_samples=8, probe_digit_min=9, probe_digit_max=10, probe_samples=4
    )


def test_unknown_precision_is_refused():
    with pytest.raises(SeqlabError, match="trainer.precision 'fp8' is not supported"):
        Trainer(precision="fp8")


@pytest.mark.skipif(ON_GPU, reason="checks the CPU behaviour")
@pytest.mark.parametrize("setting", ["bf16-mixed", "16-mixed"])
def test_mixed_precision_on_cpu_warns_once_and_records_float32(tmp_path, setting):
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("seqlab.precision")
    logger.addHandler(handler)
    try:
        trainer = Trainer(
            max_steps=3, val_every=0, root_dir=str(tmp_path), experiment="p", run_name="mlp", precision=setting
        )
        seed_everything(0)
        trainer.fit(small_task(), MLP(embed_dim=8, window=4, hidden_dim=16))
    finally:
        logger.removeHandler(handler)
    warnings = [r.getMessage() for r in records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and f"precision {setting} has no effect on CPU" in warnings[0]
    assert trainer.precision.effective == "32-true" and trainer.precision.scaler is None
    metrics = json.loads((tmp_path / "p/mlp/metrics.json").read_text())
    assert metrics["precision"] == "32-true" and metrics["precision_requested"] == setting


def test_default_precision_records_no_request(tmp_path):
    seed_everything(0)
    Trainer(max_steps=2, val_every=0, root_dir=str(tmp_path), experiment="p", run_name="mlp").fit(
        small_task(), MLP(embed_dim=8, window=4, hidden_dim=16)
    )
    metrics = json.loads((tmp_path / "p/mlp/metrics.json").read_text())
    assert metrics["precision"] == "32-true" and "precision_requested" not in metrics


def test_cli_rejects_a_typo_in_precision(tmp_path, monkeypatch, run_seqlab):
    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    code, _, err = run_seqlab(
        "fit",
        "--recipe",
        "recipes/reverse_digits_cpu.yaml",
        "--runs",
        "mlp",
        "--trainer.precision",
        "bf16",
        "--trainer.root_dir",
        tmp_path / "r",
    )
    assert code == 2
    assert err == [
        "error: recipe 'recipes/reverse_digits_cpu.yaml', run 'mlp': trainer.precision expects one of "
        "'32-true', 'bf16-mixed', '16-mixed', got 'bf16'; fix its value."
    ]
    assert not (tmp_path / "r").exists()


# --------------------------------------------------------------------------------- GPU only
@pytest.mark.skipif(not ON_GPU, reason="needs a CUDA GPU: on CPU, Paddle 3.3's AMP runs float32 (see above)")
def test_bf16_run_on_gpu_has_finite_decreasing_loss(tmp_path):
    from seqlab import Callback

    class Losses(Callback):
        values = []

        def on_train_batch_end(self, trainer, task, model, metrics):
            self.values.append(metrics["train/loss"])

    seed_everything(0)
    trainer = Trainer(
        max_steps=60,
        val_every=0,
        root_dir=str(tmp_path),
        experiment="g",
        run_name="bf16",
        precision="bf16-mixed",
        callbacks=[Losses()],
    )
    trainer.fit(small_task(), MLP())
    assert trainer.precision.effective == "bf16-mixed"
    values = Losses.values
    assert all(v == v and abs(v) < 1e4 for v in values)
    assert sum(values[-10:]) / 10 < sum(values[:10]) / 10


@pytest.mark.skipif(not ON_GPU, reason="needs a CUDA GPU: on CPU, Paddle's GradScaler is disabled")
def test_fp16_scaler_state_survives_resume(tmp_path):
    from seqlab.checkpoint import load_checkpoint

    seed_everything(0)
    Trainer(
        max_steps=20,
        val_every=0,
        save_every=10,
        root_dir=str(tmp_path),
        experiment="g",
        run_name="fp16",
        precision="16-mixed",
    ).fit(small_task(), MLP())
    ckpt = load_checkpoint(tmp_path / "g/fp16/checkpoints/last.safetensors")
    assert ckpt["precision"], "the scaler's state is in the checkpoint"
    resumed = Trainer(
        max_steps=25, val_every=0, root_dir=str(tmp_path), experiment="g", run_name="fp16", precision="16-mixed"
    )
    seed_everything(0)
    model = MLP()
    resumed.preflight(small_task(), model, "last")
    from seqlab.checkpoint import restore_trainer

    restore_trainer(resumed, ckpt)
    state = resumed.precision.state_dict()
    for key, value in ckpt["precision"].items():
        assert str(state[key]) == str(value), key


def test_precision_object_on_this_machine():
    p = Precision("32-true")
    assert p.effective == "32-true" and not p.is_mixed and p.state_dict() == {}
