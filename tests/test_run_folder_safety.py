"""One writer per run folder, names that stay under root_dir, and folders seqlab may not write.

Issue 23, items 5, 6 and the read-only part of 7: real processes holding real ``flock`` locks
(one killed with SIGKILL), real stray modules beside a recipe, a real read-only folder.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from tiny import LSTM, MLP, TRAINER, tiny_recipe

from seqlab.callback import Callback

LOCK, MARKER = ".seqlab.lock", ".seqlab-run"


def write_recipe(folder: Path, recipe: dict | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump(recipe or tiny_recipe(), sort_keys=False))
    return path


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def lock_is_free(lock: Path) -> bool:
    """Try the lock with a descriptor of our own (flock conflicts between descriptors, even in one process)."""
    fd = os.open(lock, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


class ProbeLock(Callback):
    """Records, at the first step, whether the run folder's lock is held (by the fit itself)."""

    seen: list[bool] = []

    def on_train_batch_start(self, trainer, task, model, batch) -> None:
        if trainer.global_step == 0:
            ProbeLock.seen.append(lock_is_free(trainer.run_dir / LOCK))


# ---------------------------------------------------------------------------- 5. one writer
def test_a_second_fit_of_a_locked_run_folder_exits_2_naming_the_holder_and_kill_9_frees_it(tmp_path, run_seqlab):
    recipe = write_recipe(tmp_path)
    root = tmp_path / "runs"
    run_dir = root / "tiny/mlp"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from seqlab.checkpoint.run_dir import lock_run_dir; "
            f"lock_run_dir({str(run_dir)!r}); print('locked', flush=True); sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        code, _, err = run_seqlab("fit", "--recipe", recipe, "--trainer.root_dir", root, "--no_report")
        assert code == 2, err
        assert len(err) == 1 and str(holder.pid) in err[0] and "in use" in err[0], err
        assert files_under(root) == ["tiny", "tiny/mlp", f"tiny/mlp/{LOCK}"]  # nothing of the second fit
    finally:
        holder.kill()  # SIGKILL: no cleanup runs; the OS drops the lock with the process
        holder.wait()
    assert holder.returncode == -signal.SIGKILL
    ProbeLock.seen.clear()
    callbacks = [{"class_path": f"{__name__}.ProbeLock"}]
    code, _, err = run_seqlab(
        "fit",
        "--recipe",
        recipe,
        "--trainer.root_dir",
        root,
        "--no_report",
        "--trainer.callbacks",
        yaml.safe_dump(callbacks),
    )
    assert code == 0, err
    assert ProbeLock.seen == [False]  # the fit held the lock while it trained...
    assert lock_is_free(run_dir / LOCK)  # ...and let go of it when it ended
    assert (run_dir / "checkpoints/last.safetensors").is_file() and (run_dir / MARKER).is_file()


def test_checkpoint_temp_files_have_names_of_their_own_and_dead_writers_leftovers_go(tmp_path):
    from seqlab.io import atomic_write, atomic_write_text

    target = tmp_path / "last.safetensors"
    names = []
    for text in ("one", "two"):
        atomic_write(target, lambda tmp, text=text: (names.append(tmp.name), tmp.write_text(text)))
    pattern = re.compile(rf"last\.safetensors\.{os.getpid()}\.[0-9a-f]+\.tmp")
    assert all(pattern.fullmatch(n) for n in names) and names[0] != names[1], names
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a writer killed mid-write leaves its temp file; its pid runs no more
    stale = tmp_path / f"last.safetensors.{dead.pid}.0badcafe.tmp"
    live = tmp_path / f"last.safetensors.{os.getppid()}.0badcafe.tmp"  # a live writer's file is left alone
    stale.write_text("half")
    live.write_text("half")
    atomic_write_text(target, "three")
    assert target.read_text() == "three" and not stale.exists() and live.exists()


def test_a_run_named_twice_in_runs_is_refused_before_anything_is_written(tmp_path, run_seqlab):
    recipe = write_recipe(tmp_path)
    code, _, err = run_seqlab("fit", "--recipe", recipe, "--runs", "mlp,mlp", "--trainer.root_dir", tmp_path / "runs")
    assert code == 2 and len(err) == 1 and "'mlp' twice" in err[0], err
    assert not (tmp_path / "runs").exists()


