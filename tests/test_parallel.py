"""--parallel's core sharing: the cores of finished children go to the ones still running.

The LSTM op's bit-identical results at any thread count, which make this safe, are checked in
tests/test_lstm_fused.py; the signals of --parallel in tests/test_faults.py.
"""

from __future__ import annotations

import sys
import textwrap

import pytest

from seqlab.ops import _build
from seqlab.ops._build import THREADS_FILE, num_threads
from seqlab.parallel import CoreShare, run_in_children, thread_shares


def test_one_thread_each_while_jobs_wait_then_the_cores_are_split_oldest_first():
    assert thread_shares(["a", "b"], cores=2, queue_empty=False) == {"a": 1, "b": 1}
    assert thread_shares(["a"], cores=2, queue_empty=False) == {"a": 1}  # the next job takes the core
    assert thread_shares(["a"], cores=2, queue_empty=True) == {"a": 2}
    assert thread_shares(["a", "b"], cores=5, queue_empty=True) == {"a": 3, "b": 2}
    assert thread_shares(["a", "b", "c"], cores=2, queue_empty=True) == {"a": 1, "b": 1, "c": 1}
    assert thread_shares([], cores=2, queue_empty=True) == {}


@pytest.fixture
def fresh_share(monkeypatch):
    """num_threads() re-reads its file on every call (instead of once a second)."""
    monkeypatch.setattr(_build, "_SHARE_REFRESH_S", 0.0)
    monkeypatch.setattr(_build, "_share", {"read_at": None, "threads": None})
    monkeypatch.setenv("SEQLAB_NUM_THREADS", "1")


def test_num_threads_follows_the_share_file_and_falls_back_when_it_is_unusable(monkeypatch, fresh_share):
    share = CoreShare(cores=3)
    try:
        monkeypatch.setenv(THREADS_FILE, share.add("lstm"))
        share.add("mlp")
        assert num_threads(elastic=True) == 1
        share.update(["lstm"], queue_empty=True)  # mlp finished, nothing left to start
        assert num_threads(elastic=True) == 3
        assert num_threads() == 1  # ops whose bits depend on the thread count keep theirs
        (share.folder / "0.threads").write_text("garbage\n")
        assert num_threads(elastic=True) == 1  # SEQLAB_NUM_THREADS
    finally:
        share.close()
    assert not share.folder.exists()
    assert num_threads(elastic=True) == 1  # the file is gone: SEQLAB_NUM_THREADS again


def test_a_running_child_gets_the_core_a_finished_one_freed(tmp_path, capfd):
    """Real processes through run_in_children: a long job polls num_threads() while a short one
    ends; with no job left to start, the long one is told to use both cores."""
    probe = tmp_path / "probe.py"
    probe.write_text(
        textwrap.dedent(
            """
            import sys, time
            from seqlab.log import configure_logging
            from seqlab.ops._build import num_threads
            configure_logging()
            if sys.argv[1] == "short":
                print("short job on", num_threads(elastic=True), "thread", flush=True)
                sys.exit(0)
            seen = [num_threads(elastic=True)]
            deadline = time.monotonic() + 30
            while seen[-1] == 1 and time.monotonic() < deadline:
                time.sleep(0.05)
                seen.append(num_threads(elastic=True))
            print("long job saw", sorted(set(seen)), flush=True)
            """
        )
    )
    jobs = [("long", ["long"]), ("short", ["short"])]
    run_in_children(jobs, parallel=2, resume="-", command=[sys.executable, str(probe)], cores=2, echo=sys.stdout.write)
    out = capfd.readouterr().out
    assert "[short] short job on 1 thread" in out, out
    assert "[long ] long job saw [1, 2]" in out, out
    assert "[long ] seqlab: the C++ ops now run on 2 threads (cores freed by finished runs)" in out, out


def test_a_signal_while_a_child_starts_still_reaches_it(monkeypatch):
    """SIGTERM delivered between a child's start and its registration (the race of issue 23):
    the child must get it too, not train on as one the parent forgot. The signal is real; the
    only injection is its timing, right after the real ``Popen`` returns."""
    import os
    import signal
    import subprocess
    import time

    from seqlab.interrupts import TrainingInterrupted

    real_popen = subprocess.Popen

    def popen_then_signal(*args, **kwargs):
        proc = real_popen(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGTERM)  # its Python handler runs before running.append
        return proc

    monkeypatch.setattr(subprocess, "Popen", popen_then_signal)
    child = [sys.executable, "-c", "import time; time.sleep(60)"]  # SIGTERM's default action ends it
    started = time.monotonic()
    with pytest.raises(TrainingInterrupted):
        run_in_children([("sleeper", [])], 1, "resume", command=child, cores=1, echo=lambda line: None)
    assert time.monotonic() - started < 20  # it ended on the signal, not after its 60 s
