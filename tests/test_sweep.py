"""seqlab sweep: a tiny grid x seeds x models through the CLI, its report, and a resumed sweep."""

import json
import os
import signal
import subprocess

import pytest
import yaml
from tiny import LSTM, MLP, SEQLAB, TRAINER, tiny_recipe

from seqlab.errors import SeqlabError
from seqlab.sweep import Point, at_grid_edge, best_settings, parse_grid, plan

RECIPE = tiny_recipe({"mlp": MLP, "lstm": LSTM}, trainer={**TRAINER, "log_every": 1})
GRID = ["--grid", "trainer.optimizer.lr=1e-3,3e-3", "--seeds", "2"]


def env():
    return dict(os.environ, PYTHONWARNINGS="ignore", PYTHONUNBUFFERED="1")


def sweep(recipe, root, *extra):
    return subprocess.run(
        [*SEQLAB, "sweep", "--recipe", str(recipe), *GRID, "--trainer.root_dir", str(root), *extra],
        capture_output=True,
        text=True,
        timeout=600,
        env=env(),
    )


@pytest.fixture
def recipe(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(RECIPE))
    return path


def test_plan_and_grid_parsing():
    grids = parse_grid(["trainer.optimizer.lr=1e-3, 2e-3", "model.init_args.n_layer=1,2"], ["rwkv7"])
    assert grids == {"rwkv7": {"trainer.optimizer.lr": ["1e-3", "2e-3"], "model.init_args.n_layer": ["1", "2"]}}
    points = plan({"rwkv7": 42}, grids, seeds=3)
    assert len(points) == 12 and len({p.name for p in points}) == 12
    assert points[0] == Point("rwkv7", (("trainer.optimizer.lr", "1e-3"), ("model.init_args.n_layer", "1")), 42)
    assert points[0].name == "rwkv7-lr=1e-3-n_layer=1-seed42"
    assert points[0].overrides() == [
        "--trainer.optimizer.lr",
        "1e-3",
        "--model.init_args.n_layer",
        "1",
        "--trainer.seed",
        "42",
    ]
    assert {p.seed for p in points} == {42, 43, 44}
    # A run may get its own values (as many as the others: an equal budget).
    own = parse_grid(["rwkv7:trainer.optimizer.lr=4e-3,8e-3", "mlp:trainer.optimizer.lr=1e-3,2e-3"], ["rwkv7", "mlp"])
    assert {p.name for p in plan({"rwkv7": 1, "mlp": 1}, own, 1)} == {
        "rwkv7-lr=4e-3-seed1",
        "rwkv7-lr=8e-3-seed1",
        "mlp-lr=1e-3-seed1",
        "mlp-lr=2e-3-seed1",
    }
    with pytest.raises(SeqlabError, match="no selected run 'rwkv8'. Did you mean 'rwkv7'"):
        parse_grid(["rwkv8:trainer.optimizer.lr=1"], ["rwkv7"])


@pytest.mark.slow  # several processes or a whole recipe: `make test-slow` (CI runs it)
def test_tiny_sweep_trains_every_point_and_reports_the_best_on_validation(recipe, tmp_path):
    root = tmp_path / "runs"
    result = sweep(recipe, root, "--parallel", "2", "--metric", "loss:min")
    assert result.returncode == 0, result.stderr[-3000:]
    folder = root / "tiny" / "sweep"
    finished = sorted(p.parent.name for p in folder.glob("*/metrics.json"))
    assert len(finished) == 8  # 2 models x 2 rates x 2 seeds
    results = json.loads((folder / "results.json").read_text())
    assert len(results["settings"]) == 4 and all(len(s["seeds"]) == 2 for s in results["settings"])
    for run in ("mlp", "lstm"):  # the winner is the lowest mean *validation* loss
        mine = [s for s in results["settings"] if s["run"] == run]
        means = [sum(s["val"]["loss"]) / 2 for s in mine]
        assert [s["best"] for s in mine] == [m == min(means) for m in means]
    report = (folder / "report.md").read_text()
    assert "## Best setting per model" in report and " ± " in report and (folder / "sweep.png").is_file()
    assert "At the edge of the grid" in report  # two values: every winner is at an edge
    # Every point is a VisualDL run with its hyperparameters and final metrics.
    from visualdl import LogReader

    for name in finished:
        record = next((folder / name / "vdl").glob("vdlrecords.*"))
        hparams = LogReader(file_path=str(record)).get_data("hyper_parameters", "hparam")[0].hparam
        assert {h.name for h in hparams.hparamInfos} >= {"lr", "seed"}
        assert "trial/masked_acc" in {m.name for m in hparams.metricInfos}


