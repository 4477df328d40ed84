"""Stopping cleanly on SIGTERM and Ctrl-C: finish the step, save, flush, exit 143 or 130.

Schedulers (Slurm, Kubernetes, ``timeout``) send SIGTERM and wait a grace period before SIGKILL;
a user presses Ctrl-C. Either way the run should end with its latest state on disk and one line
saying how to resume. :class:`GracefulStop` turns the first signal into a request the training
loop reads after each step; a second signal aborts at once (``KeyboardInterrupt``), for when
saving itself hangs.

Paddle installs a SIGTERM handler of its own at import, which aborts with a C++ stack dump, so
the handlers are installed when a fit starts (after Paddle's import) and restored when it ends.
"""

from __future__ import annotations

import logging
import signal
import threading

from seqlab.errors import SeqlabError

log = logging.getLogger(__name__)

HANDLED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
# A second SIGTERM or SIGINT aborts. SIGHUP never does: it is also what a --parallel child gets
# when its parent dies (seqlab.parallel), and the kernel sends that once per thread the parent
# had, so it can arrive twice in a row.
ESCALATING = (signal.SIGTERM, signal.SIGINT)


def exit_code_for(signum: int) -> int:
    """The shell's convention: 128 + signal number (143 for SIGTERM, 130 for SIGINT)."""
    return 128 + int(signum)


class TrainingInterrupted(SeqlabError):
    """Training stopped on a signal after saving; resume with ``ckpt_path="last"``.

    ``exit_code`` follows the shell's convention (143 for SIGTERM, 130 for SIGINT); ``resume``
    is the command line that continues, when the caller knows it (the CLI does).
    """

    def __init__(self, signum: int, message: str, resume: str | None = None, exit_code: int | None = None):
        super().__init__(message)
        self.signum = int(signum)
        self.resume = resume
        self.exit_code = exit_code if exit_code is not None else exit_code_for(signum)

    @classmethod
    def after_step(cls, signum: int, step: int, checkpoint: str) -> TrainingInterrupted:
        name = signal.Signals(signum).name
        return cls(signum, f"stopped by {name} after step {step}; the last checkpoint is saved ({checkpoint}).")

    def with_resume(self, command: str) -> TrainingInterrupted:
        return TrainingInterrupted(self.signum, str(self), command, self.exit_code)


class GracefulStop:
    """Context manager: while active, SIGTERM/SIGINT/SIGHUP set :attr:`signum` instead of killing.

    ``escalating``: the signals whose second arrival aborts at once. A rank started by
    ``paddle.distributed.launch`` passes ``(SIGINT,)``: the launcher stops its ranks by sending
    SIGTERM up to three times, 0.2 s apart (its ``ProcessContext.terminate``), so a repeated
    SIGTERM there is the same request, not a user's "abort now". Outside the main thread (where
    Python cannot install handlers) it does nothing.
    """

    def __init__(self, escalating: tuple[int, ...] = ESCALATING) -> None:
        self.signum: int | None = None
        self.escalating = tuple(escalating)
        self._previous: dict[int, object] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def _handle(self, signum, frame) -> None:
        if self.signum is not None:
            if signum not in self.escalating:
                return
            raise KeyboardInterrupt(f"second {signal.Signals(signum).name}: aborting without saving")
        self.signum = signum
        log.warning(
            "received %s: finishing this step, saving the last checkpoint, then stopping "
            "(send it again to abort at once).",
            signal.Signals(signum).name,
        )

    def __enter__(self) -> GracefulStop:
        self.signum = None
        if threading.current_thread() is threading.main_thread():
            for sig in HANDLED:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        self._previous.clear()


def stop_outside_training() -> None:
    """Outside a fit (start-up, the final test, the report), SIGTERM/SIGINT/SIGHUP end the command
    at once with the shell's exit code and one line, instead of Paddle's C++ stack dump.

    Paddle installs its SIGTERM handler when it is imported, so call this after that import.
    """

    def stop(signum, frame):
        name = signal.Signals(signum).name
        raise TrainingInterrupted(signum, f"stopped by {name} outside training; nothing was left half-written.")

    if threading.current_thread() is threading.main_thread():
        for sig in HANDLED:
            signal.signal(sig, stop)
