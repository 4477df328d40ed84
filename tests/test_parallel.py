"""--parallel's core sharing: the cores of finished children go to the ones still running.

The LSTM op's bit-identical results at any thread count, which make this safe, are checked in
tests/test_lstm_fused.py; the signals of --parallel in tests/test_faults.py.
"""

from __future__ import annotations

import importlib
import os
import sys
import textwrap

import paddle
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
    run_in_children(jobs, parallel=2, resume="-", command=[sys.executable, str(probe)], cores=2)
    out = capfd.readouterr().out
    assert "[short] short job on 1 thread" in out, out
    assert "[long ] long job saw [1, 2]" in out, out
    assert "[long ] seqlab: the C++ ops now run on 2 threads (cores freed by finished runs)" in out, out


def test_the_parent_checks_runs_with_paddles_formulas_and_leaves_the_builds_to_its_children(tmp_path, monkeypatch):
    """--parallel: the parent's pre-run checks must not build the C++ ops (one after another, ~50
    s on a first run); each child builds its own, at the same time. A single process checks
    with the ops it will train with."""
    import yaml
    from tiny import LSTM, RWKV7, tiny_recipe

    from seqlab import cli

    fused, lstm, wkv7 = (importlib.import_module(f"seqlab.ops.{name}") for name in ("fused", "lstm", "wkv7"))

    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe({"lstm": LSTM, "rwkv7": RWKV7})))
    seen = []

    def preflight(trainer, task, model, ckpt_path=None):
        x = paddle.zeros([1, 4, 8])
        seen.append(
            {
                "wkv7": wkv7.resolve_backend(x=x),
                "fused_cpp": fused._ops(x, None) is not None,
                "lstm_cpp": lstm._ops(None) is not None,
            }
        )
        return None, None

    monkeypatch.setattr(cli.Trainer, "preflight", preflight)
    monkeypatch.setattr(cli, "_fit_in_parallel", lambda parsed, argv: None)
    monkeypatch.setattr(cli, "_write_report", lambda root: None)
    monkeypatch.delenv("SEQLAB_FUSED", raising=False)
    monkeypatch.delenv("SEQLAB_WKV7", raising=False)
    args = ["--recipe", str(recipe), "--trainer.root_dir", str(tmp_path / "runs")]
    assert cli.cmd_fit([*args, "--parallel", "2"]) == 0
    assert seen == [{"wkv7": "chunked", "fused_cpp": False, "lstm_cpp": False}] * 2
    assert "SEQLAB_FUSED" not in os.environ and "SEQLAB_WKV7" not in os.environ  # restored
    seen.clear()
    monkeypatch.setattr(cli.Trainer, "fit", lambda trainer, task, model, ckpt_path=None: {})
    assert cli.cmd_fit([*args, "--parallel", "1"]) == 0
    assert seen == [{"wkv7": "cpp", "fused_cpp": True, "lstm_cpp": True}] * 2