@pytest.mark.slow  # several processes or a whole recipe: `make test-slow` (CI runs it)
def test_a_killed_sweep_resumes_where_it_stopped(recipe, tmp_path):
    root = tmp_path / "runs"
    first = root / "tiny/sweep/mlp-lr=1e-3-seed42/metrics.json"
    job = subprocess.Popen(
        [
            *SEQLAB,
            "sweep",
            "--recipe",
            str(recipe),
            *GRID,
            "--runs",
            "mlp",
            "--trainer.root_dir",
            str(root),
            "--trainer.max_steps",
            "40",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env(),
    )
    for line in job.stdout:  # the first point finished, the second has trained a few steps
        if line.startswith("[mlp-lr=1e-3-seed43] step 5/"):
            break
    assert first.exists()
    job.send_signal(signal.SIGTERM)
    _, stderr = job.communicate(timeout=120)
    assert job.returncode == 143, stderr
    assert "resume with: seqlab sweep" in stderr
    done_before = first.read_text()
    again = sweep(recipe, root, "--runs", "mlp", "--trainer.max_steps", "40")
    assert again.returncode == 0, again.stderr[-3000:]
    assert first.read_text() == done_before  # finished points are not trained again
    assert "mlp-lr=1e-3-seed42]" not in again.stdout
    assert "resumed mlp-" in again.stdout  # the interrupted point continued from its checkpoint
    assert len(list((root / "tiny/sweep").glob("*/metrics.json"))) == 4


def test_a_bad_grid_key_is_one_sentence_and_trains_nothing(recipe, tmp_path):
    result = sweep(recipe, tmp_path / "runs", "--grid", "trainer.optimizer.lrr=1,2")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "trainer.optimizer.lrr" in lines[0], result.stderr
    assert not (tmp_path / "runs").exists()


def test_edge_detection():
    from seqlab.sweep import Setting

    grid = {"trainer.optimizer.lr": ["1e-3", "2e-3", "4e-3"]}
    assert at_grid_edge(Setting("m", {"trainer.optimizer.lr": "2e-3"}), grid) == []
    assert at_grid_edge(Setting("m", {"trainer.optimizer.lr": "4e-3"}), grid) == ["trainer.optimizer.lr"]
    assert best_settings([], "loss", "min") == {}


def test_selection_compares_settings_on_the_seeds_they_all_ran():
    """A screening stage (one seed per setting) then three seeds at its winner: the winner's extra
    seeds must not decide the selection, in either direction."""
    from types import SimpleNamespace

    from seqlab.sweep import Setting, selection_seeds

    def setting(lr, accs):
        points = [(seed, SimpleNamespace(val={"acc": a}, test={"acc": a})) for seed, a in accs.items()]
        return Setting("m", {"trainer.optimizer.lr": lr}, points)

    screened_winner = setting("4e-3", {42: 0.36, 43: 0.30, 44: 0.30})  # mean 0.32 over its three seeds
    one_seed = setting("3.2e-2", {42: 0.35})
    assert selection_seeds([screened_winner, one_seed], "m", "acc") == {42}
    assert best_settings([screened_winner, one_seed], "acc", "max")["m"] is screened_winner
    assert best_settings([screened_winner, one_seed], "acc", "min")["m"] is one_seed
    # Settings that share no seed are compared on all their seeds.
    other = setting("1e-3", {7: 0.33})
    assert selection_seeds([screened_winner, other], "m", "acc") is None
    assert best_settings([screened_winner, other], "acc", "max")["m"] is other


def test_a_metric_named_without_a_direction_takes_its_own():
    from seqlab.metrics import higher_is_better

    for name in ("loss", "perplexity", "bits_per_byte", "probe_loss"):
        assert not higher_is_better(name), name
    for name in ("masked_acc", "exact_acc", "val100_masked_acc", "my_metric"):
        assert higher_is_better(name), name


@pytest.mark.slow  # several processes or a whole recipe: `make test-slow` (CI runs it)
def test_test_seeds_train_the_winner_at_new_seeds_reported_apart(recipe, tmp_path):
    root = tmp_path / "runs"
    args = ["--runs", "mlp", "--grid", "trainer.optimizer.lr=1e-3,3e-3", "--seeds", "2", "--test_seeds", "1"]
    result = subprocess.run(
        [*SEQLAB, "sweep", "--recipe", str(recipe), *args, "--prior_points", "mlp=5", "--trainer.root_dir", str(root)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env(),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    folder = root / "tiny" / "sweep"
    manifest = json.loads((folder / "sweep.json").read_text())
    results = json.loads((folder / "results.json").read_text())
    [model] = results["models"]
    winner = model["settings"]["trainer.optimizer.lr"]
    assert manifest["held_out"] == [f"mlp-lr={winner}-seed44"]  # base 42 + 2 selection seeds
    assert (folder / f"mlp-lr={winner}-seed44" / "metrics.json").is_file()
    assert not list(folder.glob("mlp-lr=*-seed45"))
    assert model["selection_seeds"] == [42, 43] and model["test_seeds"] == [44]
    assert model["tuning_budget"] == {"points_in_this_sweep": 4, "prior_points": 5, "total": 9}
    held = json.loads((folder / f"mlp-lr={winner}-seed44" / "metrics.json").read_text())
    assert model["test"]["masked_acc"]["values"] == [held["masked_acc"]]
    assert "44 (held out)" in (folder / "report.md").read_text()
