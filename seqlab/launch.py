"""``--trainer.devices N``: ``seqlab fit`` starts its N processes through ``paddle.distributed.launch``.

The launcher does what it does for any Paddle program: one process per device, the rendezvous,
gloo on CPU or NCCL on GPUs, one log file per rank, and it ends every rank when one fails. This
module runs it as a child, passes rank 0's lines through, forwards SIGTERM/SIGINT (the launcher
gives the ranks 30 s to save), and turns a failed rank into one sentence naming it.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from seqlab._paddle import import_paddle
from seqlab.errors import SeqlabError
from seqlab.interrupts import TrainingInterrupted

paddle = import_paddle()

# What the launcher prints when a rank exits non-zero (Paddle 3.x).
_FAILED = re.compile(r"Container rank (\d+) status failed .*? code (-?\d+) log (\S+)")
_NOISE = re.compile(r"No ccache found|warnings\.warn\(warning_message\)")
_ENTRY = "from seqlab.cli import main\nraise SystemExit(main())\n"


class RankFailed(SeqlabError):
    """A rank of a multi-process run failed, and the launcher stopped the others."""

    exit_code = 1


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def launch_command(nproc: int, argv: list[str], log_dir: Path, entry: Path) -> list[str]:
    cmd = [sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", str(nproc),
           "--log_dir", str(log_dir)]
    if paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0:
        cmd += ["--devices", ",".join(str(i) for i in range(nproc))]
    return [*cmd, str(entry), *argv]


def run_launched(nproc: int, argv: list[str], resume: str) -> int:
    """Run ``seqlab <argv>`` as ``nproc`` data-parallel processes; returns 0 or raises.

    ``argv`` is the seqlab command line (``fit ...``); ``resume`` the command that continues it.
    """
    if paddle.device.is_compiled_with_cuda() and 0 < paddle.device.cuda.device_count() < nproc:
        raise SeqlabError(f"trainer.devices={nproc}, but this machine has "
                          f"{paddle.device.cuda.device_count()} GPU(s); lower --trainer.devices.")
    work = Path(tempfile.mkdtemp(prefix="seqlab-launch-"))
    # A script of our own for the launcher to run: its folder goes first on sys.path, so it
    # must not be seqlab's package folder (whose io.py would shadow the standard library's).
    entry = work / "seqlab_entry.py"
    entry.write_text(_ENTRY)
    env = dict(os.environ)
    env.setdefault("GLOG_minloglevel", "2")  # Paddle's C++ INFO/WARNING chatter on every rank
    proc = subprocess.Popen(launch_command(nproc, argv, work / "logs", entry), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True)
    received: list[int] = []

    def forward(signum, frame) -> None:
        received.append(signum)
        proc.send_signal(signum)  # the launcher passes it to every rank and waits for them

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    failure, in_flags_block = None, False
    try:
        for line in proc.stdout:
            found = _FAILED.search(line)
            if found and failure is None:
                failure = found
            # Rank 0's own lines pass through; the launcher's bookkeeping and Paddle's notices
            # (a table of non-default flags at start-up, the cpp_extension ccache hint) don't.
            if "Modified FLAGS detected" in line:
                in_flags_block = True
            elif in_flags_block and line.startswith("====="):
                in_flags_block = False
            elif not (in_flags_block or line.startswith("LAUNCH INFO") or _NOISE.search(line)):
                sys.stdout.write(line)
                sys.stdout.flush()
        code = proc.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if received:
        name = signal.Signals(received[0]).name
        raise TrainingInterrupted(received[0], f"stopped by {name}; every rank saved the run's last checkpoint.",
                                  resume)
    if code == 0:
        shutil.rmtree(work, ignore_errors=True)
        return 0
    if failure is not None:
        rank, rank_code, log = int(failure.group(1)), int(failure.group(2)), failure.group(3)
        raise RankFailed(f"rank {rank} of {nproc} {describe_exit(rank_code)}, so every rank was stopped; "
                         f"its log is {log}. Fix the cause, then resume with: {resume}")
    raise RankFailed(f"paddle.distributed.launch {describe_exit(code)}; the ranks' logs are in "
                     f"{work / 'logs'}. Resume with: {resume}")

