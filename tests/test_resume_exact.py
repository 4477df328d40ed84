"""Resume is exact: every number a resumed run produces is compared with ``==``, not a tolerance.

A 30-step run with an LR schedule, clipping and a moving-average best checkpoint (window 5, so a
best exists from step 5 on, long before the crash) is stopped after step 25 (its `last` is from
step 20) and resumed; the same run uninterrupted is the reference. Per-step lr and loss, every
callback's saved state, the best checkpoint, the CSV log and the final test metrics must match
bit for bit (the log's tokens/s, a wall-clock figure, excepted).
"""

import csv
import math

import numpy as np
import paddle
import pytest
from support import StopAt

from seqlab import Callback
from seqlab.callbacks import CosineWarmupLR, GradientClip, MovingAverageCheckpoint
from seqlab.checkpoint import load_checkpoint
from seqlab.models.mlp import MLP
from seqlab.tasks.reverse_digits import ReverseDigits
from seqlab.trainer import Trainer

MAX_STEPS = 30


class Record(Callback):
    def __init__(self):
        self.seen: dict[int, tuple[float, float]] = {}

    def on_train_batch_end(self, trainer, task, model, metrics):
        self.seen[trainer.global_step] = (metrics["train/lr"], metrics["train/loss"])


def _task():
    return ReverseDigits(
        batch_size=8, seq_len=33, digit_max=8, eval_samples=8, probe_digit_min=9, probe_digit_max=12, probe_samples=4
    )


def _model():
    paddle.seed(0)
    return MLP(embed_dim=8, window=4, hidden_dim=16)


def _trainer(root, extra=()):
    callbacks = [CosineWarmupLR(warmup_steps=5), GradientClip(1.0), MovingAverageCheckpoint(window=5), *extra]
    return Trainer(
        max_steps=MAX_STEPS,
        val_every=10,
        log_every=1,
        save_every=10,
        seed=7,
        root_dir=str(root),
        experiment="exp",
        run_name="mlp",
        callbacks=callbacks,
    )


def _states(trainer):
    return {cb.state_key: cb.state_dict() for cb in trainer.callbacks if type(cb).state_dict is not Callback.state_dict}


def _same(a, b) -> bool:
    """Equal, NaN equal to NaN (a probe metric a model cannot score is NaN in both runs)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    whole_root, again_root = tmp_path_factory.mktemp("whole"), tmp_path_factory.mktemp("resumed")
    whole_rec = Record()
    whole = _trainer(whole_root, [whole_rec])
    whole_metrics = whole.fit(_task(), _model())
    with pytest.raises(KeyboardInterrupt):
        _trainer(again_root, [StopAt(25)]).fit(_task(), _model())
    ckpts = again_root / "exp/mlp/checkpoints"
    assert load_checkpoint(ckpts / "last.safetensors")["step"] == 20
    assert load_checkpoint(ckpts / "best.safetensors")["step"] >= 5  # a best before the crash
    again_rec = Record()
    again = _trainer(again_root, [again_rec])
    again_metrics = again.fit(_task(), _model(), ckpt_path="last")
    return (whole_root, whole, whole_rec, whole_metrics), (again_root, again, again_rec, again_metrics)


def test_lr_loss_and_callback_states_after_resume_are_exactly_the_uninterrupted_runs(runs):
    (_, whole, whole_rec, _), (_, again, again_rec, _) = runs
    assert sorted(again_rec.seen) == list(range(21, MAX_STEPS + 1))
    assert again_rec.seen == {step: whole_rec.seen[step] for step in again_rec.seen}
    states_whole, states_again = _states(whole), _states(again)
    assert {"CosineWarmupLR", "MovingAverageCheckpoint"} <= set(states_whole)
    assert states_again == states_whole  # the moving average's values, best value and step included


def test_best_checkpoint_and_test_metrics_after_resume_are_exactly_the_uninterrupted_runs(runs):
    (whole_root, _, _, whole_metrics), (again_root, _, _, again_metrics) = runs
    assert whole_metrics.keys() == again_metrics.keys()
    assert all(_same(again_metrics[k], whole_metrics[k]) for k in whole_metrics), (again_metrics, whole_metrics)
    for name in ("best.safetensors", "last.safetensors"):
        a = load_checkpoint(again_root / "exp/mlp/checkpoints" / name)
        b = load_checkpoint(whole_root / "exp/mlp/checkpoints" / name)
        # (the interrupted session's files also name its StopAt, whose state is empty)
        stateful = [{key: state for key, state in c["callbacks"].items() if state} for c in (a, b)]
        assert (a["step"], a["meta"], stateful[0]) == (b["step"], b["meta"], stateful[1]), name
        assert all(np.array_equal(a["model"][k], b["model"][k]) for k in b["model"]), name


def test_the_csv_log_after_resume_is_exactly_the_uninterrupted_runs(runs):
    (whole_root, *_), (again_root, *_) = runs

    def rows(root):
        with open(root / "exp/mlp/metrics.csv", newline="") as f:
            return [{k: v for k, v in row.items() if k != "tokens_per_s"} for row in csv.DictReader(f)]

    again = rows(again_root)
    assert [int(r["step"]) for r in again] == list(range(1, MAX_STEPS + 1))
    assert again == rows(whole_root)  # the exact reprs of loss, lr, grad norm and validation
