"""``--trainer.devices N``: ``seqlab fit`` starts its N processes through ``paddle.distributed.launch``.

The launcher does what it does for any Paddle program: one process per device, the rendezvous,
gloo on CPU or NCCL on GPUs, one log file per rank, and it ends every rank when one fails. This
module runs it as a child, passes rank 0's lines through, forwards SIGTERM/SIGINT (the launcher
gives the ranks 30 s to save), and turns a failed rank into one sentence naming it.

A hung rank is named too. Each rank counts the collectives it reaches (its heartbeat,
:class:`seqlab.distributed.Heartbeat`); the hung one stops behind the others, which wait for it.
Two limits end the wait: Paddle's own collective timeout (gloo's, fixed at 30 s in Paddle 3.3's
CPU build; NCCL's ``PADDLE_PG_TIMEOUT``, which seqlab sets from its own limit), and
``SEQLAB_COLLECTIVE_TIMEOUT`` seconds without any rank's count moving, after which this process
stops every rank itself. Either way the rank whose count is behind is the one named.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import paddle

from seqlab.distributed import HEARTBEAT_DIR, heartbeat_file, read_heartbeat
from seqlab.errors import SeqlabError
from seqlab.interrupts import TrainingInterrupted

log = logging.getLogger(__name__)

# What the launcher prints when a rank exits non-zero (Paddle 3.x).
_FAILED = re.compile(r"Container rank (\d+) status failed .*? code (-?\d+) log (\S+)")
_NOISE = re.compile(r"No ccache found|warnings\.warn\(warning_message\)")
_ENTRY = "from seqlab.cli import main\nraise SystemExit(main())\n"
# How a collective that waited too long fails on a rank (gloo: "... TIMEOUT self_rank = ...").
_TIMED_OUT = re.compile(r"\bTIMEOUT\b|[Tt]imed out|timeout")

TIMEOUT_ENV = "SEQLAB_COLLECTIVE_TIMEOUT"
DEFAULT_TIMEOUT_S = 1800.0  # Paddle's own default for PADDLE_PG_TIMEOUT (30 min)

# The launcher runs in a session of its own (so a Ctrl-C reaches it only through seqlab), which
# also means nothing ends it when seqlab dies. This wrapper asks the kernel for SIGTERM to the
# launcher when its parent (seqlab) dies, then execs it: the launcher then stops every rank, as
# it does for any SIGTERM. The kernel keeps the request across exec. If seqlab died before the
# request took effect, the wrapper exits instead of starting orphans.
_WITH_PARENT_DEATH_SIGNAL = (
    "import ctypes, os, signal, sys\n"
    "parent = int(sys.argv[1])\n"
    "ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG\n"
    "if os.getppid() != parent:\n"
    "    sys.exit(143)\n"
    "os.execv(sys.argv[2], sys.argv[2:])\n"
)


class RankFailed(SeqlabError):
    """A rank of a multi-process run failed, and the launcher stopped the others."""

    exit_code = 1


class RankHung(RankFailed):
    """A rank of a multi-process run stopped making progress, and every rank was stopped."""


def collective_timeout(environ: dict | None = None) -> float:
    """Seconds a multi-process run may go without any rank reaching a collective:
    ``SEQLAB_COLLECTIVE_TIMEOUT``, else ``PADDLE_PG_TIMEOUT`` (milliseconds, Paddle's setting),
    else Paddle's default of 30 minutes."""
    environ = os.environ if environ is None else environ
    raw = environ.get(TIMEOUT_ENV, "").strip()
    if raw:
        try:
            value = float(raw)
        except ValueError:
            value = 0.0
        if not 0 < value < float("inf"):
            raise SeqlabError(
                f"{TIMEOUT_ENV}={raw!r} is not a number of seconds; set it to e.g. 600 (a rank that makes "
                "no progress for that long is named and the run stopped), or unset it (30 minutes)."
            )
        return value
    paddle_ms = environ.get("PADDLE_PG_TIMEOUT", "").strip()
    if paddle_ms.isdigit() and int(paddle_ms) > 0:
        return int(paddle_ms) / 1000
    return DEFAULT_TIMEOUT_S


def _ranks(ranks: list[int]) -> str:
    if len(ranks) == 1:
        return f"rank {ranks[0]}"
    return "ranks " + ", ".join(map(str, ranks[:-1])) + f" and {ranks[-1]}"


def behind(counts: dict[int, int]) -> list[int]:
    """The ranks whose heartbeat count is the lowest (rank -> count): the hung ones, unless every
    rank is at the same count (then none is behind)."""
    if not counts or len(set(counts.values())) == 1:
        return []
    low = min(counts.values())
    return sorted(rank for rank, count in counts.items() if count == low)


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def first_cause(ended: dict[int, int]) -> int:
    """Of the ranks seen ending in the same poll (rank -> Popen-style exit code), the likeliest
    cause: one that aborted (SIGABRT, how a rank reacts when a peer vanishes from a collective)
    is more likely the echo, so the others come first (a rank killed from outside, a crash);
    then the lowest rank."""
    return min(ended, key=lambda rank: (ended[rank] == -signal.SIGABRT, rank))


class RankWatcher:
    """Notes which rank's process ends first, and how, by polling the launcher's children in /proc.

    The launcher reports the failures it notices, which can be a rank that failed because another
    one died (waiting in a collective). A process that has ended but not been reaped yet is a
    zombie; from the moment it starts to exit, its /proc ``stat`` holds its wait status (Linux
    >= 3.5), so polling every 0.1 s sees the first rank to end, with its exit code or signal.


    With ``heartbeats`` (the ranks' heartbeat folder) and ``timeout``, it also watches progress:
    when no rank's count has moved for ``timeout`` seconds (counted from the first beat, so a slow
    start is no hang), it notes the ranks that are behind in ``hung`` and kills every rank (they
    wait in a collective, where no signal handler runs), which ends the launcher too.
    """

    def __init__(
        self,
        launcher_pid: int,
        every: float = 0.1,
        nproc: int = 0,
        heartbeats: Path | None = None,
        timeout: float | None = None,
    ):
        import threading

        self.launcher_pid, self.every = launcher_pid, every
        self.nproc, self.heartbeats, self.timeout = nproc, heartbeats, timeout
        self.first_gone: int | None = None  # rank
        self.first_code: int | None = None  # Popen-style: negative for a signal
        self.counts: dict[int, int] = {}  # rank -> heartbeat count, as last read
        self.counts_at_first_gone: dict[int, int] = {}
        self.hung: list[int] = []  # set when the watcher stopped the ranks for making no progress
        self.stalled_for = 0.0
        self._progress_at: float | None = None  # when a count last moved (monotonic)
        self._alive: dict[int, int] = {}  # pid -> rank
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        if Path("/proc").is_dir():
            self._thread.start()

    def stop(self) -> None:
        self._done.set()

    def _scan(self) -> tuple[dict[int, int], dict[int, int]]:
        """(pid -> rank of running ranks, rank -> exit code of ranks that are ending)."""
        running, ended = {}, {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            pid = int(entry.name)
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) != self.launcher_pid:
                    continue
                rank = self._alive.get(pid)
                if rank is None:  # a new child: its rank is in its environment
                    env = (entry / "environ").read_bytes().split(b"\0")
                    value = next((v.split(b"=", 1)[1] for v in env if v.startswith(b"PADDLE_TRAINER_ID=")), b"")
                    if not value.isdigit():
                        continue
                    rank = int(value)
            except (OSError, ValueError, IndexError):
                continue
            # Field 52 of stat is the wait status, set as soon as the process starts to exit
            # (it tears down for a while, then is a zombie until the launcher reaps it).
            status = int(fields[49]) if len(fields) > 49 else 0
            if status:
                ended[rank] = os.waitstatus_to_exitcode(status)
            else:
                running[pid] = rank
        return running, ended

    def _read_counts(self) -> None:
        import time

        if self.heartbeats is None:
            return
        counts = {}
        for rank in range(self.nproc):
            count = read_heartbeat(heartbeat_file(self.heartbeats, rank))
            counts[rank] = count or 0
        if counts != self.counts and any(counts.values()):
            self._progress_at = time.monotonic()
        self.counts = counts

    def _check_progress(self) -> None:
        import time

        if self.timeout is None or self._progress_at is None or self.hung or self.first_gone is not None:
            return
        self.stalled_for = time.monotonic() - self._progress_at
        if self.stalled_for < self.timeout:
            return
        self.hung = behind(self.counts) or sorted(self.counts)
        for pid in self._alive:  # the launcher's own children, the ranks
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def _run(self) -> None:
        while not self._done.wait(self.every):
            running, ended = self._scan()
            self._read_counts()
            gone = {rank for pid, rank in self._alive.items() if pid not in running}
            if (gone or ended) and self.first_gone is None and not self.hung:
                self.counts_at_first_gone = dict(self.counts)
                if ended:
                    self.first_gone = first_cause(ended)
                    self.first_code = ended[self.first_gone]
                else:
                    self.first_gone = min(gone)
            self._alive = {**{p: r for p, r in self._alive.items() if p in running}, **running}
            self._check_progress()


def launch_command(nproc: int, argv: list[str], log_dir: Path, entry: Path) -> list[str]:
    cmd = [sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", str(nproc), "--log_dir", str(log_dir)]
    if sys.platform.startswith("linux"):  # ends with seqlab, even when seqlab is killed with -9
        cmd = [sys.executable, "-c", _WITH_PARENT_DEATH_SIGNAL, str(os.getpid()), *cmd]
    if paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0:
        cmd += ["--devices", ",".join(str(i) for i in range(nproc))]
    return [*cmd, str(entry), *argv]


def run_launched(nproc: int, argv: list[str], resume: str, echo: Callable[[str], None] | None = None) -> int:
    """Run ``seqlab <argv>`` as ``nproc`` data-parallel processes; returns 0 or raises.

    ``argv`` is the seqlab command line (``fit ...``); ``resume`` the command that continues it.
    ``echo`` receives rank 0's lines: the CLI passes its writer to the terminal; without one they
    go to this module's logger (library code talks through logging).
    """
    relay = echo or (lambda line: log.info("%s", line.rstrip("\n")))
    if paddle.device.is_compiled_with_cuda() and 0 < paddle.device.cuda.device_count() < nproc:
        raise SeqlabError(
            f"trainer.devices={nproc}, but this machine has "
            f"{paddle.device.cuda.device_count()} GPU(s); lower --trainer.devices."
        )
    timeout = collective_timeout()
    work = Path(tempfile.mkdtemp(prefix="seqlab-launch-"))
    # A script of our own for the launcher to run: its folder goes first on sys.path, so it
    # must not be seqlab's package folder (whose io.py would shadow the standard library's).
    entry = work / "seqlab_entry.py"
    entry.write_text(_ENTRY)
    env = dict(os.environ)
    env.setdefault("GLOG_minloglevel", "2")  # Paddle's C++ INFO/WARNING chatter on every rank
    env.setdefault("PADDLE_PG_TIMEOUT", str(max(1, round(timeout * 1000))))  # NCCL's collectives (ms)
    (work / "heartbeat").mkdir()
    env[HEARTBEAT_DIR] = str(work / "heartbeat")
    proc = subprocess.Popen(
        launch_command(nproc, argv, work / "logs", entry),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        start_new_session=True,
    )
    received: list[int] = []

    def forward(signum, frame) -> None:
        received.append(signum)
        proc.send_signal(signum)  # the launcher passes it to every rank and waits for them

    watcher = RankWatcher(proc.pid, nproc=nproc, heartbeats=work / "heartbeat", timeout=timeout)
    watcher.start()
    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    failures, in_flags_block = [], False
    try:
        for line in proc.stdout:
            found = _FAILED.search(line)
            if found:
                failures.append((int(found.group(1)), int(found.group(2)), found.group(3)))
            # Rank 0's own lines pass through; the launcher's bookkeeping and Paddle's notices
            # (a table of non-default flags at start-up, the cpp_extension ccache hint) don't.
            if "Modified FLAGS detected" in line:
                in_flags_block = True
            elif in_flags_block and line.startswith("====="):
                in_flags_block = False
            elif not (in_flags_block or line.startswith("LAUNCH INFO") or _NOISE.search(line)):
                relay(line)
        code = proc.wait()
    finally:
        watcher.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if received:
        shutil.rmtree(work, ignore_errors=True)  # the ranks saved; their logs hold nothing new
        name = signal.Signals(received[0]).name
        raise TrainingInterrupted(
            received[0], f"stopped by {name}; every rank saved the run's last checkpoint.", resume
        )
    if code == 0:
        shutil.rmtree(work, ignore_errors=True)
        return 0
    hung = hung_message(watcher, failures, nproc, work / "logs", timeout, resume)
    if hung:
        raise RankHung(hung)
    if failures:
        # When one rank dies, the others fail in the collective they were waiting in, or are
        # stopped by the launcher, and the launcher may report one of those first: the cause is
        # the rank whose process ended first.
        rank, rank_code, rank_log = next((f for f in failures if f[0] == watcher.first_gone), failures[0])
        if watcher.first_gone is not None and watcher.first_gone != rank:
            rank, rank_log = watcher.first_gone, str(Path(rank_log).with_name(f"workerlog.{watcher.first_gone}"))
            rank_code = watcher.first_code
        how = describe_exit(rank_code) if rank_code is not None else "ended first"
        raise RankFailed(
            f"rank {rank} of {nproc} {how}, so every rank was stopped; "
            f"its log is {rank_log}. Fix the cause, then resume with: {resume}"
        )
    raise RankFailed(
        f"paddle.distributed.launch {describe_exit(code)}; the ranks' logs are in "
        f"{work / 'logs'}. Resume with: {resume}"
    )


def hung_message(watcher: RankWatcher, failures: list, nproc: int, logs: Path, timeout: float, resume: str) -> str:
    """The sentence for a run that ended because a rank hung, or "" when it did not."""
    stopped = "so every rank was stopped (the last checkpoint is kept)"
    if watcher.hung:
        ranks = watcher.hung
        if len(ranks) == nproc:
            return (
                f"no rank of {nproc} reached a collective for {watcher.stalled_for:.0f} s "
                f"({TIMEOUT_ENV}={timeout:g}), {stopped}; their logs are in {logs}. "
                f"Fix the cause, then resume with: {resume}"
            )
        return (
            f"{_ranks(ranks)} of {nproc} hung: no progress for {watcher.stalled_for:.0f} s while the other "
            f"ranks waited for it in a collective ({TIMEOUT_ENV}={timeout:g}), {stopped}; its log is "
            f"{logs / f'workerlog.{ranks[0]}'}. Fix the cause, then resume with: {resume}"
        )
    # Paddle's own timeout (gloo's 30 s on CPU, PADDLE_PG_TIMEOUT for NCCL) ended a waiting rank
    # first: then the rank that is behind, not the one that timed out, is the cause.
    waiter = watcher.first_gone if watcher.first_gone is not None else (failures[0][0] if failures else None)
    if waiter is None or not _timed_out(logs / f"workerlog.{waiter}"):
        return ""
    counts = watcher.counts_at_first_gone or watcher.counts
    ranks = [rank for rank in behind(counts) if rank != waiter]
    if not ranks:
        return ""
    return (
        f"{_ranks(ranks)} of {nproc} hung: rank {waiter} timed out waiting for it in a collective "
        f"(Paddle's collective timeout), {stopped}; its log is {logs / f'workerlog.{ranks[0]}'}. "
        f"Fix the cause, then resume with: {resume}"
    )


def _timed_out(log_file: Path) -> bool:
    """Whether a rank's log ends with a collective timeout (its last 40 lines)."""
    try:
        tail = log_file.read_text(errors="replace").splitlines()[-40:]
    except OSError:
        return False
    return any(_TIMED_OUT.search(line) for line in tail)
