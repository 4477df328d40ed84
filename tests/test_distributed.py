"""Real multi-process training through `paddle.distributed.launch` (gloo on CPU), via the CLI.

One set of runs (a module fixture) serves every test: RWKV-7 on 2 processes and on 1, resumed
onto the other process count; the MLP through the launch command a user types; a killed rank.
Each rank's file writes are recorded by a Python audit hook (a sitecustomize on PYTHONPATH), and
a probe callback records each rank's rows and final weights.
"""

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from support import live_pids
from tiny import SEQLAB, TASK

SEQLAB_SCRIPT = Path(sys.executable).parent / "seqlab"  # the console script a user runs

# Records every file write of a process, per rank, through Python's audit hooks.
SITECUSTOMIZE = """
import os, sys
_log = os.environ.get("AUDIT_DIR")
if _log:
    _rank = os.environ.get("PADDLE_TRAINER_ID", "single")
    _path = os.path.join(_log, f"rank{_rank}.{os.getpid()}.log")
    _out = open(_path, "a", buffering=1)
    def _hook(event, args):
        if event == "open":
            path, mode = args[0], args[1] or "r"
            if isinstance(path, str) and any(c in str(mode) for c in "wax+"):
                _out.write(f"open {path}\\n")
        elif event in ("os.rename", "os.mkdir", "os.remove", "shutil.rmtree", "os.rmdir"):
            _out.write(f"{event} {args[0]} {args[1] if event == 'os.rename' else ''}\\n")
    sys.addaudithook(_hook)
"""

PROBE = '''
import hashlib, json, os
import numpy as np
from seqlab import Callback


class RankProbe(Callback):
    """Records this rank's rows at every step and a digest of its final weights."""

    def __init__(self):
        self.rows = {}

    def on_train_batch_start(self, trainer, task, model, batch):
        self.rows[trainer.global_step] = batch.inputs.numpy().tolist()

    def on_train_end(self, trainer, task, model):
        digest = hashlib.sha256()
        for key, value in sorted(model.state_dict().items()):
            digest.update(key.encode() + value.numpy().tobytes())
        out = os.path.join(os.environ["PROBE_DIR"], f"rank{trainer.rank}.json")
        with open(out, "w") as f:
            json.dump({"rows": self.rows, "weights": digest.hexdigest(), "world": trainer.world_size}, f)


class SlowSteps(Callback):
    """Makes each step last longer than the launcher's 0.2 s between its SIGTERMs."""

    def __init__(self, seconds: float = 0.4):
        self.seconds = seconds

    def on_train_batch_end(self, trainer, task, model, metrics):
        import time

        time.sleep(self.seconds)


class HangOnRank1(Callback):
    """Rank 1 hangs for real after step ``step`` (outside any collective, as a stuck data loader
    or a deadlocked op would), noting the moment in PROBE_DIR/hang.json."""

    def __init__(self, step: int = 3):
        self.step = step

    def on_train_batch_end(self, trainer, task, model, metrics):
        import time

        if trainer.rank == 1 and trainer.global_step == self.step:
            out = os.path.join(os.environ["PROBE_DIR"], "hang.json")
            with open(out, "w") as f:
                json.dump({"step": trainer.global_step, "at": time.time(), "pid": os.getpid()}, f)
            while True:
                time.sleep(3600)


class StopOnRank1(Callback):
    """Asks for a stop on rank 1 only, after step 2: every rank must still end at that step."""

    def on_train_batch_end(self, trainer, task, model, metrics):
        if trainer.rank == 1 and trainer.global_step == 2:
            trainer.should_stop = True
'''


