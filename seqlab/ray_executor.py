"""Several ``seqlab`` commands at once as Ray tasks: the executor of ``--executor ray``.

The sibling of :func:`seqlab.parallel.run_in_children`, with the same contract (each job is a
label and the arguments of one ``seqlab fit``; failures raise :class:`SeqlabError`, a signal
:class:`TrainingInterrupted`), for a sweep or a recipe spread over a Ray cluster. Each job is a
Ray task that asks for ``num_cpus`` CPUs and runs the same ``python -m seqlab.cli fit ...`` a
local child would, as a subprocess on its worker, on that many threads: a point's numbers are
the local executor's, bit for bit, at the same thread count.

Results come home through Ray: a task returns the small files of its run folder (metrics.json,
config.yaml, metrics.csv, samples.txt, the VisualDL records), which this process writes into
its own copy of the folder, so the sweep's report is built here even when the workers' disks are
not shared. Checkpoints stay on the worker (shared storage under ``--trainer.root_dir`` makes
them visible everywhere).

Faults: a task whose worker process dies (kill -9, the OOM killer, a node removed) is submitted
once more, resuming from the run's last checkpoint where the worker sees it; a second death, or
a run that fails by itself, is reported as failed. Ray's own task retries are off: they would
start the run again without ``--ckpt_path last``.

Signals: SIGINT/SIGTERM here cancel every task (``ray.cancel``): a running one stops its run as
Ctrl-C would and ends once the run has saved; a queued one never starts. This process waits for
them before it returns. A run's child dies with its Ray worker (``SEQLAB_PARENT_PID``, see
:func:`seqlab.parallel.die_with_parent`), so no training process outlives the cluster.

Ray is an optional extra (``pip install 'seqlab[ray]'``) and is imported only inside functions,
so seqlab imports without it.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from seqlab.checkpoint.run_dir import LAST, LOCK_FILE, MARKER_FILE, checkpoint_file
from seqlab.errors import SeqlabError, first_line
from seqlab.io import atomic_write_bytes
from seqlab.ops._build import THREADS_FILE, available_cpus
from seqlab.parallel import _PARENT as PARENT_PID_VARIABLE
from seqlab.parallel import raise_for_outcome, relay_to_log

log = logging.getLogger(__name__)

#: The Ray release seqlab's tests ran on; pyproject's ``ray`` extra pins it.
RAY_VERSION = "2.60.0"
#: What a finished run sends home: every file the run and sweep reports read. metrics.json last,
#: since it marks a point finished: a copy cut short never looks done.
RESULT_FILES = (MARKER_FILE, "config.yaml", "metrics.csv", "samples.txt", "metrics.json")
RESULT_FOLDERS = ("vdl",)  # VisualDL records: the run's curves beside the others' on this machine
_MAX_RESULT_BYTES = 64 * 2**20  # a file larger than this stays on the worker (a note says so)
_LOCAL_OBJECT_STORE = 200 * 2**20  # a Ray started here only moves these small files
_FORWARDED_ENV = ("PYTHONWARNINGS", "PYTHONUNBUFFERED", "CI")  # besides every SEQLAB_* setting
_LOCK_WAIT_S = 120.0


def require_ray():
    """``import ray``, or one sentence saying how to install it."""
    try:
        import ray
    except ImportError:
        raise SeqlabError(
            f"--executor ray needs Ray, which is not installed here; install it with "
            f"`pip install 'seqlab[ray]'` (Ray {RAY_VERSION}), or leave out --executor ray to train "
            "in local child processes."
        ) from None
    if ray.__version__ != RAY_VERSION:
        log.warning("Ray %s is installed; seqlab was tested with Ray %s.", ray.__version__, RAY_VERSION)
    return ray


class _Hub:
    """The runs' lines on their way to the submitting process, which takes them every 0.2 s. A Ray
    actor (no CPU), created by :func:`run_on_ray`; while their run trains, tasks only send to it,
    never wait on it (a task blocked in ``ray.get`` lends its CPU to the next task in Ray's queue);
    they wait once, for their last lines, after the run has ended."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def say(self, label: str, lines: list[str]) -> None:
        self.lines.extend((label, line) for line in lines)

    def take(self) -> list[tuple[str, str]]:
        lines, self.lines = self.lines, []
        return lines


def _run_point(
    label: str,
    argv: list[str],
    folder: str,
    cwd: str,
    threads: int,
    env: dict[str, str],
    resume_saved: bool,
    hub: Any,
) -> dict[str, Any]:
    """The Ray task: ``seqlab <argv>`` on this worker, then the run folder's small files.

    ``folder`` is the run folder as the submitting process names it, relative to ``cwd`` (its
    working directory) unless absolute; the run starts in ``cwd`` where this worker has that
    folder, so relative paths land in the same place on shared storage. Returns
    ``{"returncode", "files", "where"}``.
    """
    import ray

    workdir = cwd if os.path.isdir(cwd) else None
    run_dir = Path(workdir or os.getcwd(), folder)
    node = ray.get_runtime_context().get_node_id()
    where = (
        f"{socket.gethostname()}, Ray node {node[:12]} ({ray.util.get_node_ip_address()}), "
        f"Ray worker pid {os.getpid()}, folder {run_dir}"
    )
    # After a worker died, its run's child is still saving (it got SIGHUP) and holds the folder's
    # lock: wait for it, or the retry would be refused as a second writer.
    _wait_for_lock(run_dir / LOCK_FILE)
    if resume_saved and checkpoint_file(run_dir / "checkpoints", LAST).is_file():
        argv = _with_ckpt_path(argv, LAST)
    hub.say.remote(label, [f"on {where}\n"])
    child_env = dict(os.environ, **env)
    child_env.update(
        OMP_NUM_THREADS=str(threads), SEQLAB_NUM_THREADS=str(threads), **{PARENT_PID_VARIABLE: str(os.getpid())}
    )
    child_env.pop(THREADS_FILE, None)  # Ray's scheduler owns the CPUs: no elastic share here
    proc = subprocess.Popen(
        [sys.executable, "-m", "seqlab.cli", *argv],
        cwd=workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=child_env,
        start_new_session=True,  # a signal to this worker's group is not a request to the run
        # Ray's workers block SIGINT, and a child inherits the mask: unblocked, or Ctrl-C never lands.
        preexec_fn=_unblock_signals,
    )
    pump = threading.Thread(target=_send_lines, args=(label, proc.stdout, hub), daemon=True)
    pump.start()
    try:
        _wait(proc)
    except KeyboardInterrupt:  # ray.cancel: stop the run as Ctrl-C would, and wait while it saves
        proc.send_signal(signal.SIGINT)
        while True:
            try:
                proc.wait()
                break
            except KeyboardInterrupt:  # cancelled again: a second Ctrl-C, which aborts the run
                proc.send_signal(signal.SIGINT)
        pump.join(timeout=5)
        raise
    pump.join()
    return {"returncode": proc.returncode, "files": _result_files(run_dir), "where": where}


def _wait(proc: subprocess.Popen) -> None:
    """Until the run ends, in timed waits: ray.cancel's KeyboardInterrupt gets in between them."""
    while proc.poll() is None:
        try:
            proc.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            pass


def _unblock_signals() -> None:
    signal.pthread_sigmask(signal.SIG_SETMASK, [])


def _send_lines(label: str, stream, hub: Any) -> None:
    """Relay the run's lines to the hub, a batch at most every 0.2 s (one call per line is slow).

    The last call is waited for: an actor runs one caller's calls in the order they were made, so
    once it returns every line is at the hub, before the task's result is (the task joins this
    thread first), and the submitter's next ``take`` after that result has them all."""
    import ray

    batch: list[str] = []
    sent = time.monotonic()
    for line in stream:
        batch.append(line)
        if time.monotonic() - sent >= 0.2:
            hub.say.remote(label, batch)
            batch, sent = [], time.monotonic()
    ray.get(hub.say.remote(label, batch))


def _wait_for_lock(path: Path) -> None:
    if not path.is_file():
        return
    deadline = time.monotonic() + _LOCK_WAIT_S
    fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(fd, fcntl.LOCK_UN)
                return
            except OSError:
                if time.monotonic() > deadline:
                    return  # the run itself then says which process holds the folder
                time.sleep(0.2)
    finally:
        os.close(fd)


def _with_ckpt_path(argv: list[str], value: str) -> list[str]:
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--ckpt_path":
            skip = True
        elif not arg.startswith("--ckpt_path="):
            out.append(arg)
    return [*out, "--ckpt_path", value]


def _result_files(run_dir: Path) -> dict[str, bytes]:
    """The files of :data:`RESULT_FILES` and :data:`RESULT_FOLDERS` in ``run_dir``, by relative path."""
    paths = [run_dir / name for name in RESULT_FILES]
    for name in RESULT_FOLDERS:
        if (run_dir / name).is_dir():
            paths[:0] = sorted(p for p in (run_dir / name).rglob("*") if p.is_file())
    files = {}
    for path in paths:
        try:
            if path.is_file() and path.stat().st_size <= _MAX_RESULT_BYTES:
                files[str(path.relative_to(run_dir))] = path.read_bytes()
        except OSError:
            continue  # a file that vanished or cannot be read stays behind; the rest come home
    return files


def bring_home(folder: Path, files: dict[str, bytes]) -> None:
    """Write a task's files into ``folder`` here, in the order sent (metrics.json last). A file
    that already holds the same bytes (shared storage: the worker wrote it here) is left alone."""
    for rel, data in files.items():
        path = folder / rel
        if path.is_file() and path.read_bytes() == data:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, data)


