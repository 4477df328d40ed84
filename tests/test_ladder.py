"""The budget ladder: scripts/reverse_digits_ladder.sh on the tiny recipe (one sweep per rung), and
scripts/ladder_report.py's table, plot and ladder.json from the rungs' files."""

import json
import math
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from tiny import LSTM, MLP, tiny_recipe

from seqlab.summary import RunSummary

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import ladder_report  # noqa: E402


def _point(sweep, name, run, seed, steps, acc, wall):
    (sweep / name).mkdir(parents=True)
    summary = RunSummary(
        run=name,
        experiment="l",
        model=run,
        params=1,
        steps=steps,
        tested_checkpoint="best",
        tested_step=steps,
        wall_time_s=wall,
        test={"masked_acc": acc, "exact_acc": acc / 2, "probe_masked_acc": float("nan")},
    )
    (sweep / name / RunSummary.FILENAME).write_text(summary.to_json())
    (sweep / name / "config.yaml").write_text(
        yaml.safe_dump({"task": {"init_args": {"batch_size": 32, "seq_len": 129}}})
    )
    return {"run": run, "settings": {}, "seed": seed}


def test_ladder_report_from_files(tmp_path):
    values = {"1": [0.30, 0.40, 0.35], "4": [0.80, 0.90, 0.85]}
    for k, accs in values.items():
        sweep = tmp_path / f"x{k}" / "sweep"
        points = {
            f"transformer-seed{42 + i}": _point(
                sweep, f"transformer-seed{42 + i}", "transformer", 42 + i, 1300 * int(k), a, 100.0 * int(k) + i
            )
            for i, a in enumerate(accs)
        }
        (sweep / "sweep.json").write_text(json.dumps({"grids": {}, "points": points}))
    (tmp_path / "x16").mkdir()  # a rung not started yet: left out, no error
    ladder_report.main([str(tmp_path)])
    rows = json.loads((tmp_path / "ladder.json").read_text())["rows"]
    assert [(r["run"], r["rung"]) for r in rows] == [("transformer", 1.0), ("transformer", 4.0)]
    one, four = rows
    assert one["tokens"] == 1300 * 32 * 128 and four["tokens"] == 4 * 1300 * 32 * 128  # 5.3M, 21.3M
    assert one["masked_acc"]["mean"] == pytest.approx(0.35)
    assert one["masked_acc"]["sample_std"] == pytest.approx(statistics.stdev([0.30, 0.40, 0.35]))
    half = 4.302652729749752 * 0.05 / math.sqrt(3)  # t(0.975, 2) x s / sqrt(n), s = 0.05
    assert one["masked_acc"]["ci"] == [pytest.approx(0.35 - half), pytest.approx(0.35 + half)]
    assert four["mean_wall_time_s"] == pytest.approx(401.0)
    table = (tmp_path / "ladder.md").read_text()
    assert "| transformer | 4x | 21.3M | 42, 43, 44 | 85.00 | 5.00 |" in table
    assert table.rstrip().splitlines()[-3].endswith("| not recorded |")  # the points name no machine
    # exact match's mean beside the interval; the probe is NaN on every seed (no probe): a dash
    assert (
        four["also"]["exact_acc"]["mean"] == pytest.approx(0.425) and four["also"]["probe_masked_acc"]["values"] == []
    )
    assert "| 42.50 | — | 401 | not recorded |" in table
    assert (tmp_path / "ladder.png").stat().st_size > 10_000


