"""Crafted or mismatched checkpoints (issue 23, item 8): each is refused at load with one sentence.

Every file here is a real checkpoint of the tiny recipe, read back and changed, then written by
seqlab's own writer (safetensors + the JSON metadata, see :mod:`seqlab.checkpoint.format`). Through
``seqlab fit --ckpt_path FILE`` each must end with exit 2 and one ``error:`` line naming the file
and the problem, and leave every file as it was; none may reach Paddle (an assertion inside its
optimizer at the first step, or a silent cast of the weights).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml
from tiny import SEQLAB, tiny_recipe

from seqlab.checkpoint import atomic_save, load_checkpoint
from seqlab.errors import SeqlabError


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished 6-step run of the tiny recipe: (recipe, root_dir)."""
    base = tmp_path_factory.mktemp("crafted")
    recipe = base / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe()))
    result = subprocess.run(
        [*SEQLAB, "fit", "--recipe", recipe, "--trainer.root_dir", base / "runs", "--no_report"],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONWARNINGS="ignore"),
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return recipe, base / "runs"


@pytest.fixture
def workspace(trained, tmp_path):
    recipe, root = trained
    shutil.copy(recipe, tmp_path / "tiny.yaml")
    shutil.copytree(root, tmp_path / "runs")
    return tmp_path / "tiny.yaml", tmp_path / "runs", tmp_path / "runs/tiny/mlp/checkpoints/last.safetensors"


def snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir")
        for p in sorted(folder.rglob("*"))
    }


def moments(ckpt, param="hidden.weight"):
    return ckpt["optimizer"]["accumulators"][param]


def cast(array, dtype):
    return array.astype(dtype)


# Each: what to change in a real checkpoint, and words the one error line must hold.
CASES = {
    "float64 weight": (
        lambda c: c["model"].update({"hidden.weight": cast(c["model"]["hidden.weight"], np.float64)}),
        ["'hidden.weight' is float64 in the file and float32 in the model"],
    ),
    "int weight": (
        lambda c: c["model"].update({"head.bias": cast(c["model"]["head.bias"], np.int32)}),
        ["'head.bias' is int32 in the file"],
    ),
    "float64 moment": (
        lambda c: moments(c).update({"_moment1_0": cast(moments(c)["_moment1_0"], np.float64)}),
        ["optimizer state 'hidden.weight_moment1_0' is float64"],
    ),
    "int beta power": (
        lambda c: moments(c).update({"_beta1_pow_acc_0": cast(moments(c)["_beta1_pow_acc_0"], np.int64)}),
        ["optimizer state 'hidden.weight_beta1_pow_acc_0' is int64"],
    ),
    "missing moment": (lambda c: moments(c).pop("_moment2_0"), ["'hidden.weight'", "missing ['moment2']"]),
    "extra moment": (
        lambda c: moments(c).update({"_moment3_0": np.zeros_like(moments(c)["_moment1_0"])}),
        ["'hidden.weight'", "unexpected ['moment3']"],
    ),
    "skipped_steps": (lambda c: c["trainer"].update(skipped_steps="2"), ["trainer.skipped_steps = '2'"]),
    "negative skipped_steps": (lambda c: c["trainer"].update(skipped_steps=-1), ["trainer.skipped_steps = -1"]),
    "last_val_metrics": (
        lambda c: c["trainer"].update(last_val_metrics={"val/loss": "low"}),
        ["trainer.last_val_metrics"],
    ),
    "last_val_metrics not a dict": (lambda c: c["trainer"].update(last_val_metrics=[1]), ["trainer.last_val_metrics"]),
    "should_stop": (lambda c: c["trainer"].update(should_stop="yes"), ["trainer.should_stop = 'yes'"]),
    "precision not a dict": (lambda c: c.update(precision=[1.0]), ["'precision' entry that is not a dict"]),
    "precision state": (
        lambda c: c.update(precision={"scale": "big"}),
        ["precision state that has the keys ['scale']"],
    ),
    "callback state not a dict": (
        lambda c: c["callbacks"].update(MovingAverageCheckpoint=[1, 2]),
        ["state for callback 'MovingAverageCheckpoint' that is not a dict"],
    ),
    "callback state malformed": (
        lambda c: c["callbacks"]["MovingAverageCheckpoint"].update(values=["a", "b"]),
        ["MovingAverageCheckpoint: its saved state is malformed"],
    ),
    "config.model not a mapping": (lambda c: c["config"].update(model="mlp"), ["config.model = 'mlp', not a mapping"]),
    "config.task.init_args not a mapping": (
        lambda c: c["config"]["task"].update(init_args=[8]),
        ["config.task.init_args that is not a mapping"],
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_crafted_checkpoint_is_refused_by_fit_in_one_sentence(workspace, run_seqlab, case):
    change, needles = CASES[case]
    recipe, root, last = workspace
    crafted = root.parent / "crafted.safetensors"
    ckpt = load_checkpoint(last)
    change(ckpt)
    atomic_save(ckpt, crafted)
    before = snapshot(root.parent)
    code, _, err = run_seqlab(
        "fit", "--recipe", recipe, "--trainer.root_dir", root, "--trainer.max_steps", 9, "--ckpt_path", crafted
    )
    errors = [line for line in err if line.startswith("error:")]
    assert code == 2, err
    assert len(errors) == 1 and not any("Traceback" in line for line in err), err
    assert str(crafted) in errors[0]
    for needle in needles:
        assert needle in errors[0], errors[0]
    assert snapshot(root.parent) == before


@pytest.mark.parametrize(
    "case",
    [c for c in CASES if c.startswith(("skipped", "negative", "last_val", "should_stop", "precision", "config"))]
    + ["callback state not a dict"],
)
def test_malformed_sections_are_refused_by_the_loader(workspace, case):
    change, needles = CASES[case]
    _, root, last = workspace
    crafted = root.parent / "crafted.safetensors"
    ckpt = load_checkpoint(last)
    change(ckpt)
    atomic_save(ckpt, crafted)
    with pytest.raises(SeqlabError) as info:
        load_checkpoint(crafted)
    assert all(needle in str(info.value) for needle in needles), str(info.value)


def test_the_unchanged_checkpoint_still_resumes(workspace, run_seqlab):
    """The control: the same round trip without a change resumes (from the copy: it names the same
    run as the folder's own checkpoints) and trains the 3 steps left."""
    recipe, root, last = workspace
    copy = root.parent / "copy.safetensors"
    atomic_save(load_checkpoint(last), copy)
    code, _, err = run_seqlab(
        "fit", "--recipe", recipe, "--trainer.root_dir", root, "--trainer.max_steps", 9, "--ckpt_path", copy
    )
    assert code == 0, err
    assert load_checkpoint(last)["step"] == 9