def _recipe(folder: Path) -> Path:
    (folder / "ddprobe.py").write_text(PROBE)
    recipe = {
        "name": "dist",
        "task": TASK,
        # The schedule is fixed at 12 steps, so a run stopped at 6 and resumed is one curve.
        "trainer": {
            "max_steps": 6,
            "val_every": 3,
            "save_every": 3,
            "log_every": 1,
            "optimizer": {"lr": 3e-3},
            "callbacks": [
                {"class_path": "CosineWarmupLR", "init_args": {"warmup_steps": 2, "max_steps": 12}},
                {"class_path": "GradientClip", "init_args": {"max_norm": 1.0}},
                {"class_path": "ddprobe.RankProbe"},
            ],
        },
        "runs": {
            "rwkv7": {"model": "rwkv7"},
            "mlp": {"model": {"class_path": "mlp", "init_args": {"embed_dim": 8, "window": 4, "hidden_dim": 16}}},
        },
    }
    path = folder / "dist.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


class Env:
    def __init__(self, folder: Path):
        self.folder = folder
        self.site = folder / "site"
        self.site.mkdir()
        (self.site / "sitecustomize.py").write_text(SITECUSTOMIZE)
        self.recipe = _recipe(folder)

    def env(self, name: str) -> dict:
        audit, probe = self.folder / "audit" / name, self.folder / "probe" / name
        audit.mkdir(parents=True, exist_ok=True)
        probe.mkdir(parents=True, exist_ok=True)
        return dict(
            os.environ,
            PYTHONPATH=os.pathsep.join([str(self.site), os.environ.get("PYTHONPATH", "")]),
            AUDIT_DIR=str(audit),
            PROBE_DIR=str(probe),
            PYTHONWARNINGS="ignore",
            SEQLAB_NUM_THREADS="1",
        )

    def fit(self, name: str, root: str, *args, launch: bool = False) -> subprocess.CompletedProcess:
        base = [*SEQLAB, "fit"]
        if launch:  # the command of the issue, as a user types it
            base = [
                sys.executable,
                "-m",
                "paddle.distributed.launch",
                "--nproc_per_node",
                "2",
                "--log_dir",
                str(self.folder / "launchlog" / name),
                str(SEQLAB_SCRIPT),
                "fit",
            ]
        cmd = [*base, "--recipe", str(self.recipe), "--trainer.root_dir", str(self.folder / root), *map(str, args)]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=self.env(name))
        assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
        return result


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    e = Env(tmp_path_factory.mktemp("dist"))
    e.fit("rwkv7_2p", "two", "--runs", "rwkv7", "--trainer.devices", 2)
    e.fit("rwkv7_1p", "one", "--runs", "rwkv7")
    shutil.copytree(e.folder / "one", e.folder / "one_to_two")
    shutil.copytree(e.folder / "two", e.folder / "two_to_one")
    e.fit("rwkv7_1p_12", "one", "--runs", "rwkv7", "--ckpt_path", "last", "--trainer.max_steps", 12)
    e.fit("rwkv7_2to1", "two_to_one", "--runs", "rwkv7", "--ckpt_path", "last", "--trainer.max_steps", 12)
    e.fit(
        "rwkv7_1to2",
        "one_to_two",
        "--runs",
        "rwkv7",
        "--ckpt_path",
        "last",
        "--trainer.max_steps",
        12,
        "--trainer.devices",
        2,
    )
    e.fit("mlp_launch", "launch", "--runs", "mlp", "--trainer.val_every", 1000, launch=True)
    e.fit("mlp_1p", "one", "--runs", "mlp", "--trainer.val_every", 1000)
    return e


def losses(folder: Path, run: str) -> dict[int, float]:
    with open(folder / "dist" / run / "metrics.csv", newline="") as f:
        return {int(r["step"]): float(r["loss"]) for r in csv.DictReader(f) if r.get("loss")}


def writes(audit: Path, rank: str) -> list[str]:
    return [ln for p in audit.glob(f"rank{rank}.*.log") for ln in p.read_text().splitlines()]


