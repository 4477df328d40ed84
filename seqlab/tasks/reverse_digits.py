"""Digit reversal: read a number, write it backwards (the seed's task).

A row is a stream of examples ``d1 d2 ... dk , dk ... d2 d1 #`` packed into ``seq_len`` tokens;
the model is trained on plain next-token prediction over the whole row. Only the reversed digits
and the closing ``#`` are predictable, so only those positions are scored (the seed's "AC rate").

Vocabulary (12 tokens): ``'0'..'9' -> 0..9``, ``',' -> 10``, ``'#' -> 11``.

Scored positions, for ``targets = row[1:]``: position ``i`` counts iff ``targets[i]`` is a
reversed digit or the closing ``#``. Equivalently, the last ``,`` or ``#`` among ``row[0..i]``
is a ``,``. Both of the seed's state machines (the RWKV notebook's, and the one in the
Transformer and LSTM notebooks) give this set; ``tests/test_reverse_digits.py`` checks it.
A segment cut off by the end of the row is still scored for the positions it has, as in the
seed.
"""

from __future__ import annotations

import numpy as np
import paddle

from seqlab.errors import SeqlabError
from seqlab.evaluation import logits
from seqlab.metrics import CrossEntropy, ExactMatch, MaskedAccuracy, Scored
from seqlab.summary import Chart, Column, ReportSpec
from seqlab.task import Batch, EvalSet, Task

COMMA = 10
HASH = 11
VOCAB = "0123456789,#"

# Tags that keep the training, evaluation and probe random streams apart even when the run seed
# equals eval_seed. numpy's SeedSequence treats [x] and [x, 0] alike, so every stream gets a tag.
_TRAIN_STREAM = 0x7261696E
_EVAL_STREAM = 0x6576616C
_TEST_STREAM = 0x74657374
_PROBE_STREAM = 0x70726F62


def generate_rows(rng: np.random.Generator, num_rows: int, seq_len: int, digit_min: int, digit_max: int) -> np.ndarray:
    """Rows of packed examples, int64 ``[num_rows, seq_len]``, vectorised.

    Each row starts with a fresh number. A number has ``k`` digits, ``k`` uniform in
    ``[digit_min, digit_max]``, and is uniform over the ``k``-digit numbers: the first digit is
    1-9 when ``k > 1``, and 0-9 when ``k == 1`` (the seed's ``randint(0, 9)``). Numbers of up to
    60 digits exceed int64, so digits are drawn directly rather than as integers.
    """
    rows, _ = _generate(rng, num_rows, seq_len, digit_min, digit_max)
    return rows


