"""Several ``seqlab`` commands at once, as child processes that stop cleanly together.

``--parallel N`` (the CPU demo's default) and ``seqlab sweep`` train one run per child process,
N at a time, each with one thread: Paddle's CPU kernels for these small models barely use a
second core, so on a 2-core machine two single-threaded runs at once nearly halve the wall time
(benchmarks/RESULTS.md). Each child's lines are prefixed with its label.

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
import signal
import subprocess
import sys
import threading
import time

from seqlab.errors import SeqlabError
from seqlab.interrupts import TrainingInterrupted

log = logging.getLogger(__name__)
_PARENT = "SEQLAB_PARENT_PID"


def run_in_children(jobs: list[tuple[str, list[str]]], parallel: int, resume: str) -> None:
    """Run ``seqlab <argv>`` for each ``(label, argv)``, ``parallel`` at a time.

    Raises :class:`TrainingInterrupted` when a signal stopped them (``resume`` is the command
    that continues), or :class:`SeqlabError` naming the jobs that failed.
    """
    env = dict(os.environ, OMP_NUM_THREADS="1", SEQLAB_NUM_THREADS="1", **{_PARENT: str(os.getpid())})
    pending = list(jobs)
    running: list[tuple[str, subprocess.Popen, threading.Thread]] = []
    failed: list[tuple[str, int]] = []
    received: list[int] = []
    width = max((len(label) for label, _ in jobs), default=0)

    def forward(signum, frame) -> None:
        received.append(signum)
        pending.clear()
        for _, proc, _ in running:
            if proc.poll() is None:
                proc.send_signal(signum)

    def pump(label: str, stream) -> None:
        for line in stream:
            sys.stdout.write(f"[{label:<{width}}] {line}")
            sys.stdout.flush()

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        log.info("%d jobs, %d at a time: %s", len(pending), parallel, ", ".join(label for label, _ in jobs))
        while pending or running:
            while pending and len(running) < parallel:
                label, argv = pending.pop(0)
                proc = subprocess.Popen(
                    [sys.executable, "-m", "seqlab.cli", *argv],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                    env=env,
                    start_new_session=True,
                )
                thread = threading.Thread(target=pump, args=(label, proc.stdout), daemon=True)
                thread.start()
                running.append((label, proc, thread))
            for item in list(running):
                label, proc, thread = item
                if proc.poll() is not None:
                    thread.join()
                    running.remove(item)
                    if proc.returncode != 0:  # killed by a signal: the shell's 128 + signal
                        failed.append((label, proc.returncode if proc.returncode > 0 else 128 - proc.returncode))
            time.sleep(0.2)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if received:
        codes = {code for _, code in failed}
        name = signal.Signals(received[0]).name
        raise TrainingInterrupted(
            received[0],
            f"stopped by {name}; every started run saved its last checkpoint.",
            resume,
            codes.pop() if len(codes) == 1 else None,
        )
    if failed:
        labels = ", ".join(label for label, _ in failed)
        raise SeqlabError(
            f"{labels} failed (their lines above say why); fix the cause and run the same "
            f"command with --ckpt_path last to continue: {resume}"
        )


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
