"""Evaluation metrics: one home for each formula (numpy, float64), shared by every task.

A metric is a small accumulator, as in torchmetrics: ``update`` with one chunk of model outputs,
``compute`` at the end, so a held-out set of any size is scored in chunks without keeping its
logits. What a chunk offers metrics is a :class:`Scored`: the logits, the targets, and the
task's ``mask`` of scored positions, with the argmax and the per-token negative log-likelihood
computed once and shared by every metric that needs them.

Positions whose target is :data:`IGNORE_INDEX` (-100, seed 003's padding label) count in no
metric. The ``mask`` (optional) narrows the accuracy metrics further: digit reversal scores only
the reversed digits and the closing ``#``, while its loss covers every position, as training does.

Formulas (``nll`` is ``-log softmax(logits)[target]``, computed in float64):

- :class:`MaskedAccuracy`: per row, correct scored positions / scored positions (0 for a row
  with none, as in seed 000), then the mean over rows (seed 003's ``calculate_acc`` counts
  tokens instead; the per-row mean is the seed's "AC rate").
- :class:`TokenAccuracy`: correct scored positions / scored positions over the whole set
  (seed 003's ``calculate_acc``: ``n_correct / n_word``).
- :class:`ExactMatch`: scored positions form spans (maximal runs); the fraction of spans
  predicted without a mistake. With ``end_token``, only spans that contain it (complete
  answers) count; a span cut off by the end of a row does not. NaN when there is no span.
- :class:`CrossEntropy`: mean ``nll`` over the positions that are not ignored.
- :class:`Perplexity`: ``exp`` of that mean.
- :class:`BitsPerByte`: that mean / ln 2 / ``bytes_per_token`` (1 for byte-level data).
"""

from __future__ import annotations

import math
from functools import cached_property
from typing import Optional

import numpy as np

#: Label of positions that count neither in the loss nor in any metric (seed 003's -100).
IGNORE_INDEX = -100


