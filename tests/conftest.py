"""Shared fixtures."""

import logging

import pytest

import seqlab  # noqa: F401  (first: it sets Paddle's environment, e.g. MKL's AVX2 switch, before any test imports paddle)


@pytest.fixture
def run_seqlab(capsys):
    """Run the ``seqlab`` command in this process: ``(exit code, stdout, non-empty stderr lines)``.

    The same ``seqlab.cli.main`` the console script calls, without a new interpreter per call.
    The CLI sets up seqlab's logger (its own handler, no propagation); that is undone after, so
    tests that read logs with ``caplog`` still see seqlab's records.
    """
    from seqlab.cli import main

    def run(*args):
        logger = logging.getLogger("seqlab")
        saved = list(logger.handlers), logger.propagate, logger.level
        try:
            code = main([str(a) for a in args])
        finally:
            logger.handlers[:], logger.propagate = saved[0], saved[1]
            logger.setLevel(saved[2])
        out, err = capsys.readouterr()
        return code, out, [line for line in err.splitlines() if line.strip()]

    return run
