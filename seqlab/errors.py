"""Errors a user can cause.

Everything a user can get wrong (an unknown model, a typo'd option, a missing or incompatible
checkpoint) raises :class:`SeqlabError`. The CLI turns it into one line on stderr and exit code 2,
with no traceback, so the message itself must say what was wrong and what to do.
"""


def first_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message, or its type's name when it has none: what a
    one-sentence error quotes of a library's (often multi-line) exception."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


class SeqlabError(Exception):
    """A problem caused by the user's input; its message is shown as is, without a traceback."""

    exit_code = 2


class TrainingDiverged(SeqlabError):
    """The loss or the gradients became NaN or infinite and ``trainer.nonfinite`` is ``stop``."""

    exit_code = 1