@pytest.mark.slow  # several processes or a whole recipe: `make test-slow` (CI runs it)
@pytest.mark.parametrize("name, root", [("rwkv7_2p", "two"), ("mlp_launch", "launch")])
def test_only_rank_0_writes(runs, name, root):
    out = str(runs.folder / root)
    rank1 = [w for w in writes(runs.folder / "audit" / name, "1") if out in w]
    rank0 = [w for w in writes(runs.folder / "audit" / name, "0") if out in w]
    assert rank1 == []  # not the report, config.yaml, the CSV, VisualDL, metrics.json, samples.txt
    for produced in (
        "report.md",
        "loss.png",
        "config.yaml",
        "metrics.csv",
        "vdlrecords",
        "metrics.json",
        "samples.txt",
        "last.safetensors",
    ):
        assert any(produced in w for w in rank0), produced
    assert len(list((runs.folder / root / "dist").glob("report.md"))) == 1


@pytest.mark.slow  # several processes or a whole recipe: `make test-slow` (CI runs it)
def test_both_ranks_train_their_own_rows_and_end_identical(runs):
    from seqlab.tasks.reverse_digits import ReverseDigits

    probe = runs.folder / "probe" / "rwkv7_2p"
    rank0, rank1 = (json.loads((probe / f"rank{r}.json").read_text()) for r in (0, 1))
    assert rank0["world"] == rank1["world"] == 2
    task = ReverseDigits(**TASK["init_args"])
    task.setup(42)
    for step in range(6):
        full = task.train_batch(step).inputs.numpy()
        a, b = np.array(rank0["rows"][str(step)]), np.array(rank1["rows"][str(step)])
        assert a.shape == b.shape == (4, 32)  # half the global batch each
        np.testing.assert_array_equal(a, full[0::2])
        np.testing.assert_array_equal(b, full[1::2])  # different rows: together, the whole batch
    assert rank0["weights"] == rank1["weights"]  # parameters identical across ranks at the end


@pytest.mark.slow  # several processes or a whole recipe: `make test-slow` (CI runs it)
@pytest.mark.parametrize("run, two, one", [("rwkv7", "two", "one"), ("mlp", "launch", "one")])
def test_one_and_two_processes_follow_the_same_losses(runs, run, two, one):
    a, b = losses(runs.folder / two, run), losses(runs.folder / one, run)
    steps = range(1, 7)
    assert [s for s in steps if s in a] == list(steps)
    # From step 2 on, equal losses need equal updates: with each rank stepping on its own half's
    # gradient (no all-reduce), or on the whole batch, they would drift apart.
    np.testing.assert_allclose([a[s] for s in steps], [b[s] for s in steps], rtol=1e-5)


@pytest.mark.slow  # several processes or a whole recipe: `make test-slow` (CI runs it)
@pytest.mark.parametrize("resumed", ["two_to_one", "one_to_two"])
def test_resume_onto_another_process_count_continues_the_curve(runs, resumed):
    straight, other = losses(runs.folder / "one", "rwkv7"), losses(runs.folder / resumed, "rwkv7")
    assert sorted(other) == list(range(1, 13))
    np.testing.assert_allclose([other[s] for s in range(7, 13)], [straight[s] for s in range(7, 13)], rtol=1e-5)


def _rank_pids(marker: str, rank: str) -> list[int]:
    return live_pids(marker, f"PADDLE_TRAINER_ID={rank}")