def test_two_runs_with_one_run_name_are_refused_before_anything_is_written(tmp_path, run_seqlab):
    recipe = write_recipe(tmp_path, tiny_recipe({"mlp": MLP, "lstm": LSTM}))
    code, _, err = run_seqlab(
        "fit", "--recipe", recipe, "--trainer.root_dir", tmp_path / "runs", "--trainer.run_name", "same"
    )
    assert code == 2 and len(err) == 1, err
    assert "'mlp' and 'lstm'" in err[0] and "run_name 'same'" in err[0], err
    assert not (tmp_path / "runs").exists()


# ---------------------------------------------------------------------------- 6. names stay inside
def _callback(class_path: str, filename: str) -> dict:
    return {
        **tiny_recipe(),
        "trainer": {**TRAINER, "callbacks": [{"class_path": class_path, "init_args": {"filename": filename}}]},
    }


@pytest.mark.parametrize(
    "recipe, args, key",
    [
        (tiny_recipe({"../escape": MLP}), [], "run name"),
        (tiny_recipe({"a/b": MLP}), [], "run name"),
        (tiny_recipe(name="../../etc"), [], "experiment name"),
        (tiny_recipe(), ["--trainer.run_name", "{tmp}/abs"], "trainer.run_name"),
        (tiny_recipe(), ["--trainer.experiment", ".."], "trainer.experiment"),
        (_callback("SaveConfig", "../../config.yaml"), [], "SaveConfig's filename"),
        (_callback("SaveSamples", "{tmp}/samples.txt"), [], "SaveSamples's filename"),
        (_callback("CSVLogger", "sub/metrics.csv"), [], "CSVLogger's filename"),
    ],
    ids=[
        "dotdot-run",
        "sep-run",
        "experiment",
        "abs-run_name",
        "dotdot-experiment",
        "save_config",
        "save_samples",
        "csv",
    ],
)
def test_names_from_a_recipe_that_would_leave_root_dir_are_refused(tmp_path, run_seqlab, recipe, args, key):
    # Absolute names point into tmp_path ("{tmp}"), so that even a fit that took them writes nothing outside.
    recipe = yaml.safe_load(yaml.safe_dump(recipe).replace("{tmp}", str(tmp_path)))
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    path = write_recipe(tmp_path / "recipe", recipe)
    root = tmp_path / "deep/down/runs"
    code, _, err = run_seqlab("fit", "--recipe", path, "--trainer.root_dir", root, "--no_report", *args)
    assert code == 2 and len(err) == 1 and key in err[0] and "plain name" in err[0], err
    assert files_under(tmp_path) == ["recipe", "recipe/tiny.yaml"]


def test_a_resume_removes_what_dead_writers_left_of_files_never_written_again(tiny_run, tmp_path, run_seqlab):
    """A kill -9 during a write of `best` leaves its temp file; if `best` is not written again,
    only the resume's start, which removes dead writers' temp files, leaves checkpoints/ clean."""
    recipe, finished = tiny_run
    root = tmp_path / "runs"
    shutil.copytree(finished, root)
    checkpoints = root / "tiny/mlp/checkpoints"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = checkpoints / f"best.safetensors.{dead.pid}.0badcafe.tmp"
    live = checkpoints / f"best.safetensors.{os.getppid()}.0badcafe.tmp"  # a live writer's is kept
    stale.write_text("half")
    live.write_text("half")
    args = ("fit", "--recipe", recipe, "--trainer.root_dir", root, "--no_report", "--ckpt_path", "last")
    code, _, err = run_seqlab(*args, "--trainer.max_steps", 7)
    assert code == 0, err
    assert not stale.exists() and live.exists()


