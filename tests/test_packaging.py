"""seqlab as a user gets it from a wheel: outside the repo, the packaged recipes run by name."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # builds a wheel and installs it in a fresh venv: `make test-slow` (CI runs it)
def test_a_wheel_outside_the_repo_runs_a_packaged_recipe(tmp_path):
    wheels, site, work = tmp_path / "wheels", tmp_path / "site", tmp_path / "work"
    work.mkdir()
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = wheels.glob("seqlab-*.whl")
    # Every built-in is found through the wheel's entry points, as an installed plugin is.
    with zipfile.ZipFile(wheel) as archive:
        (listing,) = [n for n in archive.namelist() if n.endswith(".dist-info/entry_points.txt")]
        points = archive.read(listing).decode()
    for line in ("[seqlab.models]", "mlp = seqlab.models.mlp:MLP", "[seqlab.tasks]", "[seqlab.callbacks]"):
        assert line in points, points
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert installed.returncode == 0, installed.stderr
    # The wheel's seqlab, not this checkout's: its folder comes first on the path.
    env = dict(os.environ, PYTHONPATH=str(site), PYTHONWARNINGS="ignore")

    def seqlab(*args):
        return subprocess.run(
            [sys.executable, "-m", "seqlab.cli", *map(str, args)],
            capture_output=True,
            text=True,
            timeout=300,
            env=env,
            cwd=work,
        )

    where = subprocess.run(
        [sys.executable, "-c", "import seqlab; print(seqlab.__file__)"],
        capture_output=True,
        text=True,
        env=env,
        cwd=work,
        timeout=120,
    )
    assert where.stdout.strip().startswith(str(site)), where.stdout + where.stderr
    listing = seqlab("recipes")
    assert listing.returncode == 0 and "reverse_digits_cpu" in listing.stdout, listing.stderr
    fit = seqlab(
        "fit",
        "--recipe",
        "reverse_digits_cpu",
        "--runs",
        "mlp",
        "--parallel",
        "1",
        "--trainer.max_steps",
        "2",
        "--trainer.val_every",
        "0",
        "--task.init_args.batch_size",
        "4",
        "--trainer.root_dir",
        work / "runs",
    )
    assert fit.returncode == 0, fit.stderr
    assert (work / "runs/reverse_digits_cpu/mlp/metrics.json").is_file()
    assert not (work / "recipes").exists()  # nothing of the repo was needed