class Scored:
    """One chunk of model outputs beside its targets, as metrics read it.

    Args:
        logits: float ``[B, T, V]``.
        targets: int ``[B, T]``; :data:`IGNORE_INDEX` marks positions that count nowhere.
        mask: bool ``[B, T]`` or None: the positions the accuracy metrics score (None: every
            position that is not ignored).
    """

    def __init__(self, logits, targets, mask=None, ignore_index: int = IGNORE_INDEX):
        self.logits = np.asarray(logits)
        self.targets = np.asarray(targets).astype(np.int64, copy=False)
        self.ignore_index = ignore_index
        self.valid = self.targets != ignore_index
        self.mask = self.valid if mask is None else (np.asarray(mask, dtype=bool) & self.valid)

    @cached_property
    def preds(self) -> np.ndarray:
        """The most likely token at each position, int ``[B, T]``."""
        return self.logits.argmax(axis=-1)

    @cached_property
    def correct(self) -> np.ndarray:
        """Scored positions predicted right, bool ``[B, T]``."""
        return self.mask & (self.preds == self.targets)

    @cached_property
    def nll(self) -> np.ndarray:
        """float64 ``-log p(target)`` at each position; 0 where the target is ignored."""
        z = self.logits.astype(np.float64)
        z = z - z.max(axis=-1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
        safe = np.where(self.valid, self.targets, 0)
        return np.where(self.valid, -np.take_along_axis(logp, safe[..., None], axis=-1)[..., 0], 0.0)


class Metric:
    """A metric accumulated over chunks: ``reset``, ``update(scored)`` per chunk, ``compute``.

    ``name`` is the key it reports under; ``header`` and ``format`` (``percent``, ``float`` or
    ``int``) are how a report shows it by default. A task may rename a metric (``name=``).
    ``higher_is_better`` (torchmetrics' name) tells a sweep which way to select.
    """

    name = "metric"
    header = "metric"
    format = "float"
    digits = 4  # decimals of a ``float`` cell in the report
    higher_is_better = True

    def __init__(self, name: Optional[str] = None):
        if name is not None:
            self.name = name
        self.reset()

    def reset(self) -> None:
        raise NotImplementedError

    def update(self, scored: Scored) -> None:
        raise NotImplementedError

    def compute(self) -> float:
        raise NotImplementedError

    def __call__(self, logits, targets, mask=None) -> float:
        """Score one set at once: ``reset``, ``update``, ``compute``."""
        self.reset()
        self.update(Scored(logits, targets, mask))
        return self.compute()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


class MaskedAccuracy(Metric):
    """Per row, correct scored positions over scored positions; the mean over rows."""

    name, header, format = "masked_acc", "masked acc", "percent"

    def reset(self) -> None:
        self.total, self.rows = 0.0, 0

    def update(self, scored: Scored) -> None:
        self.total += float(masked_accuracy_per_row(scored.correct, scored.mask).sum())
        self.rows += scored.mask.shape[0]

    def compute(self) -> float:
        return self.total / self.rows if self.rows else math.nan


def masked_accuracy_per_row(correct: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """float64 ``[B]``: correct / scored per row, 0.0 for a row with nothing scored (the seed's rule)."""
    scored = mask.sum(axis=1)
    return np.where(scored > 0, correct.sum(axis=1) / np.maximum(scored, 1), 0.0)


class TokenAccuracy(Metric):
    """Correct scored positions over scored positions, pooled over every row (seed 003's ``calculate_acc``)."""

    name, header, format = "token_acc", "token acc", "percent"

    def reset(self) -> None:
        self.correct, self.count = 0, 0

    def update(self, scored: Scored) -> None:
        self.correct += int(scored.correct.sum())
        self.count += int(scored.mask.sum())

    def compute(self) -> float:
        return self.correct / self.count if self.count else math.nan


class ExactMatch(Metric):
    """The fraction of scored spans (whole answers) predicted without a mistake.

    Args:
        name: the key it reports under.
        end_token: if set, only spans holding a target equal to it (a closed answer) count.
    """

    name, header, format = "exact_acc", "exact-match acc", "percent"

    def __init__(self, name: Optional[str] = None, end_token: Optional[int] = None):
        self.end_token = end_token
        super().__init__(name)

    def reset(self) -> None:
        self.exact, self.spans = 0, 0

    def update(self, scored: Scored) -> None:
        mask, correct = scored.mask, scored.correct
        # A span starts where a scored position follows an unscored one (or a row's start).
        prev = np.zeros_like(mask)
        prev[:, 1:] = mask[:, :-1]
        start = (mask & ~prev).ravel()
        flat = mask.ravel()
        span = (np.cumsum(start) - 1)[flat]
        n = int(start.sum())
        wrong = np.bincount(span, weights=(~correct.ravel())[flat], minlength=n)
        if self.end_token is None:
            counted = np.ones(n, dtype=bool)
        else:
            counted = np.bincount(span, weights=(scored.targets.ravel() == self.end_token)[flat], minlength=n) > 0
        self.exact += int((wrong[counted] == 0).sum())
        self.spans += int(counted.sum())

    def compute(self) -> float:
        return self.exact / self.spans if self.spans else math.nan


class CrossEntropy(Metric):
    """Mean next-token cross-entropy (nats) over every position whose target is not ignored."""

    name, header, format = "loss", "loss", "float"
    higher_is_better = False  # and so for its subclasses, perplexity and bits per byte

    def reset(self) -> None:
        self.sum, self.count = 0.0, 0

    def update(self, scored: Scored) -> None:
        self.sum += float(scored.nll.sum())
        self.count += int(scored.valid.sum())

    def compute(self) -> float:
        return self.sum / self.count if self.count else math.nan


class Perplexity(CrossEntropy):
    """``exp`` of the mean cross-entropy: the effective number of equally likely next tokens."""

    name, header, format, digits = "perplexity", "perplexity", "float", 2

    def compute(self) -> float:
        return math.exp(super().compute())


class BitsPerByte(CrossEntropy):
    """Mean cross-entropy in bits per byte of text: ``nats / ln 2 / bytes_per_token``.

    Args:
        name: the key it reports under.
        bytes_per_token: bytes of text per token: 1 for byte-level data (vocabulary 256).
    """

    name, header, format, digits = "bits_per_byte", "bits/byte", "float", 3

    def __init__(self, name: Optional[str] = None, bytes_per_token: float = 1.0):
        self.bytes_per_token = float(bytes_per_token)
        super().__init__(name)

    def compute(self) -> float:
        return super().compute() / math.log(2) / self.bytes_per_token


__all__ = [
    "IGNORE_INDEX",
    "BitsPerByte",
    "CrossEntropy",
    "ExactMatch",
    "MaskedAccuracy",
    "Metric",
    "Perplexity",
    "Scored",
    "TokenAccuracy",
    "masked_accuracy_per_row",
]


def higher_is_better(name: str) -> bool:
    """Which way a metric called ``name`` improves, by the metric class (built in, or a task's
    own subclass) whose default name it ends with (``probe_loss`` -> :class:`CrossEntropy`:
    lower); a name none matches: higher."""
    kinds, todo = [], list(Metric.__subclasses__())
    while todo:
        kinds.append(todo.pop())
        todo += kinds[-1].__subclasses__()
    for kind in sorted(kinds, key=lambda k: -len(k.name)):  # the longest default name that fits
        if name == kind.name or name.endswith("_" + kind.name):
            return kind.higher_is_better
    return True
