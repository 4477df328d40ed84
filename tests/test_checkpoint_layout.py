"""The checkpoint package: its public names, and the one way evaluation loads a run's weights.

``load_tested_weights`` is shared by the final test of a fit (``Trainer._test_best``),
``Trainer.validate``/``test`` and ``seqlab predict``; before it, the final test loaded the best
checkpoint without checking that it fits the model.
"""

from __future__ import annotations

import dataclasses

import pytest

import seqlab.checkpoint
from seqlab import Callback
from seqlab.checkpoint import (
    BEST,
    LAST,
    TestedWeights,
    atomic_save,
    checkpoint_file,
    load_tested_weights,
    weights_checkpoint,
)
from seqlab.errors import SeqlabError
from seqlab.models.mlp import MLP
from seqlab.optim import AdamW
from seqlab.seeding import seed_everything
from seqlab.tasks.reverse_digits import ReverseDigits
from seqlab.trainer import Trainer

#: Every name code imported from the single-module ``seqlab/checkpoint.py`` before the split.
OLD_NAMES = (
    "ALIASES BEST CONVERT_COMMAND FORMAT_VERSION LAST LEGACY_SUFFIX METADATA_KEY SUFFIX atomic_save "
    "best_or_last capture_rng_state check_compatible checkpoint_file claim_run_dir convert_legacy_checkpoint "
    "load_checkpoint load_optimizer_state optimizer_state prepare_run_dir resolve_ckpt_path restore_rng_state "
    "restore_trainer split_tensors tested_weights trainer_checkpoint weights_checkpoint"
).split()


def test_the_package_keeps_every_name_of_the_old_module():
    missing = [name for name in OLD_NAMES if not hasattr(seqlab.checkpoint, name)]
    assert not missing
    assert set(OLD_NAMES) <= set(seqlab.checkpoint.__all__)


def small_task():
    return ReverseDigits(
        digit_max=8, seq_len=33, batch_size=8, eval_samples=8, probe_digit_min=9, probe_digit_max=12, probe_samples=4
    )


def small_mlp(hidden_dim=16):
    return MLP(embed_dim=8, window=4, hidden_dim=hidden_dim)


def trainer(tmp_path, callbacks=(), **kwargs):
    settings = dict(max_steps=2, val_every=0, save_every=2, seed=3, root_dir=str(tmp_path), experiment="exp")
    return Trainer(
        **{**settings, **kwargs},
        run_name="mlp",
        optimizer=AdamW(lr=3e-3),
        callbacks=list(callbacks),
        default_callbacks=False,
    )


class PlantBest(Callback):
    """Writes ``best`` at the end of training: the given checkpoint, or the model's own weights."""

    def __init__(self, ckpt=None):
        self.ckpt = ckpt

    def on_train_end(self, trainer, task, model):
        ckpt = self.ckpt if self.ckpt is not None else dict(weights_checkpoint(model), step=1, meta={"note": "own"})
        atomic_save(ckpt, checkpoint_file(trainer.checkpoint_dir, BEST))


def test_the_final_test_refuses_a_best_checkpoint_that_does_not_fit(tmp_path):
    seed_everything(0)
    foreign = weights_checkpoint(small_mlp(hidden_dim=32))  # another architecture's weights
    with pytest.raises(SeqlabError, match="does not fit this model"):
        trainer(tmp_path, [PlantBest(foreign)]).fit(small_task(), small_mlp())


def test_the_final_test_records_which_checkpoint_it_loaded(tmp_path):
    seed_everything(0)
    t = trainer(tmp_path, [PlantBest()])
    t.fit(small_task(), small_mlp())
    assert t.tested == {"checkpoint": BEST, "step": 1, "meta": {"note": "own"}}
    seed_everything(0)
    t = trainer(tmp_path, [PlantBest()], test_checkpoint="last", overwrite=True)
    t.fit(small_task(), small_mlp())
    assert t.tested["checkpoint"] == LAST and t.tested["step"] == 2


@pytest.fixture
def run_dir(tmp_path):
    """A finished 2-step run with a best checkpoint at step 1: its checkpoints folder."""
    seed_everything(0)
    t = trainer(tmp_path, [PlantBest()])
    t.fit(small_task(), small_mlp())
    return t.checkpoint_dir


def test_load_tested_weights_resolves_by_rule_alias_and_path(run_dir):
    task, model = small_task(), small_mlp()
    best = load_tested_weights(run_dir, task, model)
    assert best == TestedWeights(checkpoint_file(run_dir, BEST), BEST, 1, {"note": "own"})
    assert load_tested_weights(run_dir, task, model, rule=LAST).alias == LAST
    assert load_tested_weights(run_dir, task, model, "last").step == 2
    by_path = load_tested_weights(run_dir, task, model, str(checkpoint_file(run_dir, LAST)))
    assert by_path.alias is None and by_path.step == 2 and by_path.path == checkpoint_file(run_dir, LAST)
    with pytest.raises(dataclasses.FrozenInstanceError):
        best.step = 3


def test_load_tested_weights_sets_the_weights_only_when_they_fit(run_dir):
    model = small_mlp()
    before = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    load_tested_weights(run_dir, small_task(), model, "last")
    assert any((model.state_dict()[k].numpy() != v).any() for k, v in before.items())
    other = small_mlp(hidden_dim=32)
    untouched = {k: v.numpy().copy() for k, v in other.state_dict().items()}
    with pytest.raises(SeqlabError, match="does not fit this model"):
        load_tested_weights(run_dir, small_task(), other)
    assert all((other.state_dict()[k].numpy() == v).all() for k, v in untouched.items())


def test_load_tested_weights_without_a_checkpoint_says_train_first(tmp_path):
    with pytest.raises(SeqlabError, match="train this run first"):
        load_tested_weights(tmp_path / "none", small_task(), small_mlp())
    with pytest.raises(SeqlabError, match="train this run first"):
        load_tested_weights(tmp_path / "none", small_task(), small_mlp(), "best")
