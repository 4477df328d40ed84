"""Faults, with real processes and real signals: kill -9, SIGTERM, Ctrl-C, --parallel, NaN.

Every test runs `seqlab fit` as a user does (a subprocess) and checks what is left on disk.
"""

import csv
import os
import random
import signal
import subprocess
import threading
import time
from pathlib import Path
from queue import Empty, Queue

import numpy as np
import pytest
import yaml
from support import live_pids
from tiny import MLP, RWKV7, SEQLAB, TASK

from seqlab.callbacks.visualdl_logger import read_records

# A module the recipes below name by class_path (the recipe's folder is on sys.path).
FAULTKIT = '''
import time
from seqlab import Callback


class SlowSteps(Callback):
    """Sleeps after each step, so a signal can be aimed at a step; changes no number."""

    def __init__(self, seconds: float = 0.05):
        self.seconds = seconds

    def on_train_batch_end(self, trainer, task, model, metrics):
        time.sleep(self.seconds)


class SlowSave(Callback):
    """Announces a checkpoint write on stdout and takes its time over it."""

    def on_save_checkpoint(self, trainer, task, model, checkpoint):
        print(f"SAVING step {trainer.global_step}", flush=True)
        time.sleep(3.0)


class CrashMidWrite(Callback):
    """At step ``step``, the process dies (SIGKILL) with half the checkpoint file written; with
    ``once`` (a file's path), only the first time: that file marks that it happened."""

    def __init__(self, step: int = 10, once: str = ""):
        self.step = step
        self.once = once

    def on_save_checkpoint(self, trainer, task, model, checkpoint):
        import os, signal, tempfile

        if trainer.global_step != self.step or (self.once and os.path.exists(self.once)):
            return
        if self.once:
            open(self.once, "w").close()
        import safetensors.numpy
        real = safetensors.numpy.save_file

        def half_then_die(tensors, filename, metadata=None):
            whole = tempfile.mktemp()
            real(tensors, whole, metadata=metadata)
            data = open(whole, "rb").read()
            with open(filename, "wb") as f:
                f.write(data[: len(data) // 2])
                f.flush()
                os.fsync(f.fileno())
            print(f"CRASHING step {trainer.global_step}", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)

        safetensors.numpy.save_file = half_then_die

'''

MODELS = {"mlp": MLP["model"], "rwkv7": RWKV7["model"]}


def write_recipe(tmp_path: Path, runs: dict, task=TASK, slow: float = 0.05, **trainer) -> Path:
    (tmp_path / "faultkit.py").write_text(FAULTKIT)
    settings = {
        "max_steps": 40,
        "val_every": 10,
        "save_every": 4,
        "log_every": 1,
        "optimizer": {"lr": 3e-3},
        "callbacks": [
            {"class_path": "faultkit.SlowSteps", "init_args": {"seconds": slow}},
            {"class_path": "GradientClip", "init_args": {"max_norm": 1.0}},
        ],
    }
    settings.update(trainer)
    recipe = {"name": "faults", "task": task, "trainer": settings, "runs": runs}
    path = tmp_path / "faults.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


TESTS = Path(__file__).resolve().parent  # on the children's path: recipes name support.NaNLossAt


def env():
    # One thread: a resumed run must use the thread count of the run it continues (C++ ops
    # split their reductions by thread).
    path = os.pathsep.join(p for p in (str(TESTS), os.environ.get("PYTHONPATH")) if p)
    return dict(os.environ, PYTHONUNBUFFERED="1", PYTHONWARNINGS="ignore", SEQLAB_NUM_THREADS="1", PYTHONPATH=path)