def test_overwrite_deletes_only_a_run_folder_seqlab_marked(tiny_run, tmp_path, run_seqlab):
    recipe, finished = tiny_run
    root = tmp_path / "runs"
    shutil.copytree(finished, root)
    run_dir = root / "tiny/mlp"
    assert (run_dir / MARKER).is_file()  # seqlab marked the folder it made
    (run_dir / MARKER).unlink()  # as a folder of an older seqlab, or one made by hand
    (run_dir / "mine.txt").write_text("keep me")
    before = files_under(run_dir)
    args = ("fit", "--recipe", recipe, "--trainer.root_dir", root, "--no_report", "--trainer.overwrite", "true")
    code, _, err = run_seqlab(*args)
    assert code == 2 and len(err) == 1 and "delete it by hand" in err[0], err
    assert files_under(run_dir) == before
    (run_dir / MARKER).write_text("")
    code, _, err = run_seqlab(*args)
    assert code == 0, err
    assert not (run_dir / "mine.txt").exists() and (run_dir / MARKER).is_file()


def _import_after_parse(tmp_path: Path, recipe: dict, stray: str) -> subprocess.CompletedProcess:
    """``seqlab fit --print_config`` of a recipe with a stray ``<stray>.py`` beside it, in a fresh
    interpreter started elsewhere; then ``import <stray>`` says which module that name finds."""
    folder = tmp_path / "recipes"
    path = write_recipe(folder, recipe)
    (folder / f"{stray}.py").write_text("raise ImportError('the stray module beside the recipe was imported')\n")
    (folder / "mycallbacks.py").write_text(
        "from seqlab.callback import Callback\n\n\nclass Noop(Callback):\n    pass\n"
    )
    script = textwrap.dedent(
        f"""
        import sys
        from seqlab.cli import main
        assert main(["fit", "--recipe", {str(path)!r}, "--print_config"]) == 0
        import {stray}
        folder = {str(folder)!r}
        print({stray}.__file__)
        print("on path:", folder in sys.path, "last:", bool(sys.path) and sys.path[-1] == folder)
        """
    )
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    return subprocess.run([sys.executable, "-c", script], cwd=cwd, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("stray", ["matplotlib", "yaml"])
def test_a_stray_module_beside_a_recipe_does_not_shadow_the_installed_one(tmp_path, stray):
    recipe = tiny_recipe()
    recipe["trainer"] = {**TRAINER, "callbacks": [{"class_path": "mycallbacks.Noop"}]}  # needs the folder
    result = _import_after_parse(tmp_path, recipe, stray)
    assert result.returncode == 0, result.stderr
    found, where = result.stdout.strip().splitlines()[-2:]
    assert "site-packages" in found and str(tmp_path) not in found, found
    assert where == "on path: True last: True"  # appended, after the installed packages


def test_a_recipe_of_registry_names_puts_nothing_on_sys_path(tmp_path):
    result = _import_after_parse(tmp_path, tiny_recipe(), "matplotlib")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "on path: False last: False"


# ---------------------------------------------------------------------------- 7. read-only folders
@pytest.mark.parametrize("folder", ["tiny/mlp", "tiny/mlp/checkpoints"])
def test_a_read_only_run_folder_is_refused_before_step_1(tiny_run, tmp_path, run_seqlab, folder):
    recipe, finished = tiny_run
    root = tmp_path / "runs"
    shutil.copytree(finished, root)
    read_only = root / folder
    mode = read_only.stat().st_mode
    before = files_under(root)
    read_only.chmod(stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
    try:
        code, _, err = run_seqlab(
            "fit",
            "--recipe",
            recipe,
            "--trainer.root_dir",
            root,
            "--no_report",
            "--ckpt_path",
            "last",
            "--trainer.max_steps",
            "9",
        )
    finally:
        read_only.chmod(mode)
    assert code == 2 and len(err) == 1 and "read-only" in err[0] and str(read_only) in err[0], err
    assert files_under(root) == before


def test_an_experiment_may_nest_plain_names_as_a_sweep_does():
    from seqlab.errors import SeqlabError
    from seqlab.io import check_name

    assert check_name("reverse_digits_cpu/sweep", "trainer.experiment", nested=True) == "reverse_digits_cpu/sweep"
    for bad in ("/abs/sweep", "a/../b", "a//b", ".."):
        with pytest.raises(SeqlabError):
            check_name(bad, "trainer.experiment", nested=True)
    with pytest.raises(SeqlabError, match="path separator"):
        check_name("a/b", "run name")  # a run is one folder