@pytest.mark.slow  # several processes: `make test-slow` (CI runs it)
def test_the_ladder_script_runs_one_sweep_per_rung(tmp_path):
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe({"mlp": MLP, "lstm": LSTM})))
    env = dict(
        os.environ,
        PYTHONWARNINGS="ignore",
        SEQLAB=f"{sys.executable} -m seqlab.cli",
        RECIPE=str(recipe),
        LRS="mlp=3e-3 lstm=2e-3",
        RUNGS="1 2",
        LSTM_RUNGS="1",
        SEEDS="2",
        BASE_STEPS="6",
        EXPERIMENT="tiny_ladder",
        ROOT_DIR=str(tmp_path / "runs"),
        PYTHON=sys.executable,
    )
    result = subprocess.run(
        ["bash", str(ROOT / "scripts/reverse_digits_ladder.sh")], capture_output=True, text=True, env=env, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ladder rung x2 (mlp): " in result.stdout
    ladder = tmp_path / "runs" / "tiny_ladder"
    done = sorted(p.parent.relative_to(ladder).as_posix() for p in ladder.glob("x*/sweep/*/metrics.json"))
    assert done == [
        "x1/sweep/lstm-lr=2e-3-seed42",
        "x1/sweep/lstm-lr=2e-3-seed43",
        "x1/sweep/mlp-lr=3e-3-seed42",
        "x1/sweep/mlp-lr=3e-3-seed43",
        "x2/sweep/mlp-lr=3e-3-seed42",
        "x2/sweep/mlp-lr=3e-3-seed43",
    ]
    metrics = json.loads((ladder / "x2/sweep/mlp-lr=3e-3-seed43/metrics.json").read_text())
    assert metrics["steps"] == 12 and metrics["protocol"] == "uniform"  # 2 x BASE_STEPS, the default protocol
    ladder_report.main([str(ladder)])
    rows = json.loads((ladder / "ladder.json").read_text())["rows"]
    assert {(r["run"], r["rung"], r["tokens"]) for r in rows} == {
        ("lstm", 1.0, 6 * 8 * 32),
        ("mlp", 1.0, 6 * 8 * 32),
        ("mlp", 2.0, 12 * 8 * 32),
    }
    # A 1x rung that a sweep already holds is copied, not trained: the same settings and seeds.
    env.update(EXPERIMENT="tiny_ladder_again", RUNGS="1", REUSE_X1=str(ladder / "x1" / "sweep"))
    again = subprocess.run(
        ["bash", str(ROOT / "scripts/reverse_digits_ladder.sh")], capture_output=True, text=True, env=env, timeout=600
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("copied from") == 4 and "4 finished before, 0 to train" in again.stderr, again.stderr
    copied = tmp_path / "runs" / "tiny_ladder_again" / "x1" / "sweep" / "mlp-lr=3e-3-seed43" / "metrics.json"
    assert copied.read_bytes() == (ladder / "x1/sweep/mlp-lr=3e-3-seed43/metrics.json").read_bytes()
    # A point of another length (the 2x rung's, 12 steps) is not the 1x rung's: trained, not copied.
    env.update(EXPERIMENT="tiny_ladder_other", LRS="mlp=3e-3", SEEDS="1", REUSE_X1=str(ladder / "x2" / "sweep"))
    other = subprocess.run(
        ["bash", str(ROOT / "scripts/reverse_digits_ladder.sh")], capture_output=True, text=True, env=env, timeout=600
    )
    assert other.returncode == 0, other.stderr[-3000:]
    assert "copied from" not in other.stdout and "is not a uniform run of 6 steps; not copied" in other.stderr
    trained = json.loads((tmp_path / "runs/tiny_ladder_other/x1/sweep/mlp-lr=3e-3-seed42/metrics.json").read_text())
    assert trained["steps"] == 6
    # BASE_SEED moves every rung to other seeds (issue 26's ladder: the held-out seeds 45-47); the
    # sweep trains at those seeds, so a reused point of that seed is the rung's point.
    env.update(EXPERIMENT="tiny_ladder_seed", LRS="mlp=3e-3", SEEDS="1", BASE_SEED="43")
    env.update(REUSE_X1=str(ladder / "x1" / "sweep"))
    seeded = subprocess.run(
        ["bash", str(ROOT / "scripts/reverse_digits_ladder.sh")], capture_output=True, text=True, env=env, timeout=600
    )
    assert seeded.returncode == 0, seeded.stderr[-3000:]
    assert seeded.stdout.count("copied from") == 1 and "1 finished before, 0 to train" in seeded.stderr
    assert (tmp_path / "runs/tiny_ladder_seed/x1/sweep/mlp-lr=3e-3-seed43/metrics.json").is_file()


def test_ladder_report_out_copies_the_raw_files_and_builds_from_them(tmp_path):
    """--out: the rungs' manifests and finished points go to OUT/raw, and the report is built from
    that copy (what a commit holds), equal to the one built from the runs themselves."""
    runs = tmp_path / "runs"
    for k in ("1", "4"):
        sweep = runs / f"x{k}" / "sweep"
        points = {
            f"mlp-seed{42 + i}": _point(
                sweep, f"mlp-seed{42 + i}", "mlp", 42 + i, 6 * int(k), 0.3 + i / 10, 5.0 * int(k)
            )
            for i in range(2)
        }
        points["mlp-seed44"] = {"run": "mlp", "settings": {}, "seed": 44}  # planned, not finished
        (sweep / "sweep.json").write_text(json.dumps({"grids": {}, "points": points}))
        (sweep / "mlp-seed42" / "checkpoints").mkdir()  # not copied: only metrics.json and config.yaml
    out = tmp_path / "docs"
    ladder_report.main([str(runs), "--out", str(out)])
    ladder_report.main([str(runs)])
    assert json.loads((out / "ladder.json").read_text()) == json.loads((runs / "ladder.json").read_text())
    copied = sorted(p.relative_to(out / "raw").as_posix() for p in (out / "raw").rglob("*") if p.is_file())
    assert copied == [
        f"x{k}/sweep/{f}"
        for k in ("1", "4")
        for f in (
            "mlp-seed42/config.yaml",
            "mlp-seed42/metrics.json",
            "mlp-seed43/config.yaml",
            "mlp-seed43/metrics.json",
            "sweep.json",
        )
    ]
    assert (out / "ladder.md").read_text().startswith(f"# Budget ladder: {runs}\n")
