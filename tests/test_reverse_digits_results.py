"""scripts/reverse_digits_results.py on a sweep folder written here: it selects on the mean over
the selection seeds (not on one seed), reports test figures from the held-out seeds alone, counts
the points tuned before the sweep, flags a winner at its grid's edge, and writes its tables."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts/reverse_digits_results.py"
LR = "trainer.optimizer.lr"


def _script():
    spec = importlib.util.spec_from_file_location("reverse_digits_results", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _point(sweep: Path, manifest: dict, run: str, lr: str, seed: int, val: float, test: float, held=False):
    name = f"{run}-lr={lr}-seed{seed}"
    manifest["points"][name] = {"run": run, "settings": {LR: lr}, "seed": seed}
    if held:
        manifest["held_out"].append(name)
    (sweep / name).mkdir(parents=True)
    metrics = {
        "val": {"masked_acc": val},
        "masked_acc": test,
        "exact_acc": test / 2,
        "probe_masked_acc": None,
        "probe_exact_acc": None,
        "params": 100 if run == "a" else 200,
        "state_size": 8,
        "steps": 10,
        "wall_time_s": 1.0 + seed % 3,
        "tokens_per_s": 1000.0,
    }
    (sweep / name / "metrics.json").write_text(json.dumps(metrics))


@pytest.fixture
def sweep(tmp_path):
    """Model a: 1e-3 wins on seed 42 alone, 2e-3 on the mean of 42-44. Model b: its top rate wins.
    Selection points carry test figures of 0.0 so that any leak into the test columns shows."""
    sweep = tmp_path / "sweep"
    manifest = {"grids": {}, "points": {}, "held_out": [], "prior_points": {"a": 7}}
    vals = {"a": {"1e-3": (0.9, 0.1, 0.1), "2e-3": (0.8, 0.7, 0.7), "4e-3": (0.2, 0.2, 0.2)}}
    vals["b"] = {"1e-3": (0.1, 0.1, 0.1), "2e-3": (0.2, 0.2, 0.2), "4e-3": (0.3, 0.3, 0.3)}
    for run, by_lr in vals.items():
        for lr, per_seed in by_lr.items():
            for seed, val in zip((42, 43, 44), per_seed):
                _point(sweep, manifest, run, lr, seed, val, test=0.0)
    for seed, (ta, tb) in zip((45, 46, 47), ((0.60, 0.30), (0.62, 0.31), (0.64, 0.35))):
        _point(sweep, manifest, "a", "2e-3", seed, val=0.5, test=ta, held=True)
        _point(sweep, manifest, "b", "4e-3", seed, val=0.5, test=tb, held=True)
    (sweep / "sweep.json").write_text(json.dumps(manifest))
    return sweep


def test_selection_is_on_the_mean_and_the_test_on_held_out_seeds(sweep):
    script = _script()
    points = script.collect(sweep)
    chosen = {c["model"]: c for c in script.select(points, script.prior_points(sweep))}
    a, b = chosen["a"], chosen["b"]
    assert a["lr"] == "2e-3" and a["selection_seeds"] == [42, 43, 44]  # 1e-3 won on seed 42 alone
    assert a["val_mean_by_setting"]["1e-3"] == pytest.approx((0.9 + 0.1 + 0.1) / 3)
    assert a["held_out_seeds"] == [45, 46, 47]
    assert a["test"]["masked_acc"]["values"] == [0.60, 0.62, 0.64]  # not the selection points' 0.0
    assert a["test"]["masked_acc"]["mean"] == pytest.approx(0.62)
    assert a["test"]["masked_acc"]["std"] == pytest.approx(0.02)  # the sample std (n-1)
    assert a["test"]["masked_acc"]["lo"] < 0.62 < a["test"]["masked_acc"]["hi"]
    assert (a["tuning_points_here"], a["tuning_points_before"], a["tuning_points"]) == (9, 7, 16)
    assert a["at_grid_edge"] == [] and b["at_grid_edge"] == [LR]
    assert [c["model"] for c in script.select(points)] == ["a", "b"]  # the best held-out mean first
    (pair,) = script.pairs(script.select(points))
    assert (pair["a"], pair["b"], pair["overlap"]) == ("a", "b", False) and pair["welch_p"] < 0.01


def test_the_script_writes_results_and_tables(sweep, tmp_path):
    out = tmp_path / "docs"
    cmd = [sys.executable, str(SCRIPT), "--sweep", str(sweep), "--out", str(out), "--mark", "m", "--no_top_readme"]
    result = subprocess.run([*cmd, "--wall_s", "12"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    results = json.loads((out / "results.json").read_text())
    assert results["prior_points"] == {"a": 7} and results["stage"]["wall_time_s"] == 12
    # raw/ is the sweep folder again: its manifest and every point's metrics.json, nothing else.
    raw = out / "raw"
    assert (raw / "sweep.json").read_bytes() == (sweep / "sweep.json").read_bytes()
    assert sorted(p.parent.name for p in raw.glob("*/metrics.json")) == sorted(p["point"] for p in results["points"])
    assert len(results["points"]) == 24 and len(list(raw.iterdir())) == 25
    script = _script()
    assert script.select(results["points"], results["prior_points"]) == results["selected"]
    readme = (out / "README.md").read_text()
    table = script.table(results["selected"])
    assert f"<!-- m -->\n{table}\n<!-- m -->" in readme
    assert "| 16 (9 + 7) |" in table and "4e-3 (of 3) (grid edge)" in table
    # Each point says where it trained (metrics.json's machine; None for points from before it).
    assert results["stage"]["machines"] == {"not recorded": 24}
    assert "a vs b: the 95% intervals do not overlap" in table
    assert "**2e-3: 73.33%**" in readme  # the lr table bolds the chosen setting's mean
    # A README whose markers were removed is refused, not overwritten.
    (out / "README.md").write_text("no markers\n")
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert again.returncode != 0 and "markers" in again.stderr
    assert (out / "README.md").read_text() == "no markers\n"


def test_a_sweep_without_its_held_out_seeds_is_refused(sweep, tmp_path):
    manifest = json.loads((sweep / "sweep.json").read_text())
    for name in manifest["held_out"]:
        if name.startswith("b-"):
            (sweep / name / "metrics.json").unlink()
    cmd = [sys.executable, str(SCRIPT), "--sweep", str(sweep), "--out", str(tmp_path / "o"), "--mark", "m"]
    result = subprocess.run([*cmd, "--no_top_readme"], capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "b: fewer than 2 held-out seeds finished" in result.stderr
    assert not (tmp_path / "o").exists()