def _generate(rng, num_rows, seq_len, digit_min, digit_max):
    # Enough numbers to fill any row even if every one has the fewest digits.
    per_row = -(-seq_len // (2 * digit_min + 2))
    k = rng.integers(digit_min, digit_max + 1, size=(num_rows, per_row))
    seg_len = 2 * k + 2
    starts = np.cumsum(seg_len, axis=1) - seg_len  # [N, per_row], starts[:, 0] == 0
    # Segment id of every position: mark segment starts, then a running count.
    marks = np.zeros((num_rows, seq_len + 1), dtype=np.int64)
    np.put_along_axis(marks, np.minimum(starts, seq_len), 1, axis=1)
    seg = np.cumsum(marks[:, :seq_len], axis=1) - 1
    k_at = np.take_along_axis(k, seg, axis=1)
    start_at = np.take_along_axis(starts, seg, axis=1)
    pos = np.arange(seq_len)
    offset = pos - start_at  # position inside its example, 0 .. 2k+1

    digits = rng.integers(0, 10, size=(num_rows, seq_len))
    leading = (offset == 0) & (k_at > 1)
    digits[leading] = rng.integers(1, 10, size=int(leading.sum()))
    # A reversed digit at offset k+1+j copies the forward digit at offset k-1-j.
    reversed_part = (offset > k_at) & (offset < 2 * k_at + 1)
    source = np.where(reversed_part, start_at + 2 * k_at - offset, pos)
    rows = np.take_along_axis(digits, source, axis=1)
    rows[offset == k_at] = COMMA
    rows[offset == 2 * k_at + 1] = HASH
    # Scored row positions: reversed digits and '#', i.e. offset > k.
    return rows, offset > k_at


def score_mask(rows: np.ndarray) -> np.ndarray:
    """Scored target positions of token rows, bool ``[N, L-1]`` for ``targets = rows[:, 1:]``.

    Target ``i`` is scored iff the last ``,`` or ``#`` in ``rows[:, :i+1]`` is a ``,``: it is
    then a reversed digit or the closing ``#``. Works on any token rows.
    """
    rows = np.asarray(rows)
    idx = np.arange(rows.shape[1])
    last_comma = np.maximum.accumulate(np.where(rows == COMMA, idx, -1), axis=1)
    last_hash = np.maximum.accumulate(np.where(rows == HASH, idx, -1), axis=1)
    return (last_comma > last_hash)[:, :-1]


def score_predictions(targets: np.ndarray, preds: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """The seed's masked accuracy and the exact-match rate of complete reversed numbers.

    ``masked_acc``: per row, correct scored positions / scored positions (0.0 for a row with no
    scored position, as in the seed), averaged over rows.
    ``exact_acc``: over the complete segments (reversed digits and their ``#`` all inside the
    row), the fraction predicted entirely right; NaN if there is no complete segment.
    Both are :mod:`seqlab.metrics` (the task's declared metrics), here on given predictions.
    """
    targets = np.asarray(targets)
    one_hot = np.eye(len(VOCAB), dtype=np.float32)[np.asarray(preds)]  # logits whose argmax is preds
    scored = Scored(one_hot, targets, mask)
    metrics = [MaskedAccuracy(), ExactMatch(end_token=HASH)]
    for metric in metrics:
        metric.reset()
        metric.update(scored)
    return {m.name: m.compute() for m in metrics}


def _render(tokens) -> str:
    return "".join(VOCAB[int(t)] for t in tokens)


def encode(text: str) -> list[int]:
    """Token ids of ``text``: ``'0'..'9' -> 0..9``, ``',' -> 10``, ``'#' -> 11``."""
    ids = []
    for i, ch in enumerate(text):
        token = VOCAB.find(ch)
        if token < 0:
            raise SeqlabError(
                f"reverse_digits: the character {ch!r} (position {i + 1} of {text!r}) is not in "
                f"the vocabulary {VOCAB!r}; write prompts with digits, ',' and '#' only."
            )
        ids.append(token)
    return ids


def decode(ids) -> str:
    """Text of token ids (the inverse of :func:`encode`)."""
    bad = [int(t) for t in ids if not 0 <= int(t) < len(VOCAB)]
    if bad:
        raise SeqlabError(f"reverse_digits: token id {bad[0]} is outside the vocabulary 0..{len(VOCAB) - 1}.")
    return _render(ids)


def expected_continuation(prompt: str) -> str:
    """What a correct model writes after ``prompt``: ``'12345,' -> '54321#'``, ``'12345' -> ',54321#'``.

    Only the last number counts (the text after the last ``#``), so a prompt may hold earlier
    solved examples. A prompt that does not end in a number (and maybe its comma) has no
    defined answer: ``SeqlabError``.
    """
    encode(prompt)  # the characters are checked first, with their own message
    digits, comma, rest = prompt.rsplit("#", 1)[-1].partition(",")
    if not digits or rest:
        raise SeqlabError(
            f"reverse_digits: {prompt!r} does not end in a number to reverse; end the prompt "
            f"with digits and a comma, e.g. '12345,'."
        )
    return ("" if comma else ",") + digits[::-1] + "#"


class ReverseDigits(Task):
    """Reverse a number of up to 60 digits: ``12345,54321#`` (the seed's task).

    Rows of ``seq_len`` tokens hold examples ``digits , reversed(digits) #`` back to back; the
    model learns next-token prediction on the whole row and is scored on the reversed digits and
    the closing ``#``. Metrics: ``masked_acc`` (the seed's per-sample masked accuracy),
    ``exact_acc`` (whole reversed numbers right) and ``loss``; ``test`` adds a probe on longer
    numbers than training ever shows (``probe_masked_acc``, ``probe_exact_acc``).

    Args:
        digit_max: Most digits of a training number (the seed's DIGIT_MAX).
        seq_len: Tokens per row; inputs are ``row[:-1]`` and targets ``row[1:]``. It must be at
            least ``2 * digit_max + 2`` so that every row holds one complete example.
        batch_size: Rows per training batch.
        eval_samples: Rows of the fixed held-out evaluation set (the seed used 100).
        eval_seed: Seed of the held-out and probe sets, independent of the run seed so every run
            and every model is scored on the same rows.
        probe_digit_min: Fewest digits of a probe number (longer than training's by default).
        probe_digit_max: Most digits of a probe number. Probe rows are made long enough to hold
            one complete example, so models with a fixed context (learned positions) may be
            unable to read them; their probe metrics are then NaN.
        probe_samples: Rows of the probe set.
        digit_min: Fewest digits of a training number.
        test_samples: Rows of a separate test set for the final test (0: test on the held-out
            ``eval_samples`` rows, as the seed does). With more rows the figure's sampling noise
            shrinks (about +-1-2 points at 100 rows); the seed's 100-row figure is then reported
            beside it as ``val{eval_samples}_masked_acc``.
    """

    vocab_size = 12
    primary_metric, primary_mode = "masked_acc", "max"

    def __init__(
        self,
        digit_max: int = 60,
        seq_len: int = 129,
        batch_size: int = 256,
        eval_samples: int = 100,
        eval_seed: int = 1234,
        probe_digit_min: int = 61,
        probe_digit_max: int = 80,
        probe_samples: int = 100,
        digit_min: int = 1,
        test_samples: int = 0,
    ):
        if not 1 <= digit_min <= digit_max:
            raise SeqlabError(
                f"reverse_digits: need 1 <= digit_min <= digit_max, got digit_min={digit_min}, "
                f"digit_max={digit_max}; fix the task's init_args."
            )
        if seq_len < 2 * digit_max + 2:
            raise SeqlabError(
                f"reverse_digits: seq_len={seq_len} cannot hold one example of digit_max="
                f"{digit_max} digits; set seq_len to at least {2 * digit_max + 2}."
            )
        if not 1 <= probe_digit_min <= probe_digit_max:
            raise SeqlabError(
                f"reverse_digits: need 1 <= probe_digit_min <= probe_digit_max, got "
                f"{probe_digit_min} and {probe_digit_max}; fix the task's init_args."
            )
        for name, value in (
            ("batch_size", batch_size),
            ("eval_samples", eval_samples),
            ("probe_samples", probe_samples),
        ):
            if value < 1:
                raise SeqlabError(f"reverse_digits: {name} must be at least 1, got {value}; fix the task's init_args.")
        if test_samples < 0:
            raise SeqlabError(
                f"reverse_digits: test_samples must be >= 0 (0: test on the held-out rows), got {test_samples}."
            )
        self.digit_max = digit_max
        self.seq_len = seq_len
        self.batch_size = batch_size
        self.eval_samples = eval_samples
        self.eval_seed = eval_seed
        self.probe_digit_min = probe_digit_min
        self.probe_digit_max = probe_digit_max
        self.probe_samples = probe_samples
        self.digit_min = digit_min
        self.test_samples = test_samples
        # One complete probe example plus the token that precedes its first target.
        self.probe_seq_len = max(seq_len, 2 * probe_digit_max + 3)
        self.seed = 0  # replaced by setup(seed)
        self._eval_rows: np.ndarray | None = None
        self._probe_rows: np.ndarray | None = None
        self._test_rows: np.ndarray | None = None

    # ----------------------------------------------------------------- data
    def batch_rows(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """Numpy rows ``[batch_size, seq_len]`` and their scored mask ``[batch_size, seq_len-1]``."""
        rng = np.random.default_rng([_TRAIN_STREAM, self.seed % (1 << 63), int(step)])
        rows, scored = _generate(rng, self.batch_size, self.seq_len, self.digit_min, self.digit_max)
        return rows, scored[:, 1:]

    def train_batch(self, step: int) -> Batch:
        """The batch for ``step``: a function of (run seed, step) only, never of global RNG state."""
        rows, mask = self.batch_rows(step)
        return Batch(
            inputs=paddle.to_tensor(np.ascontiguousarray(rows[:, :-1])),
            targets=paddle.to_tensor(np.ascontiguousarray(rows[:, 1:])),
            mask=paddle.to_tensor(mask),
        )

    @property
    def eval_rows(self) -> np.ndarray:
        """The fixed held-out rows ``[eval_samples, seq_len]`` (made once from ``eval_seed``)."""
        if self._eval_rows is None:
            rng = np.random.default_rng([_EVAL_STREAM, self.eval_seed % (1 << 63)])
            self._eval_rows = generate_rows(rng, self.eval_samples, self.seq_len, self.digit_min, self.digit_max)
        return self._eval_rows

    @property
    def test_rows(self) -> np.ndarray:
        """The final test's rows: ``test_samples`` fresh rows, or the held-out rows when it is 0."""
        if self.test_samples == 0:
            return self.eval_rows
        if self._test_rows is None:
            rng = np.random.default_rng([_TEST_STREAM, self.eval_seed % (1 << 63)])
            self._test_rows = generate_rows(rng, self.test_samples, self.seq_len, self.digit_min, self.digit_max)
        return self._test_rows

    @property
    def probe_rows(self) -> np.ndarray:
        """The fixed probe rows ``[probe_samples, probe_seq_len]`` of longer numbers."""
        if self._probe_rows is None:
            rng = np.random.default_rng([_PROBE_STREAM, self.eval_seed % (1 << 63)])
            self._probe_rows = generate_rows(
                rng, self.probe_samples, self.probe_seq_len, self.probe_digit_min, self.probe_digit_max
            )
        return self._probe_rows

    # ----------------------------------------------------------- what is scored, and how
    def metrics(self):
        """The seed's masked accuracy, exact match of closed numbers, and the loss on every position."""
        return [MaskedAccuracy(), ExactMatch(end_token=HASH), CrossEntropy()]

    def val_batches(self) -> list[Batch]:
        """The fixed held-out rows as one batch; only reversed digits and ``#`` are scored."""
        return [_scored_batch(self.eval_rows)]

    def test_batches(self) -> list[Batch]:
        return [_scored_batch(self.test_rows)]

    def test_sets(self) -> list[EvalSet]:
        """The length-generalisation probe: numbers longer than training's (NaN if the model can't run
        it), and with a separate test set, the seed's figure on the held-out rows beside it."""
        rows = self.probe_rows
        seed_rows = []
        if self.test_samples:
            seed_rows = [EvalSet([_scored_batch(self.eval_rows)], [MaskedAccuracy()], prefix=self._seed_prefix)]
        return seed_rows + [
            EvalSet(
                [_scored_batch(rows)],
                [MaskedAccuracy(), ExactMatch(end_token=HASH)],
                prefix="probe_",
                optional=True,
                about=f"rows of {rows.shape[1] - 1} tokens (numbers of "
                f"{self.probe_digit_min}-{self.probe_digit_max} digits)",
            )
        ]

    @property
    def _seed_prefix(self) -> str:
        return f"val{self.eval_samples}_"

    def report_spec(self) -> ReportSpec:
        low, high = self.probe_digit_min, self.probe_digit_max
        rows = self.test_samples or self.eval_samples
        seed_column = []
        if self.test_samples:
            seed_column = [
                Column(f"{self._seed_prefix}masked_acc", f"masked acc, the seed's {self.eval_samples} rows", "percent")
            ]
        probe = f"{low}–{high} digits" if low != high else f"{low} digits"
        return ReportSpec(
            primary_metric="masked_acc",
            primary_mode="max",
            primary_label="masked accuracy",
            metrics=["masked_acc", "exact_acc", "loss"]
            + [c.key for c in seed_column]
            + ["probe_masked_acc", "probe_exact_acc"],
            columns=[
                Column(
                    "masked_acc",
                    f"masked acc ({rows:,} rows)" if self.test_samples else "masked acc",
                    "percent",
                    fallback_header="masked acc",
                ),
                *seed_column,
                Column("exact_acc", "exact-match acc", "percent"),
                Column(
                    "probe_masked_acc",
                    f"probe masked acc ({probe})",
                    "percent",
                    fallback_header="probe masked acc (longer numbers)",
                    nan_note="n/a: the model could not read the probe's longer rows, so the probe "
                    "was skipped. A model with a fixed context (learned position embeddings sized "
                    "to the training rows) has no positions for them.",
                ),
            ],
            metrics_noun="Accuracies",
            description="Masked accuracy scores the reversed digits and the closing `#`; exact match "
            "counts whole numbers reversed without a mistake.",
            notes=[f"The probe uses numbers longer than any in training ({probe}; training: up to {self.digit_max})."],
            samples_note="Predictions of each tested model on held-out numbers (`^` marks a wrong token).",
            chart=Chart(
                "accuracy",
                "Accuracy",
                f"test accuracy ({rows:,} held-out rows)",
                "accuracy",
                [["masked_acc", "masked (per digit)"], ["exact_acc", "exact match (whole number)"]],
                percent=True,
                fallback_title="test accuracy (held-out rows)",
            ),
        )

    def describe(self, model, num_samples: int = 1) -> str:
        """The first complete example of the first held-out rows: input, gold, prediction, diff.

        Predictions are teacher-forced (each token predicted from the gold tokens before it), as
        in the metrics.
        """
        rows = self.eval_rows[: max(1, min(num_samples, self.eval_samples))]
        preds = logits(model, rows[:, :-1]).argmax(axis=-1)
        mask = score_mask(rows)
        blocks = []
        for n, (row, pred, m) in enumerate(zip(rows, preds, mask), start=1):
            targets = row[1:]
            (closing,) = np.nonzero(m & (targets == HASH))
            end = int(closing[0])  # __init__ guarantees one complete example per row
            first = end
            while first > 0 and m[first - 1]:
                first -= 1
            digits = end - first  # targets[first] follows the comma row[first]
            gold = targets[first : end + 1]
            guess = pred[first : end + 1]
            ok = guess == gold
            blocks.append(
                "\n".join(
                    [
                        f"sample {n}: {digits}-digit number",
                        f"input : {_render(row[first - digits : first + 1])}",
                        f"gold  : {_render(gold)}",
                        f"pred  : {_render(guess)}",
                        "diff  : " + "".join(" " if good else "^" for good in ok),
                        f"accuracy: {int(ok.sum())}/{len(ok)} ({ok.mean():.1%}), exact: {'yes' if ok.all() else 'no'}",
                    ]
                )
            )
        return "\n\n".join(blocks)

    # ----------------------------------------------------------------- text
    #: Generation stops after this token: an answer ends with '#'.
    stop_token = HASH

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``; a character outside ``0-9 , #`` is a ``SeqlabError`` naming it."""
        return encode(text)

    def decode(self, ids) -> str:
        """Text of token ids."""
        return decode(ids)

    def expected_continuation(self, prompt: str) -> str:
        """The right answer after ``prompt`` (``'12345,' -> '54321#'``); see the module function."""
        return expected_continuation(prompt)

    def is_correct_continuation(self, prompt: str, continuation: str) -> bool:
        """Whether ``continuation`` begins with the right answer (text after it is ignored)."""
        expected = expected_continuation(prompt)
        return continuation[: len(expected)] == expected

    def judge(self, prompt: str, completion: str) -> str | None:
        """``right``, or ``wrong (the reversal is 54321#)``; None for a prompt that ends mid-answer."""
        try:
            expected = expected_continuation(prompt)
        except SeqlabError:  # no number to reverse at its end: continued, not judged
            return None
        return "right" if self.is_correct_continuation(prompt, completion) else f"wrong (the reversal is {expected})"


def _scored_batch(rows: np.ndarray) -> Batch:
    """Held-out token rows as a batch: inputs ``rows[:, :-1]``, targets ``rows[:, 1:]``, the seed's mask."""
    return Batch(inputs=rows[:, :-1], targets=rows[:, 1:], mask=score_mask(rows))
