"""``--executor ray`` on a real Ray cluster of two nodes on this machine, 1 CPU each.

The head runs in this process (``ray.cluster_utils.Cluster``); the second node is ``ray start
--block`` in a mount namespace of its own, where a tmpfs covers the runs folder: what a point
writes there is invisible here, as on a worker whose disk is not shared. So every assertion on a
point's files here checks that its results came home through Ray.

The cluster tests need the ``ray`` extra: they carry the ``ray`` marker, which the default runs
leave out, and ``make test-ray`` (CI) installs Ray and runs them. Each test says what it costs.
The first test, Ray's absence, runs in the default suite.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml
from tiny import LSTM, MLP, SEQLAB, TRAINER, tiny_recipe

# 127.0.0.2, not 127.0.0.1: Ray turns "127.0.0.1" into this machine's network address, and these
# tests keep every packet on the loopback device.
HOST = "127.0.0.2"
RECIPE = tiny_recipe({"mlp": MLP, "lstm": LSTM}, trainer={**TRAINER, "log_every": 1})
GRID = ["--grid", "trainer.optimizer.lr=1e-3,3e-3"]  # 2 models x 2 learning rates: 4 points
ON = re.compile(
    r"^\[(?P<label>[^\]]+?) *\] on .*Ray node (?P<node>[0-9a-f]+) .*Ray worker pid (?P<pid>\d+), folder (?P<folder>.+)$"
)


def env():
    return dict(os.environ, PYTHONWARNINGS="ignore", PYTHONUNBUFFERED="1")


class TwoNodes:
    """The cluster: ``address`` to join, ``runs`` (private to the second node), its teardown."""

    def __init__(self, base: Path):
        self.base = base
        self.runs = base / "runs"  # each test sweeps into a folder of its own under it
        self.runs.mkdir()
        # Ray's socket paths must stay under 107 characters: a short folder of its own in /tmp.
        self.temp = Path(tempfile.mkdtemp(prefix="sl-ray-", dir="/tmp"))
        # Ray keeps its session files (and the address of the newest cluster) in $RAY_TMPDIR,
        # else $TMPDIR/ray: this cluster's own folder, for every process of these tests.
        self.saved_tmpdir = os.environ.get("RAY_TMPDIR")
        os.environ["RAY_TMPDIR"] = str(self.temp)
        self.cluster = self.node = self.log = None
        try:
            self._start(base)
        except BaseException:  # a cluster that did not come up is still taken down, whole
            self.close()
            raise

    def _start(self, base):
        import ray
        from ray.cluster_utils import Cluster

        self.cluster = Cluster(
            initialize_head=True,
            head_node_args={
                "num_cpus": 1,
                "object_store_memory": 100 * 2**20,
                "include_dashboard": False,
                "node_ip_address": HOST,
                "temp_dir": str(self.temp / "ray"),  # where $RAY_TMPDIR points the others
            },
        )
        self.address = self.cluster.address
        ray_cli = Path(sys.executable).with_name("ray")
        self.log = open(base / "node2.log", "w")  # noqa: SIM115  (closed in close())
        self.node = subprocess.Popen(
            [
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                f'mount -t tmpfs seqlab-test "{self.runs}" && exec "{ray_cli}" start --block '
                f"--address {self.address} --node-ip-address {HOST} --num-cpus 1 "
                "--object-store-memory 100000000",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=env(),
            start_new_session=True,  # its processes are found (and ended) by this session id
        )
        ray.init(address=self.address, log_to_driver=False)
        try:
            deadline = time.monotonic() + 120
            while len([n for n in ray.nodes() if n["Alive"]]) < 2:
                assert self.node.poll() is None, (base / "node2.log").read_text()[-3000:]
                assert time.monotonic() < deadline, "the second Ray node did not join in 120 s"
                time.sleep(0.5)
        finally:
            ray.shutdown()

    def is_head(self, node: str) -> bool:
        """Whether the node of an "on ... Ray node ID" line is the head: its files are this disk's."""
        return self.cluster.head_node.node_id.startswith(node)

    def close(self):
        """Take down what was started: also a half-started cluster (a node that never joined)."""
        if self.node is not None:
            self.node.send_signal(signal.SIGTERM)  # `ray start --block` drains, then stops its node
            try:
                self.node.wait(60)
            except subprocess.TimeoutExpired:
                self.node.kill()
            for pid in _session_members(self.node.pid):  # anything of that node left behind
                _kill(pid)
        if self.cluster is not None:
            self.cluster.shutdown()
        if self.log is not None:
            self.log.close()
        if self.saved_tmpdir is None:
            os.environ.pop("RAY_TMPDIR", None)
        else:
            os.environ["RAY_TMPDIR"] = self.saved_tmpdir
        shutil.rmtree(self.temp, ignore_errors=True)


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory):
    nodes = TwoNodes(tmp_path_factory.mktemp("ray"))
    try:
        yield nodes
    finally:
        nodes.close()


