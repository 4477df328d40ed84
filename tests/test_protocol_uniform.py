"""`protocol: uniform`: every run of the CPU recipe gets the same optimizer rules (each its own lr):
AdamW, decay 0.1 on exactly the matrices, global-norm clipping at 1.0, cosine with warmup, the
best checkpoint. `protocol: seed`/`best` keep the seed's uneven rules."""

import csv
import os
import subprocess
from argparse import Namespace
from pathlib import Path

import pytest
import yaml
from tiny import MLP, SEQLAB, tiny_recipe

from seqlab.callbacks.grad_clip import GradientClip
from seqlab.callbacks.lr_schedule import ConstantLR, CosineWarmupLR
from seqlab.commands._runs import instantiate, parse_runs
from seqlab.errors import SeqlabError
from seqlab.optim import AdamW
from seqlab.recipe import KNOWN_PROTOCOLS, load_recipe

ROOT = Path(__file__).resolve().parents[1]
CPU = str(ROOT / "recipes/reverse_digits_cpu.yaml")


def runs_of(recipe, protocol, *overrides):
    args = Namespace(recipe=recipe, runs=None, protocol=protocol, parallel=None)
    return parse_runs("fit", args, list(overrides))


def built(recipe, protocol, *overrides):
    out = {}
    for spec in runs_of(recipe, protocol, *overrides).specs:
        task, model, trainer = instantiate(spec)
        out[spec.name] = (spec, model, trainer)
    return out


def test_every_model_of_the_cpu_recipe_gets_the_same_rules(tmp_path):
    runs = built(CPU, "uniform", "--trainer.root_dir", str(tmp_path))
    assert set(runs) == {"rwkv7", "transformer", "transformer_modern", "lstm", "mlp"}
    own_lr = {"lstm": 4e-3, "rwkv7": 6e-3, "transformer": 3.2e-2, "transformer_modern": 1.6e-2, "mlp": 4e-3}  # kept
    settings = set()
    for name, (_spec, model, trainer) in runs.items():
        config = trainer.optimizer_config
        assert config.lr == pytest.approx(own_lr[name])
        settings.add((config.weight_decay, tuple(config.betas), config.eps, config.decay_all, config.decay_matrices))
        assert trainer.test_checkpoint == "best"
        # The decay goes to exactly the parameters with two or more dimensions larger than 1.
        optimizer = config.build(model)
        decayed = {id(p) for g in optimizer._param_groups if g["weight_decay"] > 0 for p in g["params"]}
        assert all(g["weight_decay"] in (0.0, 0.1) for g in optimizer._param_groups)
        for pname, param in model.named_parameters():
            matrix = sum(d > 1 for d in param.shape) >= 2
            assert (id(param) in decayed) == matrix, (name, pname, param.shape)
        clips = [c for c in trainer.callbacks if isinstance(c, GradientClip)]
        schedules = [c for c in trainer.callbacks if isinstance(c, (CosineWarmupLR, ConstantLR))]
        assert [c.max_norm for c in clips] == [1.0], name
        assert len(schedules) == 1 and isinstance(schedules[0], CosineWarmupLR), name
        assert (schedules[0].warmup, schedules[0].min_lr) == (0.05, 1e-6), name
    assert settings == {(0.1, (0.9, 0.999), 1e-8, False, True)}
    # The rule differs from the seed's model groups where it matters: the LSTM's gate matrices and
    # RWKV-7's low-rank factors are matrices; RWKV-7's [1, 1, C] mixing vectors are not.
    lstm_groups = runs["lstm"][1].param_groups()
    assert any(sum(d > 1 for d in p.shape) >= 2 for p in lstm_groups["no_decay"])
    shapes = {tuple(p.shape) for p in runs["rwkv7"][1].parameters()}
    assert (1, 1, 32) in shapes


def test_the_seed_protocol_keeps_the_seed_rules(tmp_path):
    runs = built(CPU, "best", "--trainer.root_dir", str(tmp_path))
    transformer, lstm = runs["transformer"][2], runs["lstm"][2]
    assert transformer.optimizer_config.decay_all and transformer.optimizer_config.weight_decay == 0.01
    assert not [c for c in transformer.callbacks if isinstance(c, GradientClip)]  # the seed never clips it
    assert [c for c in lstm.callbacks if isinstance(c, ConstantLR)]
    seed = built(str(ROOT / "recipes/reverse_digits.yaml"), "seed", "--trainer.root_dir", str(tmp_path))
    assert seed["rwkv7"][2].test_checkpoint == "last" and seed["transformer"][2].test_checkpoint == "best"
    assert not seed["lstm"][2].optimizer_config.decay_matrices