class Seqlab:
    """`seqlab ARGS` in the background, its stdout lines readable while it runs."""

    def __init__(self, *args, cwd=None):
        self.proc = subprocess.Popen(
            [*SEQLAB, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env(), cwd=cwd
        )
        self.lines: Queue = Queue()
        self.stdout: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        for line in self.proc.stdout:
            self.lines.put(line)

    def wait_for(self, predicate, timeout=120.0, allow_exit=False) -> str | None:
        """The first stdout line that ``predicate`` accepts; None if the process ended first and
        ``allow_exit`` (else that is a failure)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except Empty:
                if allow_exit and self.proc.poll() is not None:
                    return None
                assert self.proc.poll() is None, f"exited early: {self.proc.poll()}\n{self.proc.stderr.read()}"
                continue
            self.stdout.append(line)
            if predicate(line):
                return line
        raise AssertionError(f"timed out; stdout so far:\n{''.join(self.stdout)}")

    def wait_for_step(self, step: int, run: str = "") -> None:
        self.wait_for(lambda line: run in line and _step_of(line) >= step)

    def finish(self, timeout=120.0) -> tuple[int, str]:
        code = self.proc.wait(timeout=timeout)
        return code, self.proc.stderr.read()


def _step_of(line: str) -> int:
    parts = line.split("step ", 1)
    if len(parts) < 2 or "/" not in parts[1]:
        return -1
    head = parts[1].split("/", 1)[0]
    return int(head) if head.isdigit() else -1


def fit(*args) -> subprocess.CompletedProcess:
    return subprocess.run([*SEQLAB, "fit", *map(str, args)], capture_output=True, text=True, env=env(), timeout=300)


def csv_rows(run_dir: Path) -> tuple[list[str], list[dict]]:
    with open(run_dir / "metrics.csv", newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames), list(reader)


def vdl_points(run_dir: Path, tag: str) -> list[tuple[int, float]]:
    newest = sorted((run_dir / "vdl").glob("vdlrecords.*"))[-1]  # the file VisualDL shows
    return [(v.id, v.value) for _, rec in read_records(newest) for v in rec.values if v.tag == tag]


# ---------------------------------------------------------------------------------------------
# Four to seven processes each (~18 s for the MLP, ~40 s for RWKV-7 here): `make test-slow` (CI runs it).
@pytest.mark.slow
@pytest.mark.parametrize("model, kills", [("mlp", 3), ("rwkv7", 5)])
def test_kill9_at_random_steps_then_resume_is_bit_identical(tmp_path, model, kills):
    """kill -9 at random steps (between checkpoints too), resume each time with --ckpt_path last.
    The moving-average best checkpoint (window 3 on train/loss) exists before the later kills, so
    its saved state crosses the resumes too: it ends equal to the uninterrupted run's."""
    callbacks = [
        {"class_path": "faultkit.SlowSteps", "init_args": {"seconds": 0.05}},
        {"class_path": "GradientClip", "init_args": {"max_norm": 1.0}},
        {"class_path": "MovingAverageCheckpoint", "init_args": {"window": 3}},
    ]
    recipe = write_recipe(tmp_path, {model: {"model": MODELS[model]}}, callbacks=callbacks)
    straight = fit("--recipe", recipe, "--trainer.root_dir", tmp_path / "straight")
    assert straight.returncode == 0, straight.stderr

    root = tmp_path / "killed"
    steps = sorted(random.Random(kills).sample(range(2, 37), kills))
    steps[-1] = max(steps[-1], 14)  # the last kill comes after a best checkpoint was written
    had_best = []
    for i, step in enumerate(steps):
        resume = ["--ckpt_path", "last"] if i else []
        job = Seqlab("fit", "--recipe", recipe, "--trainer.root_dir", root, *resume)
        job.wait_for_step(step)
        job.proc.send_signal(signal.SIGKILL)
        assert job.proc.wait(timeout=30) == -signal.SIGKILL
        had_best.append((root / "faults" / model / "checkpoints/best.safetensors").exists())
    assert had_best[-1], "a best checkpoint was there before the last kill"
    done = fit("--recipe", recipe, "--trainer.root_dir", root, "--ckpt_path", "last")
    assert done.returncode == 0, done.stderr

    straight_dir, killed_dir = tmp_path / "straight/faults" / model, root / "faults" / model
    _, rows_a = csv_rows(straight_dir)
    header_b, rows_b = csv_rows(killed_dir)
    assert len(header_b) == len(set(header_b)), header_b  # no column twice
    assert [int(r["step"]) for r in rows_b] == list(range(1, 41))  # every step exactly once
    # Bit-identical per-step losses (the CSV holds exact reprs), and the same validations.
    assert [r["loss"] for r in rows_b] == [r["loss"] for r in rows_a]
    assert [r.get("val_loss") for r in rows_b] == [r.get("val_loss") for r in rows_a]
    assert vdl_points(killed_dir, "train/loss") == vdl_points(straight_dir, "train/loss")
    assert [s for s, _ in vdl_points(killed_dir, "train/loss")] == list(range(1, 41))
    assert_same_checkpoints(killed_dir / "checkpoints", straight_dir / "checkpoints")


def assert_same_checkpoints(a: Path, b: Path) -> None:
    """The last and best checkpoints of two runs hold the same step, weights, optimizer state
    and callback states (the moving average's values and best among them), compared exactly."""
    from seqlab.checkpoint import load_checkpoint

    assert sorted(p.name for p in a.iterdir()) == sorted(p.name for p in b.iterdir())  # no temp file
    for name in ("last.safetensors", "best.safetensors"):
        x, y = load_checkpoint(a / name), load_checkpoint(b / name)
        assert x["step"] == y["step"], name
        assert x["callbacks"] == y["callbacks"], name  # plain numbers: == is exact
        assert x.get("meta") == y.get("meta"), name
        for key in y["model"]:
            assert np.array_equal(x["model"][key], y["model"][key]), (name, key)


@pytest.mark.slow  # several processes or a whole recipe: `make test-slow` (CI runs it)
def test_sigterm_finishes_the_step_saves_and_prints_the_resume_command(tmp_path):
    recipe = write_recipe(tmp_path, {"mlp": {"model": MODELS["mlp"]}}, max_steps=2000, save_every=1000)
    root = tmp_path / "runs"
    job = Seqlab("fit", "--recipe", recipe, "--trainer.root_dir", root)
    job.wait_for_step(8)
    job.proc.send_signal(signal.SIGTERM)
    code, stderr = job.finish()
    assert code == 143, stderr
    assert "Traceback" not in stderr and "C++" not in stderr, stderr
    stopped = [ln for ln in stderr.splitlines() if ln.startswith("stopped by SIGTERM after step")]
    assert len(stopped) == 1, stderr
    step = int(stopped[0].split("after step ")[1].split(";")[0])
    from seqlab.checkpoint import load_checkpoint

    assert load_checkpoint(root / "faults/mlp/checkpoints/last.safetensors")["step"] == step
    _, rows = csv_rows(root / "faults/mlp")
    assert [int(r["step"]) for r in rows] == list(range(1, step + 1))  # flushed before exit
    resume = [ln for ln in stderr.splitlines() if ln.startswith("resume with: ")][0]
    command = resume[len("resume with: ") :].split()
    assert command[:2] == ["seqlab", "fit"] and command[-2:] == ["--ckpt_path", "last"]
    again = fit(*command[2:], "--trainer.max_steps", step + 3)
    assert again.returncode == 0, again.stderr
    _, rows = csv_rows(root / "faults/mlp")
    assert [int(r["step"]) for r in rows] == list(range(1, step + 4))


def test_ctrl_c_exits_130_and_a_second_one_aborts_the_save(tmp_path):
    recipe = write_recipe(tmp_path, {"mlp": {"model": MODELS["mlp"]}}, max_steps=2000, save_every=1000)
    job = Seqlab("fit", "--recipe", recipe, "--trainer.root_dir", tmp_path / "a")
    job.wait_for_step(5)
    job.proc.send_signal(signal.SIGINT)
    code, stderr = job.finish()
    assert code == 130 and "stopped by SIGINT after step" in stderr, stderr

    # With a slow checkpoint write, a second Ctrl-C during it aborts at once, without saving.
    slow = write_recipe(
        tmp_path,
        {"mlp": {"model": MODELS["mlp"]}},
        max_steps=2000,
        save_every=1000,
        callbacks=[{"class_path": "faultkit.SlowSave"}],
    )
    job = Seqlab("fit", "--recipe", slow, "--trainer.root_dir", tmp_path / "b")
    job.wait_for_step(3)
    job.proc.send_signal(signal.SIGINT)
    job.wait_for(lambda line: line.startswith("SAVING"))
    started = time.monotonic()
    job.proc.send_signal(signal.SIGINT)
    code, stderr = job.finish()
    assert code == 130 and "aborted" in stderr, stderr
    assert time.monotonic() - started < 2.5  # the 3 s save was cut short
    assert not (tmp_path / "b/faults/mlp/checkpoints/last.safetensors").exists()


@pytest.mark.slow  # a parent and two training children per case, ~15 s for both: `make test-slow`
@pytest.mark.parametrize("how", ["sigterm", "sigkill"])
def test_parallel_parent_signal_reaches_every_child(tmp_path, how):
    """--parallel: SIGTERM is forwarded and waited for; even a SIGKILLed parent leaves no orphan."""
    runs = {"one": {"model": MODELS["mlp"]}, "two": {"model": MODELS["mlp"], "trainer": {"seed": 3}}}
    recipe = write_recipe(tmp_path, runs, max_steps=5000, save_every=1000)
    root = tmp_path / "runs"
    job = Seqlab("fit", "--recipe", recipe, "--parallel", "2", "--trainer.root_dir", root)
    job.wait_for_step(3, run="[one")
    job.wait_for_step(3, run="[two")
    if how == "sigterm":
        job.proc.send_signal(signal.SIGTERM)
        code, stderr = job.finish()
        assert code == 143, stderr
        assert "resume with: seqlab fit" in stderr and "--parallel 2" in stderr, stderr
    else:
        job.proc.send_signal(signal.SIGKILL)
        job.proc.wait(timeout=30)
    deadline = time.monotonic() + 30
    while live_pids(str(recipe)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert live_pids(str(recipe)) == []  # no child left training
    from seqlab.checkpoint import load_checkpoint

    for run in ("one", "two"):  # each child finished its step and saved before exiting
        assert load_checkpoint(root / f"faults/{run}/checkpoints/last.safetensors")["step"] >= 3


def test_nonfinite_loss_stops_with_exit_1_and_keeps_the_last_good_checkpoint(tmp_path):
    task = {"class_path": "support.NaNLossAt", "init_args": {**TASK["init_args"], "nan_steps": [7]}}
    recipe = write_recipe(tmp_path, {"mlp": {"model": MODELS["mlp"]}}, task=task, slow=0.0)
    result = fit("--recipe", recipe, "--trainer.root_dir", tmp_path / "runs")
    assert result.returncode == 1, result.stderr
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "step 7 of run 'mlp' has a non-finite loss" in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    from seqlab.checkpoint import load_checkpoint

    ckpt = load_checkpoint(tmp_path / "runs/faults/mlp/checkpoints/last.safetensors")
    assert ckpt["step"] == 4  # save_every 4: the last good one, nothing after the bad step
    assert all(np.isfinite(v).all() for v in ckpt["model"].values())  # loaded as numpy arrays


@pytest.mark.slow  # several processes or a whole recipe: `make test-slow` (CI runs it)
def test_a_crash_in_the_middle_of_a_checkpoint_write_loses_nothing(tmp_path):
    """Killed with half of last.safetensors.tmp written: the previous last and best still load,
    the half file is never taken for a checkpoint, and the resume, with the same callbacks,
    continues from the previous last to the uninterrupted run's losses and checkpoints."""
    from seqlab.checkpoint import load_checkpoint

    recipe = write_recipe(
        tmp_path,
        {"mlp": {"model": MODELS["mlp"]}},
        slow=0.0,
        save_every=4,
        max_steps=16,
        callbacks=[
            {"class_path": "faultkit.CrashMidWrite", "init_args": {"step": 12, "once": str(tmp_path / "crashed")}},
            {"class_path": "MovingAverageCheckpoint", "init_args": {"window": 2}},
        ],
    )
    root = tmp_path / "runs"
    crashed = fit("--recipe", recipe, "--trainer.root_dir", root)
    assert crashed.returncode == -signal.SIGKILL and "CRASHING step 12" in crashed.stdout
    ckpts = root / "faults/mlp/checkpoints"
    assert load_checkpoint(ckpts / "last.safetensors")["step"] == 8
    assert load_checkpoint(ckpts / "best.safetensors")["step"] <= 12
    partial = [p for p in ckpts.iterdir() if p.name.endswith(".tmp")]
    assert partial, "the half-written file is there"
    refused = fit("--recipe", recipe, "--trainer.root_dir", root, "--ckpt_path", partial[0])
    assert refused.returncode == 2 and refused.stderr.startswith("error: "), refused.stderr
    # The same recipe, callbacks and all (CrashMidWrite has crashed once and now does nothing).
    straight = fit("--recipe", recipe, "--trainer.root_dir", tmp_path / "straight")
    assert straight.returncode == 0, straight.stderr
    resumed = fit("--recipe", recipe, "--trainer.root_dir", root, "--ckpt_path", "last")
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed mlp from" in resumed.stderr and "at step 8" in resumed.stderr, resumed.stderr
    assert "callback" not in resumed.stderr.lower(), resumed.stderr  # no "changed callbacks" warning
    _, rows = csv_rows(root / "faults/mlp")
    _, straight_rows = csv_rows(tmp_path / "straight/faults/mlp")
    assert [int(r["step"]) for r in rows] == list(range(1, 17))
    assert [r["loss"] for r in rows] == [r["loss"] for r in straight_rows]  # exact reprs
    assert_same_checkpoints(ckpts, tmp_path / "straight/faults/mlp/checkpoints")  # the half file is gone


# ~6 processes, ~40 s here: `make test-slow` (CI runs it)
@pytest.mark.slow
def test_kill9_at_a_random_moment_mid_step_or_mid_save_then_resume_is_bit_identical(tmp_path):
    """No sleep to aim at: the child trains flat out and writes `last` after every step (and
    `best` often), and SIGKILL comes after a random delay, so it lands inside a step or inside a
    checkpoint write, wherever the child happens to be. Each time, every checkpoint file left
    loads, and the run resumes from it; in the end the losses and checkpoints are the
    uninterrupted run's, and no temporary file is left."""
    from seqlab.checkpoint import load_checkpoint

    callbacks = [
        {"class_path": "GradientClip", "init_args": {"max_norm": 1.0}},
        {"class_path": "MovingAverageCheckpoint", "init_args": {"window": 1}},
    ]
    # Enough steps that four kills (each at most 0.6 s into training) cannot reach the end on a
    # fast, idle machine: a step here saves a checkpoint, so it takes milliseconds, not less.
    STEPS = 600
    recipe = write_recipe(
        tmp_path,
        {"mlp": {"model": MODELS["mlp"]}},
        slow=0.0,
        max_steps=STEPS,
        save_every=1,
        val_every=100,
        callbacks=callbacks,
    )
    straight = fit("--recipe", recipe, "--trainer.root_dir", tmp_path / "straight")
    assert straight.returncode == 0, straight.stderr
    root = tmp_path / "killed"
    ckpts = root / "faults/mlp/checkpoints"
    draw = random.Random()
    seed = draw.randrange(2**32)
    draw.seed(seed)
    kills = []
    for i in range(4):
        resume = ["--ckpt_path", "last"] if i else []
        job = Seqlab("fit", "--recipe", recipe, "--trainer.root_dir", root, *resume)
        # From step 2 on, step 1's checkpoint is whole: it trains and saves after every step.
        first = job.wait_for(lambda line: _step_of(line) >= 2, allow_exit=True)
        if first is None:  # it resumed so near the end that it finished before a step line
            assert job.proc.wait(timeout=30) == 0, (seed, job.proc.stderr.read())
            break
        time.sleep(draw.uniform(0.05, 0.6))
        job.proc.send_signal(signal.SIGKILL)
        code = job.proc.wait(timeout=30)
        if code != -signal.SIGKILL:  # finished before the kill: the draw was too late
            break
        names = sorted(p.name for p in ckpts.iterdir())
        kills.append((_step_of(first), load_checkpoint(ckpts / "last.safetensors")["step"], names))
        for name in names:  # whatever is there: a whole checkpoint, or a temp file never taken for one
            if not name.endswith(".tmp"):
                assert load_checkpoint(ckpts / name)["step"] >= 1, (seed, name)
    assert len(kills) >= 2, (seed, kills)
    assert kills[-1][1] < STEPS, (seed, kills)
    done = fit("--recipe", recipe, "--trainer.root_dir", root, "--ckpt_path", "last")
    assert done.returncode == 0, (seed, done.stderr)
    _, rows = csv_rows(root / "faults/mlp")
    _, straight_rows = csv_rows(tmp_path / "straight/faults/mlp")
    assert [int(r["step"]) for r in rows] == list(range(1, STEPS + 1)), seed
    assert [r["loss"] for r in rows] == [r["loss"] for r in straight_rows], seed
    assert_same_checkpoints(ckpts, tmp_path / "straight/faults/mlp/checkpoints")
    print(f"random kills (seed {seed}): (first step seen, last saved step, files) {kills}")


def test_a_signal_during_the_first_forward_is_reported_as_the_signal(tmp_path):
    """A SIGINT that lands in preflight's first forward pass stays a TrainingInterrupted (exit 130,
    "stopped by SIGINT"), not "the model cannot read the task's rows"."""
    import signal

    import paddle

    from seqlab.interrupts import TrainingInterrupted
    from seqlab.preflight import check_forward
    from seqlab.tasks.reverse_digits import ReverseDigits

    class Interrupted(paddle.nn.Layer):
        vocab_size = 14

        def forward(self, tokens):
            raise TrainingInterrupted(
                signal.SIGINT, "stopped by SIGINT outside training; nothing was left half-written."
            )

    task = ReverseDigits(digit_max=8, seq_len=33, batch_size=2, eval_samples=4, probe_samples=1)
    with pytest.raises(TrainingInterrupted, match="stopped by SIGINT"):
        check_forward(task, Interrupted(), "mlp")