def _session_members(sid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getsid(int(entry.name)) == sid:
                    out.append(int(entry.name))
            except OSError:
                continue
    return out


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass


def _processes_naming(path: Path) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and str(path).encode() in (entry / "cmdline").read_bytes():
                out.append(int(entry.name))
        except OSError:
            continue
    return out


def _fit_processes(root: Path) -> list[int]:
    """Processes training into ``root``: ``seqlab.cli fit`` with ``root`` on their command line."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"seqlab.cli" in cmdline and b"fit" in cmdline and any(str(root).encode() in a for a in cmdline):
            out.append(int(entry.name))
    return out


def _losses(folder: Path) -> list[str]:
    """The training losses of a run, as written: compared as text, so bit for bit."""
    with open(folder / "metrics.csv") as f:
        return [row["loss"] for row in csv.DictReader(f) if row["loss"]]


def _test_metrics(folder: Path) -> dict:
    data = json.loads((folder / "metrics.json").read_text())
    return {k: data[k] for k in ("loss", "masked_acc", "exact_acc", "probe_masked_acc", "steps", "params")}


def _sweep_command(recipe: Path, root: Path, *extra: str, grid: list[str] = GRID) -> list[str]:
    return [*SEQLAB, "sweep", "--recipe", str(recipe), *grid, "--trainer.root_dir", str(root), *extra]


STEP = re.compile(r"^\[(?P<label>[^\]]+?) *\] step (?P<step>\d+)/")
# Long enough runs of the MLP to act on while they train: a checkpoint every 50 steps.
LONG = ["--runs", "mlp", "--trainer.log_every", "10", "--trainer.val_every", "1000", "--trainer.save_every", "50"]


class Lines:
    """A running sweep's stdout, read line by line in a thread (the test acts on what it reads)."""

    def __init__(self, proc: subprocess.Popen):
        import queue
        import threading

        self.proc, self.lines, self.queue, self.done = proc, [], queue.Queue(), False
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.queue.put(line.rstrip("\n"))
        self.queue.put(None)

    def __iter__(self):
        import queue

        while not self.done:
            try:
                line = self.queue.get(timeout=300)
            except queue.Empty:
                raise AssertionError("the sweep printed nothing for 300 s:\n" + "\n".join(self.lines[-40:])) from None
            if line is None:
                self.done = True
                return
            self.lines.append(line)
            yield line

    def rest(self) -> str:
        list(self)
        return "\n".join(self.lines)


@pytest.fixture
def recipe(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(RECIPE))
    return path


def test_without_ray_the_executor_is_one_sentence_that_says_how_to_install_it(recipe, tmp_path):
    """~5 s. ``import ray`` fails in this child (``sys.modules["ray"] = None``, as when it is not
    installed): exit 2, one line naming the extra, and nothing trained or written."""
    code = (
        "import sys; sys.modules['ray'] = None; from seqlab.cli import main; "
        f"sys.exit(main(['sweep', '--recipe', {str(recipe)!r}, *{GRID!r}, '--trainer.root_dir', "
        f"{str(tmp_path / 'runs')!r}, '--executor', 'ray']))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env())
    assert result.returncode == 2, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install 'seqlab[ray]'" in lines[0], result.stderr
    assert not (tmp_path / "runs").exists()
    # Ray's flags without --executor ray are a mistake too, said as plainly.
    code = code.replace("'--executor', 'ray'", "'--ray_num_cpus', '2'")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env())
    assert result.returncode == 2 and "need --executor ray" in result.stderr, result.stderr[-3000:]


@pytest.mark.ray
def test_ray_with_data_parallel_devices_is_refused_before_anything_is_written(run_seqlab, recipe, tmp_path):
    """--executor ray runs a run as one task: it cannot also launch --trainer.devices 2 ranks."""
    root = tmp_path / "runs"
    code, out, err = run_seqlab(
        "fit",
        "--recipe",
        recipe,
        "--runs",
        "mlp",
        "--executor",
        "ray",
        "--trainer.devices",
        "2",
        "--trainer.root_dir",
        root,
    )
    assert code == 2 and len(err) == 1 and "--trainer.devices 1" in err[0], err
    assert not root.exists()


@pytest.mark.ray
def test_a_sweep_on_two_nodes_equals_the_local_executor_bit_for_bit(two_nodes, recipe, tmp_path):
    """~1 min: the same 2x2 sweep with local children and on the cluster, one thread per point."""
    local_root = tmp_path / "local"
    local = subprocess.run(
        _sweep_command(recipe, local_root, "--parallel", "2"), capture_output=True, text=True, timeout=600, env=env()
    )
    assert local.returncode == 0, local.stderr[-3000:]
    ray_root = two_nodes.runs / "equal"
    on_ray = subprocess.run(
        _sweep_command(recipe, ray_root, "--executor", "ray", "--ray_address", two_nodes.address),
        capture_output=True,
        text=True,
        timeout=600,
        env=env(),
    )
    assert on_ray.returncode == 0, on_ray.stdout[-3000:] + on_ray.stderr[-3000:]
    starts = [m.groupdict() for m in map(ON.match, on_ray.stdout.splitlines()) if m]
    assert sorted(s["label"] for s in starts) == sorted(p.name for p in (local_root / "tiny/sweep").glob("*-seed42"))
    # Both nodes trained points; the second node's checkpoints never reached this disk.
    on_head = {s["label"] for s in starts if two_nodes.is_head(s["node"])}
    elsewhere = {s["label"] for s in starts} - on_head
    assert on_head and elsewhere, starts
    for label in elsewhere:
        assert not (ray_root / "tiny/sweep" / label / "checkpoints").exists()
    for label in on_head:
        assert (ray_root / "tiny/sweep" / label / "checkpoints/last.safetensors").is_file()
    for point in sorted((local_root / "tiny/sweep").glob("*-seed42")):
        there = ray_root / "tiny/sweep" / point.name
        assert _losses(there) == _losses(point), point.name
        assert _test_metrics(there) == _test_metrics(point), point.name
        assert (
            json.loads((there / "metrics.json").read_text())["val"]
            == json.loads((point / "metrics.json").read_text())["val"]
        )
        assert (there / "config.yaml").read_text() == (point / "config.yaml").read_text().replace(
            str(local_root), str(ray_root)
        )
    # The report was built here, from the files that came home.
    local_results = json.loads((local_root / "tiny/sweep/results.json").read_text())
    ray_results = json.loads((ray_root / "tiny/sweep/results.json").read_text())
    assert [s["val"] for s in ray_results["settings"]] == [s["val"] for s in local_results["settings"]]
    assert (ray_root / "tiny/sweep/report.md").is_file()
    # Run again: every point is finished, so none is submitted.
    again = subprocess.run(
        _sweep_command(recipe, ray_root, "--executor", "ray", "--ray_address", two_nodes.address),
        capture_output=True,
        text=True,
        timeout=600,
        env=env(),
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert "4 finished before, 0 to train" in again.stdout + again.stderr
    assert not ON.search(again.stdout)


@pytest.mark.ray
def test_a_killed_worker_is_retried_from_its_checkpoint_and_a_second_death_is_reported(two_nodes, recipe, tmp_path):
    """~1.5 min. Two points train at once, one per node. The first point's Ray worker is killed
    (kill -9) after its checkpoint at step 50: it is tried again, from that checkpoint where the
    retry's node sees it, and ends as an uninterrupted run does, bit for bit. The other point's
    worker is killed, then its retry's too: it is reported failed, the report is still written,
    and the sweep exits 2."""
    steps = ["--trainer.max_steps", "1500"]
    local_root = tmp_path / "local"
    local = subprocess.run(
        _sweep_command(recipe, local_root, *LONG, *steps, "--parallel", "2"),
        capture_output=True,
        text=True,
        timeout=600,
        env=env(),
    )
    assert local.returncode == 0, local.stderr[-3000:]
    root = two_nodes.runs / "faults"
    proc = subprocess.Popen(
        _sweep_command(recipe, root, *LONG, *steps, "--executor", "ray", "--ray_address", two_nodes.address),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env(),
    )
    lines = Lines(proc)
    attempts: dict[str, list[dict]] = {}  # label -> its starts ("on" lines), in order
    killed: dict[str, int] = {}  # label -> how many of its attempts were killed
    retried = survivor = None
    try:
        for line in lines:
            if m := ON.match(line):
                attempts.setdefault(m["label"], []).append(m.groupdict())
                continue
            m = STEP.match(line)
            if not m:
                continue
            label, step = m["label"], int(m["step"])
            tries = attempts.get(label, [])
            if len(tries) != killed.get(label, 0) + 1:
                continue  # a line of an attempt already killed
            if retried is None and step >= 60:  # the first point past its first checkpoint
                retried = label
            if label == retried and not killed.get(label):
                os.kill(int(tries[-1]["pid"]), signal.SIGKILL)
                killed[label] = 1
            elif label != retried and retried is not None and killed.get(label, 0) < 2:
                survivor = label  # named for what it is not: it will not survive
                os.kill(int(tries[-1]["pid"]), signal.SIGKILL)
                killed[label] = killed.get(label, 0) + 1
        out = lines.rest()
        _, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert retried and survivor and killed == {retried: 1, survivor: 2}, (killed, out[-3000:])
    assert proc.returncode == 2, stderr[-3000:]
    assert f"{survivor} (its Ray worker died again (" in stderr, stderr[-3000:]
    assert "failed (their lines above say why)" in stderr
    first, second = attempts[retried]
    resumed = [line for line in out.splitlines() if line.startswith(f"[{retried}") and "resumed" in line]
    if first["node"] == second["node"]:  # the retry saw the checkpoint: it resumed from step 50 or later
        assert resumed, out[-3000:]
    else:  # another node, which never saw the folder: it started over
        assert not resumed, out[-3000:]
    sweep_dir = root / "tiny/sweep"
    assert _test_metrics(sweep_dir / retried) == _test_metrics(local_root / "tiny/sweep" / retried)
    assert not (sweep_dir / survivor / "metrics.json").exists()
    assert (sweep_dir / "report.md").is_file()  # written all the same, from the finished point
    assert not _fit_processes(root)


@pytest.mark.ray
def test_sigint_stops_every_run_and_cancels_the_queued_one(two_nodes, recipe):
    """~40 s. Three points on two CPUs: two train, one waits in Ray's queue. Ctrl-C on the sweep:
    the running ones save and stop, the queued one never starts, and no process trains after the
    sweep has exited (130)."""
    root = two_nodes.runs / "sigint"
    grid = ["--grid", "trainer.optimizer.lr=1e-3,2e-3,3e-3"]
    proc = subprocess.Popen(
        _sweep_command(
            recipe,
            root,
            *LONG,
            "--trainer.max_steps",
            "100000",
            "--executor",
            "ray",
            "--ray_address",
            two_nodes.address,
            grid=grid,
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env(),
    )
    lines = Lines(proc)
    started: dict[str, dict] = {}
    training: set[str] = set()
    try:
        for line in lines:
            if m := ON.match(line):
                started[m["label"]] = m.groupdict()
            elif (m := STEP.match(line)) and int(m["step"]) >= 60:
                training.add(m["label"])
            if len(training) == 2:
                break
        proc.send_signal(signal.SIGINT)
        out = lines.rest()
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr[-3000:]
    assert "resume with: seqlab sweep" in stderr
    assert len(started) == 2, started  # the third point was cancelled before it started
    assert not _fit_processes(root), "a run still trains after the sweep exited"
    for label, where in started.items():
        assert f"[{label}" in out and "stopped by SIGINT" in out, out[-3000:]
        if two_nodes.is_head(where["node"]):  # its folder is this disk: the checkpoint is here
            assert (root / "tiny/sweep" / label / "checkpoints/last.safetensors").is_file()


@pytest.mark.ray
def test_a_recipes_runs_fit_on_the_cluster_and_the_report_is_built_here(two_nodes, recipe):
    """~40 s. ``seqlab fit --executor ray``: the recipe's two runs as Ray tasks, one per node;
    both runs' files are here afterwards, and so is the recipe's report."""
    root = two_nodes.runs / "fit"
    result = subprocess.run(
        [
            *SEQLAB,
            "fit",
            "--recipe",
            str(recipe),
            "--trainer.root_dir",
            str(root),
            "--executor",
            "ray",
            "--ray_address",
            two_nodes.address,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=env(),
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    starts = [m.groupdict() for m in map(ON.match, result.stdout.splitlines()) if m]
    assert sorted(s["label"] for s in starts) == ["lstm", "mlp"]
    for run in ("mlp", "lstm"):
        assert _test_metrics(root / "tiny" / run)["steps"] == TRAINER["max_steps"]
        assert (root / "tiny" / run / "metrics.csv").is_file()
    report = (root / "tiny/report.md").read_text()
    assert "mlp" in report and "lstm" in report


@pytest.mark.ray
def test_without_an_address_a_local_ray_is_started_for_the_command_and_stopped_after(recipe, tmp_path):
    """~30 s. No --ray_address and no RAY_ADDRESS: the sweep starts a Ray of its own on this
    machine, trains on it, and leaves no Ray process behind (each carries its session folder,
    under $RAY_TMPDIR, on its command line)."""
    ray_tmp = Path(tempfile.mkdtemp(prefix="sl-ray-", dir="/tmp"))  # short: Ray's socket paths
    try:
        own = {k: v for k, v in env().items() if k != "RAY_ADDRESS"}
        result = subprocess.run(
            _sweep_command(recipe, tmp_path / "runs", "--runs", "mlp", "--executor", "ray"),
            capture_output=True,
            text=True,
            timeout=600,
            env=dict(own, RAY_TMPDIR=str(ray_tmp)),
        )
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        assert "2 jobs on a local Ray" in result.stdout + result.stderr
        assert len(list((tmp_path / "runs/tiny/sweep").glob("*/metrics.json"))) == 2
        assert any(ray_tmp.rglob("session_*")), "the command's Ray did not use $RAY_TMPDIR"
        deadline = time.monotonic() + 10  # a process that is ending may take a moment to go
        while (leftovers := _processes_naming(ray_tmp)) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not leftovers, f"Ray processes left running: {leftovers}"
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