@pytest.mark.slow  # several processes or a whole recipe: `make test-slow` (CI runs it)
def test_a_killed_rank_ends_the_run_with_a_message_naming_it(tmp_path):
    e = Env(tmp_path)
    cmd = [
        *SEQLAB,
        "fit",
        "--recipe",
        str(e.recipe),
        "--runs",
        "mlp",
        "--trainer.devices",
        "2",
        "--trainer.max_steps",
        "100000",
        "--trainer.root_dir",
        str(tmp_path / "runs"),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=e.env("dead"))
    deadline = time.monotonic() + 180
    while not (tmp_path / "runs/dist/mlp/metrics.csv").exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    victims = _rank_pids(str(e.recipe), "1")
    assert len(victims) == 1, "rank 1 is running"
    os.kill(victims[0], signal.SIGKILL)
    killed = time.monotonic()
    stdout, stderr = proc.communicate(timeout=120)
    took = time.monotonic() - killed
    assert proc.returncode == 1, stderr
    assert took < 60, took
    lines = [ln for ln in stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "rank 1 of 2 was killed by SIGKILL, so every rank was stopped" in lines[0], stderr
    assert _rank_pids(str(e.recipe), "0") == []  # no rank left behind
    print(f"dead rank: the run ended {took:.1f} s after the kill")


def _losses(csv_path: Path) -> dict[int, str]:
    with open(csv_path) as f:
        return {int(row["step"]): row["loss"] for row in csv.DictReader(f)}


@pytest.mark.slow  # several processes or a whole recipe: `make test-slow` (CI runs it)
def test_sigterm_to_a_data_parallel_run_saves_once_and_resumes_exactly(tmp_path):
    # paddle.distributed.launch stops its ranks with SIGTERM up to 3 times, 0.2 s apart. A rank
    # used to take the second one as "abort without saving", while seqlab said every rank saved.
    e = Env(tmp_path)
    recipe = yaml.safe_load(e.recipe.read_text())
    recipe["trainer"].update(max_steps=30, save_every=1000, val_every=10)
    recipe["trainer"]["callbacks"][0]["init_args"]["max_steps"] = 30
    recipe["trainer"]["callbacks"].append({"class_path": "ddprobe.SlowSteps", "init_args": {"seconds": 0.4}})
    path = tmp_path / "slow.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    args = [*SEQLAB, "fit", "--recipe", str(path), "--runs", "mlp", "--trainer.devices", "2", "--no_report"]
    straight = subprocess.run(
        [*args, "--trainer.root_dir", str(tmp_path / "straight")],
        capture_output=True,
        text=True,
        env=e.env("straight"),
        timeout=300,
    )
    assert straight.returncode == 0, straight.stderr
    run = tmp_path / "stopped" / "dist" / "mlp"
    proc = subprocess.Popen(
        [*args, "--trainer.root_dir", str(tmp_path / "stopped")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=e.env("stopped"),
    )
    deadline = time.monotonic() + 180
    while (
        time.monotonic() < deadline and len(_losses(run / "metrics.csv") if (run / "metrics.csv").exists() else {}) < 3
    ):
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, stderr
    assert "every rank saved" in stderr
    from seqlab.checkpoint import load_checkpoint

    stopped_at = int(load_checkpoint(run / "checkpoints" / "last.safetensors")["step"])
    assert 3 <= stopped_at < 30
    resumed = subprocess.run(
        [*args, "--trainer.root_dir", str(tmp_path / "stopped"), "--ckpt_path", "last"],
        capture_output=True,
        text=True,
        env=e.env("resumed"),
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert _losses(run / "metrics.csv") == _losses(tmp_path / "straight" / "dist" / "mlp" / "metrics.csv")


@pytest.mark.slow  # several processes or a whole recipe: `make test-slow` (CI runs it)
def test_no_rank_outlives_a_parent_killed_with_sigkill(tmp_path):
    # The launcher runs in its own session; before it asked for a parent-death signal, it and
    # both ranks went on training as orphans after `kill -9` of seqlab.
    e = Env(tmp_path)
    cmd = [*SEQLAB, "fit", "--recipe", str(e.recipe), "--runs", "mlp", "--trainer.devices", "2"]
    cmd += ["--trainer.max_steps", "100000", "--trainer.root_dir", str(tmp_path / "runs")]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=e.env("orphans"))
    deadline = time.monotonic() + 180
    while not (tmp_path / "runs/dist/mlp/metrics.csv").exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    ranks = _rank_pids(str(e.recipe), "0") + _rank_pids(str(e.recipe), "1")
    assert len(ranks) == 2, "both ranks are training"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed = time.monotonic()
    while live_pids(str(e.recipe)) and time.monotonic() - killed < 30:
        time.sleep(0.2)
    left = live_pids(str(e.recipe))
    for pid in left:  # leave nothing behind for the next test, whatever the verdict
        os.kill(pid, signal.SIGKILL)
    assert left == [], f"{len(left)} processes outlived their parent"
    print(f"parent killed: every rank ended {time.monotonic() - killed:.1f} s later")


@pytest.mark.slow  # several processes or a whole recipe: `make test-slow` (CI runs it)
def test_a_stop_asked_by_one_rank_ends_every_rank_at_that_step(tmp_path):
    """should_stop is reduced across ranks (Lightning's reduce_boolean_decision): a callback that
    stops rank 1 alone would otherwise leave rank 0 waiting in the next step's all-reduce forever."""
    from seqlab.checkpoint import load_checkpoint

    e = Env(tmp_path)
    recipe = yaml.safe_load(e.recipe.read_text())
    recipe["trainer"]["callbacks"] = [{"class_path": f"ddprobe.{name}"} for name in ("RankProbe", "StopOnRank1")]
    e.recipe.write_text(yaml.safe_dump(recipe, sort_keys=False))
    cmd = [*SEQLAB, "fit", "--recipe", str(e.recipe), "--runs", "mlp", "--trainer.devices", "2"]
    cmd += ["--trainer.max_steps", "1000", "--trainer.val_every", "1000", "--trainer.root_dir", str(tmp_path / "runs")]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=e.env("stop"), start_new_session=True
    )
    try:
        _, stderr = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the launcher and both ranks
        proc.communicate()
        pytest.fail("the ranks did not stop together: the run hung")
    assert proc.returncode == 0, stderr[-4000:]
    probe = tmp_path / "probe" / "stop"
    rank0, rank1 = (json.loads((probe / f"rank{r}.json").read_text()) for r in (0, 1))
    assert sorted(rank0["rows"]) == sorted(rank1["rows"]) == ["0", "1"]  # steps 1 and 2 on both ranks
    assert rank0["weights"] == rank1["weights"]
    assert load_checkpoint(tmp_path / "runs/dist/mlp/checkpoints/last.safetensors")["step"] == 2


@pytest.mark.slow  # two ranks and a real hang: ~25 s with seqlab's limit, ~50 s with gloo's (CI runs it)
@pytest.mark.parametrize("limit", ["4", None], ids=["SEQLAB_COLLECTIVE_TIMEOUT", "gloo-timeout"])
def test_a_hung_rank_ends_the_run_within_the_timeout_with_a_line_naming_it(tmp_path, limit):
    """Rank 1 hangs after step 3 while rank 0 goes on into the next collective. With
    SEQLAB_COLLECTIVE_TIMEOUT=4 seqlab stops both ranks itself after 4 s without progress; unset
    (30 minutes), Paddle's gloo timeout (fixed at 30 s on CPU) ends rank 0 first. Either way the
    one error line names rank 1, not rank 0 (whose collective is what failed), and no process
    of the run is left."""
    from seqlab.checkpoint import load_checkpoint

    e = Env(tmp_path)
    recipe = yaml.safe_load(e.recipe.read_text())
    recipe["trainer"]["callbacks"] = [{"class_path": "ddprobe.HangOnRank1", "init_args": {"step": 3}}]
    e.recipe.write_text(yaml.safe_dump(recipe, sort_keys=False))
    cmd = [*SEQLAB, "fit", "--recipe", str(e.recipe), "--runs", "mlp", "--trainer.devices", "2", "--no_report"]
    cmd += ["--trainer.max_steps", "1000", "--trainer.val_every", "1000", "--trainer.save_every", "2"]
    cmd += ["--trainer.root_dir", str(tmp_path / "runs")]
    env = e.env("hang")
    env.pop("SEQLAB_COLLECTIVE_TIMEOUT", None)
    env.pop("PADDLE_PG_TIMEOUT", None)
    if limit:
        env["SEQLAB_COLLECTIVE_TIMEOUT"] = limit
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True
    )
    try:
        _, stderr = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        for pid in live_pids(str(e.recipe)):
            os.kill(pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail("the hung rank was never noticed: the run waited forever")
    ended = time.time()
    hang = json.loads((tmp_path / "probe" / "hang" / "hang.json").read_text())
    took = ended - hang["at"]
    left = live_pids(str(e.recipe))
    for pid in left:  # leave nothing behind for the next test, whatever the verdict
        os.kill(pid, signal.SIGKILL)
    assert left == [], f"{len(left)} processes of the run outlived it"
    assert proc.returncode == 1, stderr[-4000:]
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: rank 1 of 2 hung: "), stderr[-4000:]
    assert "workerlog.1" in lines[0] and lines[0].endswith("--ckpt_path last"), lines[0]
    if limit:
        assert "SEQLAB_COLLECTIVE_TIMEOUT=4" in lines[0], lines[0]
        assert 4 <= took < 25, took  # seqlab's limit, well before gloo's 30 s
    else:
        assert "rank 0 timed out waiting for it" in lines[0], lines[0]
        assert 25 <= took < 90, took
    # The last checkpoint (step 2) is intact: nothing was written after the hang.
    assert load_checkpoint(tmp_path / "runs/dist/mlp/checkpoints/last.safetensors")["step"] == 2
    print(f"hung rank ({limit or 'gloo'}): the run ended {took:.1f} s after the hang")


def test_the_rank_behind_is_named_and_a_bad_timeout_is_one_sentence():
    from seqlab.errors import SeqlabError
    from seqlab.launch import DEFAULT_TIMEOUT_S, behind, collective_timeout

    assert behind({0: 11, 1: 10}) == [1]
    assert behind({0: 7, 1: 9, 2: 7, 3: 9}) == [0, 2]
    assert behind({0: 5, 1: 5}) == []  # nobody is behind: no rank can be blamed
    assert collective_timeout({}) == DEFAULT_TIMEOUT_S == 1800.0
    assert collective_timeout({"PADDLE_PG_TIMEOUT": "120000"}) == 120.0  # Paddle's setting, in ms
    assert collective_timeout({"SEQLAB_COLLECTIVE_TIMEOUT": "7.5", "PADDLE_PG_TIMEOUT": "120000"}) == 7.5
    for bad in ("soon", "0", "-3", "inf"):
        with pytest.raises(SeqlabError, match="SEQLAB_COLLECTIVE_TIMEOUT"):
            collective_timeout({"SEQLAB_COLLECTIVE_TIMEOUT": bad})


def test_the_heartbeat_counts_on_across_trainers_of_one_process(tmp_path):
    """A recipe's runs are Trainers of one process: the second one's count goes on from the
    first's, so a rank that ran more runs is never taken for one that fell behind."""
    from seqlab.distributed import Heartbeat, heartbeat_file, read_heartbeat

    first, second = Heartbeat(1, str(tmp_path)), Heartbeat(1, str(tmp_path))
    assert read_heartbeat(heartbeat_file(tmp_path, 1)) is None
    for _ in range(3):
        first.beat()
    second.beat()
    assert read_heartbeat(heartbeat_file(tmp_path, 1)) == 4
    Heartbeat(0, "").beat()  # no folder: nothing written, nothing raised
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rank1.beat"]


def test_of_ranks_ending_together_the_one_that_aborted_is_not_named_the_cause():
    """A rank killed from outside takes its peers down with it (they abort in the collective),
    sometimes within one 0.1 s poll of the watcher: the abort is then the echo, not the cause."""
    from seqlab.launch import first_cause

    abort, kill = -int(signal.SIGABRT), -int(signal.SIGKILL)
    assert first_cause({0: abort, 1: kill}) == 1
    assert first_cause({0: 1, 1: abort}) == 0  # an error exit comes before an abort
    assert first_cause({0: kill, 1: kill}) == 0  # otherwise the lowest rank
    assert first_cause({3: abort}) == 3
