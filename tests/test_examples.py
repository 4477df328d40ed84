"""The examples work as the READMEs say: run from the repo root, as subprocesses, for a few steps.

The GRU plugin is pip-installed (editable, offline: --no-index --no-build-isolation) into the
test environment, because entry-point discovery is what is being tested. If this test installed
it, it uninstalls it at the end; an install that was there before (a user who followed
examples/plugin_gru/README.md) is left alone. The shared model checks (seqlab.testing) run on
the GRU through the plugin's own tests/test_gru.py, as its README shows.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from tiny import SEQLAB

REPO = Path(__file__).resolve().parents[1]
PLUGIN = REPO / "examples" / "plugin_gru"
# Few steps, small batches: the point is that every example runs end to end.
QUICK = ["--trainer.max_steps", "4", "--trainer.val_every", "2", "--task.init_args.batch_size", "4"]


def run(cmd, timeout=120):
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    result = subprocess.run([str(c) for c in cmd], cwd=REPO, capture_output=True, text=True, env=env, timeout=timeout)
    assert result.returncode == 0, (
        f"{cmd} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )
    return result


def fit(recipe, root, *extra):
    return run([*SEQLAB, "fit", "--recipe", recipe, "--trainer.root_dir", root, "--no_report", *extra])


def read_metrics(path: Path) -> dict:
    assert path.is_file(), f"no {path}"
    metrics = json.loads(path.read_text())
    for key in ("masked_acc", "exact_acc", "loss", "params", "steps", "tokens_per_s"):
        assert key in metrics, f"{path} lacks {key}: {sorted(metrics)}"
    assert 0.0 <= metrics["masked_acc"] <= 1.0
    return metrics


def _installed() -> bool:
    try:
        importlib.metadata.distribution("seqlab-gru")
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


def _can_build_offline() -> str | None:
    """Why an offline editable build cannot work here, or None if it can."""
    if importlib.util.find_spec("setuptools") is None:
        return "setuptools is not installed"
    from setuptools import __version__ as version

    major, minor = (int(x) for x in version.split(".")[:2])
    if (major, minor) < (70, 1) and importlib.util.find_spec("wheel") is None:
        return f"setuptools {version} needs the `wheel` package to build (install seqlab's dev extra)"
    return None


# Under pytest-xdist (`make test`: --dist loadgroup) the tests that use the plugin run in one
# worker: two workers would install it at once, or one would uninstall it under the other.
SAME_WORKER = pytest.mark.xdist_group("gru_plugin")


@pytest.fixture(scope="module")
def gru_plugin():
    if _installed():
        yield
        return
    reason = _can_build_offline()
    # A failure, not a skip: `make test` installs the dev extra, which makes this build possible.
    assert reason is None, f"cannot pip-install examples/plugin_gru offline: {reason}"
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-index",
            "--no-deps",
            "--no-build-isolation",
            "-e",
            PLUGIN,
        ],
        timeout=180,
    )
    try:
        yield
    finally:
        subprocess.run(
            [sys.executable, "-m", "pip", "uninstall", "--quiet", "--yes", "seqlab-gru"],
            cwd=REPO,
            capture_output=True,
            timeout=120,
        )


@SAME_WORKER
def test_plugin_is_listed_and_passes_its_own_tests(gru_plugin):
    listed = run([*SEQLAB, "models"]).stdout
    assert any(line.split()[:2] == ["gru", "30,972"] for line in listed.splitlines()), listed
    # The plugin's tests/test_gru.py: seqlab.testing's shared checks, as the README shows.
    run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", PLUGIN / "tests"])


@SAME_WORKER
def test_plugin_recipe_trains(gru_plugin, tmp_path):
    fit("examples/plugin_gru/recipe.yaml", tmp_path, *QUICK)
    metrics = read_metrics(tmp_path / "gru_reverse_digits" / "gru" / "metrics.json")
    assert metrics["model"] == "gru" and metrics["params"] == 30_972 and metrics["steps"] == 4
    assert metrics["state_size"] == 2 * 52


@SAME_WORKER
def test_compare_with_gru_is_the_cpu_recipe_plus_gru(gru_plugin):
    ours = yaml.safe_load((PLUGIN / "compare_with_gru.yaml").read_text())
    seed = yaml.safe_load((REPO / "recipes" / "reverse_digits_cpu.yaml").read_text())
    gru = ours["runs"].pop("gru")
    assert ours == seed, "compare_with_gru.yaml must repeat recipes/reverse_digits_cpu.yaml exactly"
    assert gru["model"] == "gru"
    printed = run(
        [*SEQLAB, "fit", "--recipe", "examples/plugin_gru/compare_with_gru.yaml", "--runs", "gru", "--print_config"]
    ).stdout
    config = yaml.safe_load(printed)
    assert config["name"] == "reverse_digits_cpu"
    assert config["runs"]["gru"]["model"]["class_path"] == "seqlab_gru.GRU"


def test_custom_callback_stops_early_and_logs(tmp_path):
    recipe = yaml.safe_load((REPO / "examples" / "custom_callback.yaml").read_text())
    for cb in recipe["trainer"]["callbacks"]:
        if cb["class_path"].endswith("TargetAccuracyStop"):
            cb["init_args"]["target"] = 0.0  # reached at the first validation
        if cb["class_path"].endswith("WeightNormLogger"):
            cb["init_args"]["every"] = 1
    copy = tmp_path / "custom_callback.yaml"
    copy.write_text(yaml.safe_dump(recipe))
    result = fit(
        copy,
        tmp_path / "runs",
        "--trainer.max_steps",
        "20",
        "--trainer.val_every",
        "3",
        "--task.init_args.batch_size",
        "4",
    )
    run_dir = tmp_path / "runs" / "custom_callback" / "lstm"
    assert read_metrics(run_dir / "metrics.json")["steps"] == 3
    assert "reached the target" in result.stderr + result.stdout
    header, *rows = (run_dir / "metrics.csv").read_text().splitlines()
    column = header.split(",").index("weight_norm")
    assert len(rows) == 3 and all(float(r.split(",")[column]) > 0 for r in rows)


def test_custom_task_trains_two_models(tmp_path):
    fit("examples/custom_task.yaml", tmp_path, *QUICK)
    for model in ("mlp", "lstm"):
        metrics = read_metrics(tmp_path / "sort_digits" / model / "metrics.json")
        assert metrics["steps"] == 4 and 0.0 <= metrics["exact_acc"] <= 1.0
        assert "gold  :" in (tmp_path / "sort_digits" / model / "samples.txt").read_text()


def test_custom_task_is_deterministic_and_scored_on_answers():
    sys.path.insert(0, str(REPO))
    try:
        from examples.custom_task import SortDigits
    finally:
        sys.path.remove(str(REPO))
    from seqlab import TASKS

    assert TASKS.get("sort_digits") is SortDigits
    task = SortDigits(batch_size=3)
    task.setup(7)
    a, b = task.train_batch(5), task.train_batch(5)
    assert (a.inputs.numpy() == b.inputs.numpy()).all()
    assert not (a.inputs.numpy() == task.train_batch(6).inputs.numpy()).all()
    rows = task.eval_rows
    targets, mask = rows[:, 1:], task.eval_mask
    # Scored targets are the sorted digits and '#'; the first answer is the sorted number.
    first, end = int(mask[0].argmax()), int((mask[0] & (targets[0] == 11)).argmax())
    number = rows[0, first - (end - first) : first]
    assert list(targets[0, first:end]) == sorted(number)


def test_python_api(tmp_path):
    result = run(
        [
            sys.executable,
            "examples/python_api.py",
            "--steps",
            "3",
            "--batch-size",
            "2",
            "--val-every",
            "3",
            "--models",
            "mlp,transformer",
            "--root-dir",
            tmp_path,
        ]
    )
    for model in ("mlp", "transformer"):
        assert read_metrics(tmp_path / "python_api" / model / "metrics.json")["steps"] == 3
    table = result.stdout.splitlines()
    assert any(line.startswith("mlp ") for line in table) and any(line.startswith("transformer ") for line in table)


def test_plugin_readme_shows_the_real_code():
    """The README's code blocks are copied from the files, word for word."""
    import re

    readme = (PLUGIN / "README.md").read_text()
    python_blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    toml = re.findall(r"```toml\n(.*?)```", readme, re.S)[0]
    assert python_blocks[0] in (PLUGIN / "seqlab_gru" / "__init__.py").read_text()
    assert python_blocks[1] in (PLUGIN / "tests" / "test_gru.py").read_text()
    pyproject = (PLUGIN / "pyproject.toml").read_text()
    assert all(line in pyproject for line in toml.splitlines())


def test_python_api_uses_the_cpu_recipes_settings():
    """examples/python_api.py says it trains with recipes/reverse_digits_cpu.yaml's settings: it does."""
    import dataclasses
    import importlib.util

    spec = importlib.util.spec_from_file_location("python_api", REPO / "examples" / "python_api.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    recipe = yaml.safe_load((REPO / "recipes" / "reverse_digits_cpu.yaml").read_text())
    for name, run in recipe["runs"].items():
        optimizer, callbacks = example.settings(name)
        wanted = run["trainer"]["optimizer"]
        got = dataclasses.asdict(optimizer)
        assert {k: got[k] for k in wanted} == wanted, name
        assert [type(cb).__name__ for cb in callbacks] == [cb["class_path"] for cb in run["trainer"]["callbacks"]], name
