"""Several ``seqlab`` commands at once, as child processes that stop cleanly together.

``--parallel N`` (the CPU demo's default) and ``seqlab sweep`` train one run per child process,
N at a time, each with one thread: Paddle's CPU kernels for these small models barely use a
second core, so on a 2-core machine two single-threaded runs at once nearly halve the wall time
(benchmarks/RESULTS.md). Each child's lines are prefixed with its label.

When no job is left to start, the cores of finished children go to the ones still running
(:class:`CoreShare`): the CPU demo's LSTM, the longest run, trains its second half on both cores.
Only the C++ ops whose results are bit-identical at any thread count take the extra threads (the
LSTM op; each child re-reads its share from a file, see :func:`seqlab.ops._build.num_threads`),
so a run's numbers do not depend on when its neighbours finished.

Children run in their own session, so a terminal's Ctrl-C reaches only this process, which
forwards SIGINT/SIGTERM to each child exactly once (a second signal is forwarded too, and aborts
them), starts no further job, waits for the children to save, and exits with their status. A
child whose parent dies (even by SIGKILL) gets SIGHUP from the kernel (:func:`die_with_parent`),
which stops it as SIGTERM would: it saves, and exits.
"""

from __future__ import annotations

import ctypes
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from seqlab.errors import SeqlabError
from seqlab.interrupts import TrainingInterrupted
from seqlab.io import atomic_write_text
from seqlab.ops._build import THREADS_FILE, available_cpus

log = logging.getLogger(__name__)
_PARENT = "SEQLAB_PARENT_PID"


def thread_shares(running: list[str], cores: int, queue_empty: bool) -> dict[str, int]:
    """Threads for each running child (oldest first): one each while jobs wait to start (each
    new job takes a freed core), then the cores split among those left, the oldest first."""
    if not running:
        return {}
    if not queue_empty:
        return {label: 1 for label in running}
    base, extra = divmod(max(cores, len(running)), len(running))
    return {label: base + (i < extra) for i, label in enumerate(running)}


class CoreShare:
    """Each child's thread count, in a file of its own that the child re-reads (at most once a
    second): the parent rewrites the files when a child ends and no job is left to start."""

    def __init__(self, cores: int):
        self.cores = cores
        self.folder = Path(tempfile.mkdtemp(prefix="seqlab-threads-"))
        self._paths: dict[str, Path] = {}
        self._written: dict[str, int] = {}

    def add(self, label: str) -> str:
        """A child starts (on one thread); returns the path of its file, for its environment."""
        path = self._paths[label] = self.folder / f"{len(self._paths)}.threads"
        self._write(label, 1)
        return str(path)

    def update(self, running: list[str], queue_empty: bool) -> None:
        for label, threads in thread_shares(running, self.cores, queue_empty).items():
            if self._written[label] != threads:
                self._write(label, threads)

    def _write(self, label: str, threads: int) -> None:
        atomic_write_text(self._paths[label], f"{threads}\n")  # a reader never sees half a file
        self._written[label] = threads

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def run_in_children(
    jobs: list[tuple[str, list[str]]],
    parallel: int,
    resume: str,
    command: list[str] | None = None,
    cores: int | None = None,
    echo: Callable[[str], None] | None = None,
) -> None:
    """Run ``seqlab <argv>`` for each ``(label, argv)``, ``parallel`` at a time.

    ``command`` replaces ``python -m seqlab.cli`` and ``cores`` the CPUs this process may use
    (tests run small scripts through the same machinery). ``echo`` receives each line the children
    print, prefixed with its label, from one relay thread per child: the CLI passes its writer to
    the terminal; without one the lines go to this module's logger. Raises :class:`TrainingInterrupted`
    when a signal stopped them (``resume`` is the command that continues), or
    :class:`SeqlabError` naming the jobs that failed.
    """
    command = command or [sys.executable, "-m", "seqlab.cli"]
    env = dict(os.environ, OMP_NUM_THREADS="1", SEQLAB_NUM_THREADS="1", **{_PARENT: str(os.getpid())})
    share = CoreShare(cores or available_cpus())
    pending = list(jobs)
    running: list[tuple[str, subprocess.Popen, threading.Thread]] = []
    failed: list[tuple[str, int]] = []
    received: list[int] = []
    width = max((len(label) for label, _ in jobs), default=0)
    relay = echo or relay_to_log

    def forward(signum, frame) -> None:
        received.append(signum)
        pending.clear()
        for _, proc, _ in running:
            if proc.poll() is None:
                proc.send_signal(signum)

    def pump(label: str, stream) -> None:
        for line in stream:
            relay(f"[{label:<{width}}] {line}")

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        log.info("%d jobs, %d at a time: %s", len(pending), parallel, ", ".join(label for label, _ in jobs))
        while pending or running:
            while pending and len(running) < parallel:
                label, argv = pending.pop(0)
                proc = subprocess.Popen(
                    [*command, *argv],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                    env=dict(env, **{THREADS_FILE: share.add(label)}),
                    start_new_session=True,
                )
                thread = threading.Thread(target=pump, args=(label, proc.stdout), daemon=True)
                thread.start()
                running.append((label, proc, thread))
                if received:  # the signal came while this child was starting, before forward saw it
                    proc.send_signal(received[0])
            for item in list(running):
                label, proc, thread = item
                if proc.poll() is not None:
                    thread.join()
                    running.remove(item)
                    if proc.returncode != 0:  # killed by a signal: the shell's 128 + signal
                        failed.append((label, proc.returncode if proc.returncode > 0 else 128 - proc.returncode))
            share.update([label for label, _, _ in running], queue_empty=not pending)
            time.sleep(0.2)
    finally:
        share.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    raise_for_outcome(received, [label for label, _ in failed], {code for _, code in failed}, resume)


def raise_for_outcome(received: list[int], failed: list[str], codes: set[int], resume: str, saved: str = "") -> None:
    """How a set of runs ended, for the command: a signal (every started run saved; exit with the
    runs' own code when they agree), else the runs that failed, else nothing. ``saved`` says
    where the checkpoints are when that is not here (e.g. " on its worker")."""
    if received:
        name = signal.Signals(received[0]).name
        raise TrainingInterrupted(
            received[0],
            f"stopped by {name}; every started run saved its last checkpoint{saved}.",
            resume,
            codes.pop() if len(codes) == 1 else None,
        )
    if failed:
        raise SeqlabError(
            f"{', '.join(failed)} failed (their lines above say why); fix the cause and run the same "
            f"command with --ckpt_path last to continue: {resume}"
        )


def relay_to_log(line: str) -> None:
    """The relay of children's lines when no ``echo`` is given: library code talks through logging."""
    log.info("%s", line.rstrip("\n"))


def die_with_parent() -> None:
    """In a child: ask the kernel for SIGHUP when the parent process dies (Linux).

    Not SIGTERM: the kernel sends the signal once for each thread of the dying parent (it has
    threads that relay the children's output), and a second SIGTERM means "abort now".
    """
    parent = os.environ.pop(_PARENT, None)
    if parent is None or not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGHUP))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != int(parent):  # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGHUP)
