"""seqlab's log messages: plain lines on stderr, whatever Paddle did to the root logger."""

from __future__ import annotations

import logging
import sys


def configure_logging(level: int = logging.INFO) -> None:
    """Show seqlab's messages as plain lines on stderr.

    Paddle installs its own root handler on import (``[date] [INFO] file.py:123 - ...``), so
    seqlab's logger gets a handler of its own and does not propagate. The CLI calls this; call it
    yourself when driving seqlab from Python. Calling it twice is harmless.
    """
    logger = logging.getLogger("seqlab")
    if not any(getattr(h, "_seqlab", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler._seqlab = True
        logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