def test_uniform_keeps_other_callbacks_and_a_declared_lr_but_never_the_rules(tmp_path):
    recipe = tiny_recipe({"mlp": MLP})
    recipe["runs"]["mlp"]["trainer"] = {
        "callbacks": [
            {"class_path": "ConstantLR"},
            {"class_path": "EarlyStopping", "init_args": {"monitor": "val/loss", "patience": 3}},
            {"class_path": "GradientClip", "init_args": {"max_norm": 5.0}},
        ],
    }
    recipe["protocols"] = {"uniform": {"trainer": {"optimizer": {"lr": 7e-3, "weight_decay": 0.5}}}}
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(recipe))
    [(spec, model, trainer)] = built(str(path), "uniform", "--trainer.root_dir", str(tmp_path)).values()
    assert trainer.optimizer_config.lr == 7e-3 and trainer.optimizer_config.weight_decay == 0.1
    names = [type(c).__name__ for c in trainer.callbacks]
    assert "EarlyStopping" in names and "ConstantLR" not in names
    assert [c.max_norm for c in trainer.callbacks if isinstance(c, GradientClip)] == [1.0]
    # The schedule is the last callback the recipe gives, so a sweep can vary its warmup.
    [(spec, model, trainer)] = built(
        str(path), "uniform", "--trainer.root_dir", str(tmp_path), "--trainer.callbacks.init_args.warmup_steps", "0.1"
    ).values()
    assert [c.warmup for c in trainer.callbacks if isinstance(c, CosineWarmupLR)] == [0.1]


def test_uniform_is_a_known_protocol_and_its_rules_cannot_be_mixed():
    assert "uniform" in KNOWN_PROTOCOLS and "clipping at 1.0" in KNOWN_PROTOCOLS["uniform"]
    assert load_recipe(CPU).protocol("uniform") == "uniform"
    with pytest.raises(SeqlabError, match="not known"):
        load_recipe(CPU).protocol("uniformm")
    with pytest.raises(SeqlabError, match="decay_all and decay_matrices"):
        AdamW(decay_all=True, decay_matrices=True)


def test_a_sweep_takes_the_uniform_warmup_as_a_grid_key(tmp_path):
    """Issue 26's second knob: `--grid trainer.callbacks.init_args.warmup_steps=...` under uniform
    reaches each point's schedule, and a value the schedule refuses is refused before any point
    trains (the check parses the run as its child does, before the default callbacks)."""
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_recipe({"mlp": MLP})))
    base = [*SEQLAB, "sweep", "--recipe", str(path), "--protocol", "uniform", "--trainer.root_dir", str(tmp_path)]
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    bad = subprocess.run(
        [*base, "--grid", "trainer.callbacks.init_args.warmup_steps=0,abc"], capture_output=True, text=True, env=env
    )
    assert bad.returncode == 2 and "warmup_steps=abc" in bad.stderr and "Traceback" not in bad.stderr, bad.stderr
    assert not (tmp_path / "tiny").exists()
    done = subprocess.run(
        [*base, "--grid", "trainer.callbacks.init_args.warmup_steps=0,0.5"], capture_output=True, text=True, env=env
    )
    assert done.returncode == 0, done.stderr
    for value in (0, 0.5):
        config = yaml.safe_load((tmp_path / f"tiny/sweep/mlp-warmup_steps={value}-seed42/config.yaml").read_text())
        [schedule] = [c for c in config["trainer"]["callbacks"] if c["class_path"].endswith("CosineWarmupLR")]
        assert schedule["init_args"]["warmup_steps"] == value
    # The first step's rate: the peak without warmup, 0 at the start of a warmup.
    first = {}
    for value in (0, 0.5):
        rows = list(csv.DictReader(open(tmp_path / f"tiny/sweep/mlp-warmup_steps={value}-seed42/metrics.csv")))
        first[value] = float(rows[0]["lr"])
    assert first == {0: pytest.approx(3e-3), 0.5: 0.0}
