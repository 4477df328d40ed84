"""Issue 26's second knob: scripts/reverse_digits_warmup.sh on the tiny recipe. The warmup is swept
at a chosen rate as a `--grid` key, the default warmup's points are copied from the lr sweep
(one of them trained again and compared), and the winner gets held-out seeds."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from tiny import MLP, SEQLAB, tiny_recipe

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # 14 tiny runs: `make test-slow` (CI runs it)
def test_the_warmup_sweep_copies_the_default_points_and_checks_one(tmp_path):
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe({"mlp": MLP})))
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    lrs = subprocess.run(
        [*SEQLAB, "sweep", "--recipe", str(recipe), "--protocol", "uniform", "--seeds", "2", "--test_seeds", "2"]
        + [
            "--grid",
            "trainer.optimizer.lr=1e-3,3e-3",
            "--trainer.root_dir",
            str(tmp_path),
            "--trainer.experiment",
            "lrs",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert lrs.returncode == 0, lrs.stderr[-3000:]
    env.update(
        SEQLAB=f"{sys.executable} -m seqlab.cli",
        PYTHON=sys.executable,
        RECIPE=str(recipe),
        ROOT_DIR=str(tmp_path),
        FROM=str(tmp_path / "lrs" / "sweep"),
        EXPERIMENT="warmup",
        LRS="mlp=3e-3",
        WARMUPS="0 0.05 0.5",
        SEEDS="2",
        TEST_SEEDS="2",
        CHECK="mlp",
    )
    result = subprocess.run(
        ["bash", str(ROOT / "scripts/reverse_digits_warmup.sh")], capture_output=True, text=True, env=env, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    # The lr sweep's mlp 3e-3 points at seeds 43 (selection) and 44-45 (its held-out seeds) are
    # copied; seed 42's is trained again and equals the lr sweep's.
    assert result.stdout.count("copied from") == 3
    assert "mlp-lr=3e-3-warmup_steps=0.05-seed42/metrics.json equals" in result.stdout
    sweep = tmp_path / "warmup" / "sweep"
    manifest = json.loads((sweep / "sweep.json").read_text())
    grid = {(p["settings"]["trainer.callbacks.init_args.warmup_steps"], p["seed"]) for p in manifest["points"].values()}
    assert {(w, s) for w in ("0", "0.05", "0.5") for s in (42, 43)} <= grid
    for name in manifest["points"]:
        assert (sweep / name / "metrics.json").is_file(), name
    [winner] = json.loads((sweep / "results.json").read_text())["models"]
    assert winner["test_seeds"] == [44, 45] and winner["test_seeds_held_out"]
    config = yaml.safe_load((sweep / "mlp-lr=3e-3-warmup_steps=0.5-seed42" / "config.yaml").read_text())
    [schedule] = [c for c in config["trainer"]["callbacks"] if c["class_path"].endswith("CosineWarmupLR")]
    assert schedule["init_args"]["warmup_steps"] == 0.5
