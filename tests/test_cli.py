"""The `seqlab` command, run as a user runs it: a subprocess, exit codes, files left behind."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from tiny import LSTM, MLP, SEQLAB, tiny_recipe

ROOT = Path(__file__).resolve().parents[1]

SMALL_RECIPE = tiny_recipe(
    {
        "mlp": MLP,
        "lstm": {**LSTM, "trainer": {"callbacks": [{"class_path": "GradientClip", "init_args": {"max_norm": 1.0}}]}},
    }
)


def run(*args, cwd=None):
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.run([*SEQLAB, *map(str, args)], capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


@pytest.fixture
def recipe(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(SMALL_RECIPE))
    return path


def assert_user_error(result, *needles):
    assert result.returncode == 2, result.stderr
    lines = [ln for ln in result.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, result.stderr  # one line, no traceback
    assert lines[0].startswith("error: ")
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.mark.slow  # several processes or a whole recipe: `make test-slow` (CI runs it)
def test_fit_writes_config_checkpoint_metrics_and_report(recipe, tmp_path):
    root = tmp_path / "runs"
    result = run("fit", "--recipe", recipe, "--trainer.root_dir", root)
    assert result.returncode == 0, result.stderr
    for run_name in ("mlp", "lstm"):
        run_dir = root / "tiny" / run_name
        for name in ("config.yaml", "checkpoints/last.safetensors", "metrics.json", "metrics.csv"):
            assert (run_dir / name).is_file(), name
        config = yaml.safe_load((run_dir / "config.yaml").read_text())
        assert config["trainer"]["run_name"] == run_name and config["trainer"]["max_steps"] == 6
        used = [cb["class_path"].rsplit(".", 1)[-1] for cb in config["trainer"]["callbacks"]]
        assert {"ProgressBar", "CSVLogger", "VisualDLLogger", "MovingAverageCheckpoint"} <= set(used)
    lstm_callbacks = yaml.safe_load((root / "tiny/lstm/config.yaml").read_text())["trainer"]["callbacks"]
    assert lstm_callbacks[0]["class_path"].endswith("GradientClip")

    # The saved config is a recipe: it resumes the run it came from.
    again = run("fit", "--recipe", root / "tiny/mlp/config.yaml", "--trainer.max_steps", "9", "--ckpt_path", "last")
    assert again.returncode == 0, again.stderr
    assert "resumed mlp" in again.stderr and "at step 6" in again.stderr

    test = run("test", "--recipe", recipe, "--runs", "mlp", "--trainer.root_dir", root)
    assert test.returncode == 0, test.stderr
    # 6 steps never fill the 100-step moving-average window: no best checkpoint, so last is used.
    assert '"masked_acc"' in test.stdout and "last.safetensors" in test.stdout
    assert_user_error(
        run("test", "--recipe", recipe, "--runs", "mlp", "--trainer.root_dir", root, "--ckpt_path", "best"), "no '"
    )


def test_print_config_output_is_a_recipe(recipe, tmp_path):
    first = run("fit", "--recipe", recipe, "--trainer.max_steps", "11", "--print_config")
    assert first.returncode == 0, first.stderr
    printed = yaml.safe_load(first.stdout)
    assert set(printed["runs"]) == {"mlp", "lstm"}
    assert printed["runs"]["mlp"]["trainer"]["max_steps"] == 11
    assert printed["runs"]["lstm"]["model"]["init_args"]["hidden_sizes"] == [16, 16]
    again_path = tmp_path / "printed.yaml"
    again_path.write_text(first.stdout)
    second = run("fit", "--recipe", again_path, "--print_config")
    assert second.returncode == 0, second.stderr
    assert yaml.safe_load(second.stdout) == printed
    assert not (ROOT / "runs" / "tiny").exists()


def test_runs_selects(recipe):
    result = run("fit", "--recipe", recipe, "--runs", "lstm", "--print_config")
    assert list(yaml.safe_load(result.stdout)["runs"]) == ["lstm"]


@pytest.mark.parametrize(
    "args, needles",
    [
        (["--trainer.max_step", "5"], ["--trainer.max_step", "unknown option"]),
        (["--trainer.max_steps", "abc"], ["trainer.max_steps", "int", "abc"]),
        (["--model.init_args.widht", "3"], ["widht"]),
        (["--runs", "rwkv8"], ["no run 'rwkv8'"]),
    ],
)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(recipe, tmp_path, args, needles):
    root = tmp_path / "runs"
    assert_user_error(run("fit", "--recipe", recipe, "--trainer.root_dir", root, *args), *needles)
    assert not root.exists()


def test_unknown_model_suggests_the_closest(tmp_path):
    bad = dict(SMALL_RECIPE, runs={"x": {"model": "lstn"}})
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    assert_user_error(
        run("fit", "--recipe", path, "--trainer.root_dir", tmp_path / "runs"),
        "unknown model 'lstn'",
        "Did you mean 'lstm'?",
        "rwkv7",
    )
    assert not (tmp_path / "runs").exists()


def test_missing_and_broken_recipes(tmp_path):
    assert_user_error(run("fit", "--recipe", tmp_path / "nope.yaml"), "does not exist")
    broken = tmp_path / "broken.yaml"
    broken.write_text("task: [unclosed\n")
    assert_user_error(run("fit", "--recipe", broken), "not valid YAML")
    assert_user_error(run("fit"), "needs --recipe")
    assert_user_error(run("fti"), "Did you mean 'fit'?")


def test_corrupt_checkpoint_is_refused_and_kept(recipe, tmp_path):
    ckpt = tmp_path / "bad.safetensors"
    ckpt.write_bytes(b"\x00garbage")
    root = tmp_path / "runs"
    assert_user_error(
        run("fit", "--recipe", recipe, "--runs", "mlp", "--trainer.root_dir", root, "--ckpt_path", ckpt), "unreadable"
    )
    assert ckpt.read_bytes() == b"\x00garbage"
    assert not (root / "tiny/mlp/config.yaml").exists()
    # Evaluating a checkpoint that does not exist is an error...
    assert_user_error(
        run("test", "--recipe", recipe, "--runs", "mlp", "--trainer.root_dir", root, "--ckpt_path", "last"), "no '"
    )
    # ...while `fit --ckpt_path last` starts a run that has none (as Lightning does), so one
    # resume command works for every run of a recipe, started or not.
    fresh = run("fit", "--recipe", recipe, "--runs", "mlp", "--trainer.root_dir", root, "--ckpt_path", "last")
    assert fresh.returncode == 0, fresh.stderr
    assert fresh.stderr.count("starting this run from step 0") == 1, fresh.stderr
    assert (root / "tiny/mlp/metrics.json").is_file()


def test_models_and_tasks_listing():
    models = run("models")
    assert models.returncode == 0, models.stderr
    lines = {ln.split()[0]: ln for ln in models.stdout.splitlines() if ln.strip()}
    assert "877,452" in lines["lstm"]
    for name in ("rwkv7", "transformer", "transformer_modern", "lstm", "mlp"):
        assert name in lines, models.stdout
    tasks = run("tasks")
    assert tasks.returncode == 0 and "reverse_digits" in tasks.stdout


def test_help_comes_from_docstrings():
    result = run("fit", "--help")
    assert result.returncode == 0
    assert "--trainer.max_steps" in result.stdout and "Optimizer steps to train for" in result.stdout


@pytest.mark.parametrize("code", ["import seqlab", "from seqlab.cli import main; main(['models'])"])
def test_without_paddle_one_sentence_and_exit_2(code):
    # `sys.modules['paddle'] = None` makes `import paddle` fail as if no wheel were installed.
    hide = "import sys; sys.modules['paddle'] = None; "
    result = subprocess.run([sys.executable, "-c", hide + code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install 'seqlab[cpu]'" in lines[0] and "paddlepaddle-gpu" in lines[0]


@pytest.mark.slow  # several processes or a whole recipe: `make test-slow` (CI runs it)
def test_refits_never_mix_with_an_earlier_run(recipe, tmp_path):
    root = tmp_path / "runs"
    assert run("fit", "--recipe", recipe, "--runs", "mlp", "--trainer.root_dir", root).returncode == 0
    metrics = root / "tiny/mlp/metrics.json"
    before = metrics.read_text()
    # A fresh fit into the same folder would overwrite the run (and could test its old best).
    assert_user_error(
        run("fit", "--recipe", recipe, "--runs", "mlp", "--trainer.root_dir", root),
        "already holds checkpoints",
        "--trainer.overwrite true",
    )
    assert metrics.read_text() == before
    # Resuming with different task settings would continue another experiment.
    assert_user_error(
        run(
            "fit",
            "--recipe",
            recipe,
            "--runs",
            "mlp",
            "--trainer.root_dir",
            root,
            "--ckpt_path",
            "last",
            "--task.init_args.digit_max",
            "9",
        ),
        "task.init_args.digit_max=8",
        "9",
    )
    assert metrics.read_text() == before
    fresh = run(
        "fit",
        "--recipe",
        recipe,
        "--runs",
        "mlp",
        "--trainer.root_dir",
        root,
        "--trainer.overwrite",
        "true",
        "--trainer.max_steps",
        "4",
    )
    assert fresh.returncode == 0, fresh.stderr
    assert '"steps": 4' in metrics.read_text()


def test_model_that_cannot_read_the_rows_fails_before_writing(recipe, tmp_path):
    bad = dict(
        SMALL_RECIPE, runs={"transformer": {"model": {"class_path": "transformer", "init_args": {"max_len": 16}}}}
    )
    path = tmp_path / "short.yaml"
    path.write_text(yaml.safe_dump(bad))
    assert_user_error(
        run("fit", "--recipe", path, "--trainer.root_dir", tmp_path / "runs"), "cannot read the task's rows"
    )
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    "mutate, needle",
    [
        (lambda r: r.update(trainer=5), "'trainer' must be a mapping"),
        (lambda r: r["runs"].update(mlp=[1, 2]), "'runs.mlp' must be a mapping"),
        (lambda r: r["runs"]["mlp"]["model"].update(init_args=[1]), "init_args' must be a mapping"),
    ],
)
def test_malformed_recipes_are_one_line_errors(tmp_path, mutate, needle):
    import copy

    data = copy.deepcopy(SMALL_RECIPE)
    mutate(data)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    assert_user_error(run("fit", "--recipe", path), needle)


def test_empty_runs_selection_and_bad_env(recipe):
    assert_user_error(run("fit", "--recipe", recipe, "--runs", ","), "names no run")
    env = dict(os.environ, SEQLAB_WKV7="cudaa", PYTHONWARNINGS="ignore")
    result = subprocess.run([*SEQLAB, "models"], capture_output=True, text=True, env=env, timeout=120)
    assert_user_error(result, "SEQLAB_WKV7")


@pytest.mark.slow  # several processes or a whole recipe: `make test-slow` (CI runs it)
def test_parallel_fit_trains_every_run_in_child_processes(recipe, tmp_path):
    """--parallel 2 (the CPU demo's default): both runs train at once and one report covers both."""
    root = tmp_path / "runs"
    result = run("fit", "--recipe", recipe, "--parallel", "2", "--trainer.root_dir", root)
    assert result.returncode == 0, result.stderr
    prefixed = [ln for ln in result.stdout.splitlines() if ln.startswith(("[mlp ] step", "[lstm] step"))]
    assert {ln[:6] for ln in prefixed} == {"[mlp ]", "[lstm]"}
    for name in ("mlp", "lstm"):
        assert '"steps": 6' in (root / "tiny" / name / "metrics.json").read_text()
    report = (root / "tiny/report.md").read_text()
    assert "| mlp" in report and "| lstm" in report


def test_protocol_seed_tests_each_run_on_the_weights_the_recipe_declares(tmp_path):
    import json

    recipe = dict(
        SMALL_RECIPE,
        # The recipe says what `seed` means: every run on its last weights, the Transformer on its best.
        protocols={"seed": {"trainer": {"test_checkpoint": "last"}}},
        runs={
            "mlp": SMALL_RECIPE["runs"]["mlp"],
            "transformer": {
                "model": {"class_path": "transformer", "init_args": {"n_layer": 1}},
                "protocols": {"seed": {"trainer": {"test_checkpoint": "best"}}},
            },
        },
        trainer=dict(
            SMALL_RECIPE["trainer"], callbacks=[{"class_path": "MovingAverageCheckpoint", "init_args": {"window": 2}}]
        ),
    )
    path = tmp_path / "protocol.yaml"
    path.write_text(yaml.safe_dump(recipe))
    root = tmp_path / "runs"
    result = run("fit", "--recipe", path, "--protocol", "seed", "--trainer.root_dir", root)
    assert result.returncode == 0, result.stderr
    tested = {name: json.loads((root / "tiny" / name / "metrics.json").read_text()) for name in ("mlp", "transformer")}
    assert tested["transformer"]["tested_checkpoint"] == "best" and tested["mlp"]["tested_checkpoint"] == "last"
    assert {m["protocol"] for m in tested.values()} == {"seed"}
    assert "protocol `seed`: as in the seed" in (root / "tiny/report.md").read_text()
    assert_user_error(run("fit", "--recipe", path, "--protocol", "sead"), "protocol 'sead' is not known")


def test_a_protocol_the_recipe_does_not_declare_is_an_error(recipe, run_seqlab):
    code, out, err = run_seqlab("fit", "--recipe", recipe, "--protocol", "seed", "--print_config")
    assert code == 2 and len(err) == 1 and out == "", err
    assert "run 'lstm': protocol 'seed' is not declared for this run" in err[0] and "protocols:" in err[0]
    code, out, err = run_seqlab("fit", "--recipe", recipe, "--protocol", "best", "--print_config")
    assert code == 0 and yaml.safe_load(out)["protocol"] == "best"


@pytest.mark.parametrize(
    "key, value, belongs",
    [
        ("parallel", 2, "move it to the recipe's top level or pass --parallel N"),
        ("protocol", "seed", "move it to the recipe's top level or pass --protocol NAME"),
        ("settings", {"SEQLAB_WKV7": "cpp"}, "set those variables in the environment"),
    ],
)
def test_recipe_level_keys_inside_a_run_are_errors_naming_where_they_belong(tmp_path, run_seqlab, key, value, belongs):
    """They were dropped silently; at the top level (a saved config.yaml records protocol and
    settings there) they keep working, as test_fit_writes_config_checkpoint_metrics_and_report shows."""
    import copy

    data = copy.deepcopy(SMALL_RECIPE)
    data["runs"]["mlp"][key] = value
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    code, out, err = run_seqlab("fit", "--recipe", path, "--print_config")
    assert code == 2 and len(err) == 1, err
    assert f"'runs.mlp.{key}' is not a run's setting" in err[0] and belongs in err[0], err[0]
    top = copy.deepcopy(SMALL_RECIPE)
    top[key] = value if key != "protocol" else "best"
    path.write_text(yaml.safe_dump(top))
    assert run_seqlab("fit", "--recipe", path, "--print_config")[0] == 0


def test_models_listing_says_why_a_model_cannot_be_built(run_seqlab, monkeypatch):
    from seqlab import Model
    from seqlab.registry import MODELS

    class NeedsWeights(Model):
        """A model that cannot be built with its defaults."""

        def __init__(self, path: str = ""):
            raise ValueError("pass the path of its weights.\nmore detail")

    monkeypatch.setattr(MODELS, "items", lambda: iter([("needs_weights", NeedsWeights)]))
    code, out, err = run_seqlab("models")
    assert code == 0, err
    line = out.strip()
    assert "(ValueError)" in line and "ValueError: pass the path of its weights" in line and "more detail" not in line


def test_usage_and_help_are_generated_from_each_commands_flags(run_seqlab):
    code, out, _ = run_seqlab("--help")
    assert code == 0
    for flag in ("--max_new_tokens N", "--grid [RUN:]KEY=v1,v2", "--no_report", "--input FILE", "--trust"):
        assert flag in out, out
    code, out, _ = run_seqlab("predict", "--help")
    assert code == 0 and "--temperature T" in out and "--trainer.max_steps" in out
    code, out, err = run_seqlab("predict", "--recipe", "x", "--max_new", "3")
    assert code == 2 and "unknown option --max_new" in err[0], err
    code, out, err = run_seqlab("sweep", "--recipe", "x", "--seeds", "two")
    assert code == 2 and err == ["error: seqlab sweep: --seeds expects int, got 'two'; fix its value."], err
