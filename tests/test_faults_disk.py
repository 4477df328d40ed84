"""A full disk, for real: a file-size limit (``RLIMIT_FSIZE``) makes a write fail with EFBIG.

The limit is the kernel's, set in the child before it starts (``preexec_fn``); SIGXFSZ is ignored
(as Python itself does), so the write fails with an error instead of killing the process. It is a
per-file limit: the run's checkpoint is made to grow step by step (a callback whose saved state
grows), so the checkpoint at step 4 fits under it and the one at step 8 does not.
"""

import csv
import os
import resource
import signal
import subprocess
from pathlib import Path

import pytest
import yaml
from tiny import MLP, SEQLAB, TASK

from seqlab.checkpoint import load_checkpoint

DISKKIT = '''
from seqlab import Callback


class GrowingState(Callback):
    """Saved state that grows by ``per_step`` bytes a step, so each checkpoint is larger."""

    state_key = "GrowingState"

    def __init__(self, per_step: int = 20000):
        self.per_step = per_step
        self.steps = 0

    def on_train_batch_end(self, trainer, task, model, metrics):
        self.steps = trainer.global_step

    def state_dict(self):
        return {"pad": "x" * (self.per_step * self.steps)}

    def load_state_dict(self, state):
        self.steps = len(state["pad"]) // self.per_step
'''
PER_STEP = 20000


def _recipe(folder: Path) -> Path:
    (folder / "diskkit.py").write_text(DISKKIT)
    trainer = {
        "max_steps": 12,
        "val_every": 4,
        "save_every": 4,
        "log_every": 1,
        "optimizer": {"lr": 3e-3},
        "callbacks": [{"class_path": "diskkit.GrowingState", "init_args": {"per_step": PER_STEP}}],
    }
    path = folder / "disk.yaml"
    path.write_text(yaml.safe_dump({"name": "disk", "task": TASK, "trainer": trainer, "runs": {"mlp": MLP}}))
    return path


def _fit(recipe: Path, root: Path, *args, file_size_limit: int | None = None) -> subprocess.CompletedProcess:
    def limit_file_size():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG from write(), not death by SIGXFSZ
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))

    return subprocess.run(
        [*SEQLAB, "fit", "--recipe", str(recipe), "--trainer.root_dir", str(root), "--no_report", *map(str, args)],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONWARNINGS="ignore", SEQLAB_NUM_THREADS="1"),
        preexec_fn=limit_file_size if file_size_limit else None,
        timeout=300,
    )


def _losses(run: Path) -> dict[int, str]:
    with open(run / "metrics.csv", newline="") as f:
        return {int(row["step"]): row["loss"] for row in csv.DictReader(f)}


def test_a_full_disk_mid_save_ends_in_one_sentence_and_the_last_checkpoint_survives(tmp_path):
    recipe = _recipe(tmp_path)
    straight = _fit(recipe, tmp_path / "straight")
    assert straight.returncode == 0, straight.stderr
    at_12 = (tmp_path / "straight/disk/mlp/checkpoints/last.safetensors").stat().st_size
    limit = at_12 - 6 * PER_STEP  # the checkpoint of step 4 fits, the one of step 8 does not
    assert limit > 50_000  # above every other file the run writes before step 8

    full = _fit(recipe, tmp_path / "runs", file_size_limit=limit)
    ckpts = tmp_path / "runs/disk/mlp/checkpoints"
    assert full.returncode == 2, full.stderr
    lines = [ln for ln in full.stderr.splitlines() if ln.strip() and not ln.startswith("== run")]
    assert len(lines) == 1 and lines[0].startswith("error: could not write last.safetensors in "), full.stderr
    assert str(ckpts) in lines[0] and "disk full or file-size limit (File too large)" in lines[0], lines[0]
    assert "Traceback" not in full.stderr + full.stdout
    # The step-4 checkpoint is intact and loadable; nothing half-written is left anywhere.
    assert load_checkpoint(ckpts / "last.safetensors")["step"] == 4
    assert sorted(p.name for p in ckpts.iterdir()) == ["last.safetensors"]
    assert [p for p in (tmp_path / "runs").rglob("*.tmp")] == []

    # With space again, the run resumes from step 4 and ends as the uninterrupted run did.
    resumed = _fit(recipe, tmp_path / "runs", "--ckpt_path", "last")
    assert resumed.returncode == 0, resumed.stderr
    assert "at step 4" in resumed.stderr, resumed.stderr
    assert _losses(tmp_path / "runs/disk/mlp") == _losses(tmp_path / "straight/disk/mlp")


@pytest.fixture
def file_size_limit():
    """A real file-size limit on this process (the soft one, restored after)."""
    saved = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    def set_limit(size: int) -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, saved[1]))

    try:
        yield set_limit
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, saved)
        signal.signal(signal.SIGXFSZ, handler)


def test_an_atomic_write_past_the_limit_keeps_the_old_file_and_leaves_no_temp_file(tmp_path, file_size_limit):
    from seqlab.io import DiskFull, atomic_write_bytes

    target = tmp_path / "out" / "metrics.json"
    atomic_write_bytes(target, b"old" * 100)
    file_size_limit(1000)
    with pytest.raises(DiskFull) as info:
        atomic_write_bytes(target, b"x" * 5000)
    message = str(info.value)
    assert f"in {target.parent}:" in message and "disk full or file-size limit (File too large)" in message
    assert info.value.exit_code == 2
    assert target.read_bytes() == b"old" * 100
    assert sorted(p.name for p in target.parent.iterdir()) == ["metrics.json"]
    atomic_write_bytes(target, b"y" * 900)  # what fits is still written
    assert target.read_bytes() == b"y" * 900


def test_only_a_full_disk_is_taken_for_one(tmp_path):
    import errno

    from seqlab.errors import SeqlabError
    from seqlab.io import disk_full, disk_full_reason

    assert disk_full_reason(OSError(errno.ENOSPC, "full")) == os.strerror(errno.ENOSPC)
    assert disk_full_reason(RuntimeError("I/O error: File too large (os error 27)")) == os.strerror(errno.EFBIG)
    try:  # a logger's write that fails inside a callback, re-raised as another error
        try:
            raise OSError(errno.EDQUOT, "quota")
        except OSError as inner:
            raise RuntimeError("the CSV logger failed") from inner
    except RuntimeError as outer:
        assert "in " + str(tmp_path) in str(disk_full(outer, tmp_path))
    assert disk_full_reason(OSError(errno.EACCES, "denied")) is None
    assert disk_full_reason(RuntimeError("(os error 13)")) is None
    assert disk_full(SeqlabError("already one sentence (os error 28)"), tmp_path) is None
