"""Shared fixtures."""

import logging
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path

import pytest

import seqlab  # noqa: F401  (first: it sets Paddle's environment, e.g. MKL's AVX2 switch, before any test imports paddle)

_SESSION_TMP = pytest.StashKey[str]()


def pytest_configure(config):
    """pytest's own temporary folders leave /tmp too: each session gets a folder of its own (two
    sessions at once never share one) under ``SEQLAB_TEST_TMP`` (default ``~/.cache/seqlab/pytest``),
    removed at the end unless a test failed. An explicit ``--basetemp`` is left alone; xdist's
    workers get theirs inside the controller's."""
    if config.option.basetemp or hasattr(config, "workerinput"):
        return
    root = Path(os.environ.get("SEQLAB_TEST_TMP") or Path.home() / ".cache" / "seqlab" / "pytest")
    try:
        root.mkdir(parents=True, exist_ok=True)
        folder = tempfile.mkdtemp(prefix="session-", dir=root)
    except OSError:
        return  # pytest's default place, then
    config.option.basetemp = folder
    config.stash[_SESSION_TMP] = folder


def pytest_sessionfinish(session, exitstatus):
    folder = session.config.stash.get(_SESSION_TMP, None)
    if folder and exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def _private_tmpdir(tmp_path_factory):
    """Temp files of this process and of every subprocess (``TMPDIR``) go to a folder of the
    session's own, removed at the end: the suite leaves nothing in /tmp."""
    folder = tmp_path_factory.mktemp("TMPDIR")
    saved = os.environ.get("TMPDIR"), tempfile.tempdir
    os.environ["TMPDIR"] = tempfile.tempdir = str(folder)
    try:
        yield folder
    finally:
        tempfile.tempdir = saved[1]
        if saved[0] is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = saved[0]
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A finished ``seqlab fit`` of tests/tiny.py's recipe (the MLP: 6 steps, checkpoints at 3
    and 6, the report), trained once per session (per xdist worker): ``(recipe, root_dir)``,
    the run in ``root_dir / "tiny/mlp"``. Shared: read it only; a test that writes copies it
    first (``shutil.copytree(root_dir, tmp_path / "runs")``)."""
    import subprocess

    import yaml
    from tiny import SEQLAB, tiny_recipe

    folder = tmp_path_factory.mktemp("tiny_run")
    recipe = folder / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe(), sort_keys=False))
    root = folder / "runs"
    result = subprocess.run(
        [*SEQLAB, "fit", "--recipe", str(recipe), "--trainer.root_dir", str(root)],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONWARNINGS="ignore"),
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return recipe, root


def _signal_handlers() -> dict:
    handlers = {}
    for sig in signal.valid_signals():
        try:
            handlers[sig] = signal.getsignal(sig)
        except (OSError, ValueError):
            continue
    return handlers


@pytest.fixture
def run_seqlab(capsys):
    """Run the ``seqlab`` command in this process: ``(exit code, stdout, non-empty stderr lines)``.

    The same ``seqlab.cli.main`` the console script calls, without a new interpreter per call.
    What the command changes in the process is undone after: seqlab's logger (its own handler, no
    propagation; tests that read logs with ``caplog`` still see seqlab's records), the signal
    handlers it installs, ``sys.path`` (a recipe's folder) and the environment.
    """
    from seqlab.cli import main

    def run(*args):
        logger = logging.getLogger("seqlab")
        saved = list(logger.handlers), logger.propagate, logger.level
        handlers, path, environ = _signal_handlers(), list(sys.path), dict(os.environ)
        try:
            code = main([str(a) for a in args])
        finally:
            logger.handlers[:], logger.propagate = saved[0], saved[1]
            logger.setLevel(saved[2])
            for sig, handler in _signal_handlers().items():
                if handlers.get(sig) is not None and handler is not handlers[sig]:
                    signal.signal(sig, handlers[sig])
            sys.path[:] = path
            if dict(os.environ) != environ:
                os.environ.clear()
                os.environ.update(environ)
        out, err = capsys.readouterr()
        return code, out, [line for line in err.splitlines() if line.strip()]

    return run