def forwarded_env() -> dict[str, str]:
    """The settings of this process that each run should see on its worker (Ray does not carry
    the submitting environment): every ``SEQLAB_*`` but the per-process ones, and a few of Python's."""
    skip = {PARENT_PID_VARIABLE, THREADS_FILE, "SEQLAB_NUM_THREADS"}
    return {k: v for k, v in os.environ.items() if (k.startswith("SEQLAB_") or k in _FORWARDED_ENV) and k not in skip}


def run_on_ray(
    jobs: list[tuple[str, list[str], str | os.PathLike]],
    resume: str,
    address: str | None = None,
    num_cpus: int = 1,
    resume_saved: bool = False,
    echo: Callable[[str], None] | None = None,
) -> None:
    """Run ``seqlab <argv>`` for each ``(label, argv, run folder)`` as a Ray task of ``num_cpus`` CPUs.

    ``address`` joins that cluster (else ``$RAY_ADDRESS``; without either, a Ray is started for
    this call, on this machine's CPUs, and stopped after it). ``resume_saved``: a run whose
    folder holds a last checkpoint on its worker resumes from it (a sweep's rule); a retry after a
    worker died always does. ``echo`` gets each line of the runs, prefixed with its label, as in
    :func:`~seqlab.parallel.run_in_children`, and so do the raised errors.
    """
    ray = require_ray()
    from ray.exceptions import RayError, RayTaskError, TaskCancelledError

    relay = echo or relay_to_log
    address = address or os.environ.get("RAY_ADDRESS") or None
    try:
        if address:
            ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
        else:
            # "local": never join a cluster that `ray start` left on this machine by accident.
            ray.init(
                address="local",
                num_cpus=max(available_cpus(), num_cpus),
                object_store_memory=_LOCAL_OBJECT_STORE,
                include_dashboard=False,
                log_to_driver=False,
                logging_level=logging.WARNING,
            )
    except (ConnectionError, ValueError, RuntimeError) as exc:
        first = first_line(exc).rstrip(".")
        where = f"the Ray cluster at {address}" if address else "a local Ray"
        raise SeqlabError(
            f"could not start or join {where} ({first}); check --ray_address (or RAY_ADDRESS), "
            "e.g. the HOST:PORT that `ray start --head` printed."
        ) from None
    received: list[int] = []
    # ray.init installed a SIGTERM handler of its own (sys.exit); ours replace it while the runs go.
    previous = {
        sig: signal.signal(sig, lambda signum, frame: received.append(signum))
        for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        width = max((len(label) for label, _, _ in jobs), default=0)
        hub = ray.remote(num_cpus=0)(_Hub).remote()
        task = ray.remote(_run_point).options(num_cpus=num_cpus, max_retries=0)
        cwd, env = os.getcwd(), forwarded_env()
        where = address or "a local Ray"
        log.info(
            "%d jobs on %s, %d CPU(s) each: %s", len(jobs), where, num_cpus, ", ".join(label for label, _, _ in jobs)
        )
        refs: dict[Any, tuple[str, list[str], str, bool]] = {}

        def submit(label: str, argv: list[str], folder: str, retried: bool) -> None:
            ref = task.remote(label, argv, folder, cwd, num_cpus, env, resume_saved or retried, hub)
            refs[ref] = (label, argv, folder, retried)

        for label, argv, folder in jobs:
            submit(label, list(argv), str(folder), False)
        failed: list[tuple[str, str]] = []
        codes: set[int] = set()
        handled = 0

        def show(lines: list[tuple[str, str]]) -> None:
            for label, line in lines:
                relay(f"[{label:<{width}}] {line}")

        while refs:
            if len(received) > handled:
                # A running task stops its run as Ctrl-C would and ends once the run has saved; a
                # queued one never starts. A second signal cancels again: where Ray interrupts the
                # task a second time, the run gets a second SIGINT and aborts (not tested).
                handled = len(received)
                for ref in refs:
                    ray.cancel(ref)
            ready, _ = ray.wait(list(refs), num_returns=1, timeout=0.2)
            show(ray.get(hub.take.remote()))
            for ref in ready:
                label, argv, folder, retried = refs.pop(ref)
                try:
                    result = ray.get(ref)
                except TaskCancelledError:
                    continue  # stopped by a signal here: it saved, or it never started
                except RayTaskError as exc:  # seqlab's task itself failed on the worker
                    failed.append((label, f"its Ray task raised {exc.cause!r}"))
                    continue
                except RayError as exc:  # the worker process or its node died
                    if received:
                        continue
                    if retried:
                        failed.append((label, f"its Ray worker died again ({type(exc).__name__})"))
                        continue
                    relay(
                        f"[{label:<{width}}] its Ray worker died ({type(exc).__name__}); trying it once "
                        "more, from its last checkpoint where the worker sees the run folder\n"
                    )
                    submit(label, argv, folder, True)
                    continue
                code = result["returncode"]
                bring_home(Path(folder), result["files"])
                if code == 0:
                    continue
                if code == -signal.SIGKILL and not retried and not received:  # e.g. the OOM killer
                    relay(f"[{label:<{width}}] its run was killed (SIGKILL); trying it once more\n")
                    submit(label, argv, folder, True)
                    continue
                code = code if code > 0 else 128 - code
                codes.add(code)
                failed.append((label, f"exit {code}"))
        show(ray.get(hub.take.remote()))  # each task's last lines reached the hub before its result
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        ray.shutdown()  # a Ray started here stops; a joined cluster keeps running
    raise_for_outcome(received, [f"{label} ({why})" for label, why in failed], codes, resume, " on its worker")
