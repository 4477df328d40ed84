"""Digit reversal with one number per row, padded (seed 003's collate): variable-length samples.

Where ``reverse_digits`` packs examples back to back into rows of a fixed length, this task gives
each number its own row, ``d1 .. dk , dk .. d1 #`` (``2k + 2`` tokens), and pads a batch to its
longest row with :func:`seqlab.data.pad_batch`: inputs with ``pad_id``, labels with -100.

Padding is never learned and never scored: its labels are -100, which the loss and every metric
skip. Scoring is the packed task's (the seed's masked accuracy on the reversed digits and the
closing ``#``, exact match of whole numbers), so the two tasks' numbers compare directly.

Pad id: the vocabulary stays the packed task's 12 tokens, so a model (and its parameter count) is
the same for both tasks. The pad id reuses ``#`` by default: padding comes only after a row's
closing ``#``, so in a causal model it cannot change any prediction that is scored, and its
labels are -100, so nothing learns to predict it. A 13th token would only add an embedding row
that no scored position reads. ``,`` cannot be the pad id: it would open a new answer to score.
"""

from __future__ import annotations

import numpy as np
import paddle

from seqlab.data import pad_batch, shift
from seqlab.errors import SeqlabError
from seqlab.metrics import IGNORE_INDEX
from seqlab.summary import ReportSpec
from seqlab.task import Batch, EvalSet
from seqlab.tasks.reverse_digits import (
    _EVAL_STREAM,
    _PROBE_STREAM,
    _TRAIN_STREAM,
    COMMA,
    HASH,
    VOCAB,
    ReverseDigits,
    generate_rows,
    score_mask,
)


class ReverseDigitsPadded(ReverseDigits):
    """Reverse one number per row, rows padded to the longest in the batch (seed 003's collate).

    Metrics as ``reverse_digits``: ``masked_acc``, ``exact_acc``, ``loss`` (over every real,
    unpadded target), and the probe on longer numbers in the final test. Padding counts nowhere.

    Args:
        digit_max: Most digits of a training number.
        batch_size: Numbers (rows) per training batch.
        eval_samples: Numbers of the fixed held-out set.
        eval_seed: Seed of the held-out and probe sets, the same for every run and model.
        probe_digit_min: Fewest digits of a probe number.
        probe_digit_max: Most digits of a probe number.
        probe_samples: Numbers of the probe set.
        digit_min: Fewest digits of a training number.
        pad_id: Input token of padding (its labels are -100); any token but ``,`` (10).
    """

    def __init__(
        self,
        digit_max: int = 60,
        batch_size: int = 256,
        eval_samples: int = 100,
        eval_seed: int = 1234,
        probe_digit_min: int = 61,
        probe_digit_max: int = 80,
        probe_samples: int = 100,
        digit_min: int = 1,
        pad_id: int = HASH,
    ):
        super().__init__(
            digit_max=digit_max,
            seq_len=2 * digit_max + 2,
            batch_size=batch_size,
            eval_samples=eval_samples,
            eval_seed=eval_seed,
            probe_digit_min=probe_digit_min,
            probe_digit_max=probe_digit_max,
            probe_samples=probe_samples,
            digit_min=digit_min,
        )
        if not 0 <= pad_id < len(VOCAB) or pad_id == COMMA:
            raise SeqlabError(
                f"reverse_digits_padded: pad_id must be a token id 0..11 other than ',' (10), got "
                f"{pad_id}; the default {HASH} ('#') is safe."
            )
        self.pad_id = pad_id
        self._eval: tuple | None = None
        self._probe: tuple | None = None

    # ----------------------------------------------------------------- data
    def numbers(self, rng: np.random.Generator, count: int, digit_min: int, digit_max: int) -> list[np.ndarray]:
        """``count`` examples ``digits , reversed #``, one array each (the packed generator's first)."""
        rows = generate_rows(rng, count, 2 * digit_max + 2, digit_min, digit_max)  # row 0 is whole
        ends = np.argmax(rows == HASH, axis=1)
        return [row[: end + 1] for row, end in zip(rows, ends)]

    def train_batch(self, step: int) -> Batch:
        """``batch_size`` numbers of (run seed, step), padded to the longest: ``[B, 2k_max + 1]``."""
        rng = np.random.default_rng([_TRAIN_STREAM, self.seed % (1 << 63), int(step)])
        batch = self._scored(
            *pad_batch(self.numbers(rng, self.batch_size, self.digit_min, self.digit_max), self.pad_id)
        )
        return Batch(paddle.to_tensor(batch.inputs), paddle.to_tensor(batch.targets), paddle.to_tensor(batch.mask))

    @property
    def eval_rows(self) -> np.ndarray:
        """The held-out numbers, padded token rows ``[eval_samples, 2k_max + 2]`` (for samples)."""
        return self._eval_ids()[0]

    @property
    def probe_rows(self) -> np.ndarray:
        return self._probe_ids()[0]

    def _eval_ids(self):
        if self._eval is None:
            rng = np.random.default_rng([_EVAL_STREAM, self.eval_seed % (1 << 63)])
            self._eval = pad_batch(self.numbers(rng, self.eval_samples, self.digit_min, self.digit_max), self.pad_id)
        return self._eval

    def _probe_ids(self):
        if self._probe is None:
            rng = np.random.default_rng([_PROBE_STREAM, self.eval_seed % (1 << 63)])
            numbers = self.numbers(rng, self.probe_samples, self.probe_digit_min, self.probe_digit_max)
            self._probe = pad_batch(numbers, self.pad_id)
        return self._probe

    # ----------------------------------------------------------- what is scored
    def val_batches(self) -> list[Batch]:
        return [self._scored(*self._eval_ids())]

    def test_batches(self) -> list[Batch]:
        # The packed task's test_batches would score these padded rows as packed ones (padding
        # included); the final test here is the held-out set, as the seed's.
        return self.val_batches()

    def test_sets(self) -> list[EvalSet]:
        (probe,) = super().test_sets()  # the packed task's probe metrics and wording, on padded rows
        probe.batches = [self._scored(*self._probe_ids())]
        return [probe]

    def _scored(self, ids: np.ndarray, labels: np.ndarray) -> Batch:
        """Padded rows as a numpy batch: the shift, and the scored mask (reversed digits and ``#``, never padding)."""
        return shift(ids, labels, score_mask(ids) & (labels[:, 1:] != IGNORE_INDEX))

    def report_spec(self) -> ReportSpec:
        spec = super().report_spec()
        spec.notes.append(
            "Each row holds one number, padded to the longest in its batch; padding counts in no metric and no loss."
        )
        return spec
