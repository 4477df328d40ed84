"""Multi-query associative recall (MQAR), the task of Zoology (Arora et al. 2023, "Zoology:
Measuring and Improving Recall in Efficient Language Models").

A row first lists ``num_kv_pairs`` key-value pairs, then asks for every key again, once each,
at a distance drawn from a power law; the model must answer each query with the key's value::

    inputs:  k1 v1 k2 v2 | 0  0  k2 0  0  0  k1 0  ...
    targets: -100 ...    | -100 -100 v2 -100 ... v1 ...

Only the answer positions (the queried keys) count in the loss and the metrics; every other
target is :data:`~seqlab.metrics.IGNORE_INDEX`. Following Zoology's ``multiquery_ar``: keys are
drawn from ``1 .. vocab_size/2 - 1`` and values from ``vocab_size/2 .. vocab_size - 1``, distinct
within a row; token 0 fills the gaps (or, with ``random_non_queries``, random tokens do); query
``i`` sits at ``2 * k + 2 * gap_i`` with the ``gap``s drawn without replacement from
``p(g) ∝ power_a * (g + 1) ** (power_a - 1)``, ``g = 0 .. (seq_len - 2k) / 2 - 1``.

The data are fixed sets, as in Zoology: ``num_train_examples`` training rows, and separate
validation and test rows, all made from ``data_seed`` (not the run seed, so every model and
every run sees the same rows). The run seed only orders the training rows: epoch ``e`` visits
them in an order drawn from ``(seed, e)``. Validation and test rows that also occur in the
training set are replaced by fresh ones, so neither set overlaps training.

Written for seqlab from the definition in Zoology's ``zoology/data/multiquery_ar.py``; the
generator is vectorised numpy (a different random stream, the same distribution). The
differences from Zoology are listed in docs/results/mqar_cpu/README.md.
"""

from __future__ import annotations

import logging

import numpy as np
import paddle

from seqlab.data import epoch_positions
from seqlab.errors import SeqlabError
from seqlab.metrics import IGNORE_INDEX, CrossEntropy, TokenAccuracy
from seqlab.task import Batch, Task

log = logging.getLogger(__name__)

_STREAM = 0x6D716172  # "mqar": keeps this task's draws apart from other random streams
_TRAIN, _VAL, _TEST, _ORDER = 0, 1, 2, 3
_EVAL_ROWS = 512  # rows per held-out batch (the evaluation runs them in chunks anyway)


# ---------------------------------------------------------------------------- the generator
def distinct_draws(rng: np.random.Generator, rows: int, n: int, k: int) -> np.ndarray:
    """``[rows, k]`` ints in ``0 .. n-1``, distinct within a row, each ordered k-subset equally
    likely (what ``np.random.choice(n, k, replace=False)`` gives per row)."""
    if k > n:
        raise ValueError(f"cannot draw {k} distinct values from {n}")
    if k * k <= n:
        # Draw with replacement and redraw the rows that repeat a value: at k^2 <= n over 60%
        # of rows are accepted each round, so a few rounds do, and memory stays [rows, k].
        out = rng.integers(0, n, size=(rows, k))
        bad = _repeats(out)
        while bad.any():
            out[bad] = rng.integers(0, n, size=(int(bad.sum()), k))
            bad = _repeats(out)
        return out
    # Dense case: the k smallest of n random keys per row, in the order of their keys.
    out = np.empty((rows, k), dtype=np.int64)
    block = max(1, 2**22 // n)
    for start in range(0, rows, block):
        keys = rng.random((min(block, rows - start), n))
        top = np.argpartition(keys, k - 1, axis=1)[:, :k]
        order = np.argsort(np.take_along_axis(keys, top, axis=1), axis=1)
        out[start : start + len(keys)] = np.take_along_axis(top, order, axis=1)
    return out


def _repeats(a: np.ndarray) -> np.ndarray:
    s = np.sort(a, axis=1)
    return (s[:, 1:] == s[:, :-1]).any(axis=1)


def power_law(space: int, power_a: float) -> np.ndarray:
    """Zoology's query-distance distribution over gaps ``0 .. space-1``."""
    p = power_a * np.arange(1, space + 1, dtype=np.float64) ** (power_a - 1)
    return p / p.sum()


def weighted_draws(rng: np.random.Generator, rows: int, p: np.ndarray, k: int) -> np.ndarray:
    """``[rows, k]`` indices drawn without replacement with probabilities ``p``, in draw order.

    The Gumbel top-k trick: the k largest ``log p + Gumbel noise`` are distributed as k
    successive draws without replacement (``np.random.choice(len(p), k, replace=False, p=p)``).
    """
    scores = np.log(p)[None, :] - np.log(-np.log(rng.random((rows, len(p)))))
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1)
    return np.take_along_axis(top, order, axis=1)


def multiquery_ar(
    rng: np.random.Generator,
    num_examples: int,
    vocab_size: int,
    seq_len: int,
    num_kv_pairs: int,
    power_a: float = 0.01,
    random_non_queries: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """MQAR rows: int32 ``inputs [N, seq_len]`` and ``targets [N, seq_len]`` (IGNORE_INDEX but
    at the answer positions, where the target is the queried key's value). int32 halves the
    memory of a 100k-row set; batches are widened to int64 as they are cut."""
    k, context = num_kv_pairs, 2 * num_kv_pairs
    half = vocab_size // 2
    keys = distinct_draws(rng, num_examples, half - 1, k) + 1
    values = distinct_draws(rng, num_examples, vocab_size - half, k) + half
    gaps = weighted_draws(rng, num_examples, power_law((seq_len - context) // 2, power_a), k)

    inputs = np.zeros((num_examples, seq_len), dtype=np.int32)
    inputs[:, 0:context:2], inputs[:, 1:context:2] = keys, values
    rows, where = np.arange(num_examples)[:, None], context + 2 * gaps
    inputs[rows, where] = keys
    targets = np.full((num_examples, seq_len), IGNORE_INDEX, dtype=np.int32)
    targets[rows, where] = values
    if random_non_queries:
        filler = inputs == 0
        inputs[filler] = rng.integers(0, vocab_size, size=int(filler.sum()))
    return inputs, targets


def _row_keys(inputs: np.ndarray) -> np.ndarray:
    """One hashable value per row, for set operations on whole rows."""
    rows = np.ascontiguousarray(inputs)
    return rows.view(np.dtype((np.void, rows.dtype.itemsize * rows.shape[1]))).ravel()


# ---------------------------------------------------------------------------- the task
class QueryAccuracy(TokenAccuracy):
    """The fraction of queries answered right, pooled over every row (Zoology's accuracy)."""

    name, header = "query_acc", "query acc"


class MQAR(Task):
    """Multi-query associative recall (Zoology): answer each queried key with its value.

    Metrics, over the answer positions only: ``query_acc`` (the fraction of queries answered
    right, Zoology's accuracy) and ``loss``.

    Args:
        vocab_size: Tokens; keys come from the lower half, values from the upper half.
        seq_len: Tokens per row (even; the key-value pairs and the query region).
        num_kv_pairs: Key-value pairs per row; each key is queried once.
        power_a: Power-law exponent of the query distances (Zoology: 0.01).
        random_non_queries: Fill the positions between queries with random tokens instead of 0
            (Zoology's default; its Figure 2 uses False).
        num_train_examples: Rows of the fixed training set (Zoology: 100,000).
        num_val_examples: Rows of the validation set that selects settings (Zoology has none:
            it reports its test set; seqlab keeps selection off the test rows).
        num_test_examples: Rows of the final test set (Zoology: 3,000).
        batch_size: Training rows per step.
        data_seed: Seed of all three sets, independent of the run seed.
    """

    primary_metric, primary_mode = "query_acc", "max"

    def __init__(
        self,
        vocab_size: int = 8192,
        seq_len: int = 64,
        num_kv_pairs: int = 4,
        power_a: float = 0.01,
        random_non_queries: bool = True,
        num_train_examples: int = 100_000,
        num_val_examples: int = 1_000,
        num_test_examples: int = 3_000,
        batch_size: int = 64,
        data_seed: int = 0,
    ):
        where = "mqar"
        if seq_len < 2 or seq_len % 2:
            raise SeqlabError(f"{where}: seq_len must be an even number >= 2, got {seq_len}; fix the task's init_args.")
        if num_kv_pairs < 1 or 4 * num_kv_pairs > seq_len:
            raise SeqlabError(
                f"{where}: {num_kv_pairs} key-value pairs need seq_len >= {4 * max(num_kv_pairs, 1)} (the pairs, "
                f"then a query slot per key), got {seq_len}; lower num_kv_pairs or raise seq_len."
            )
        if vocab_size // 2 - 1 < num_kv_pairs or vocab_size <= seq_len:
            raise SeqlabError(
                f"{where}: vocab_size {vocab_size} is too small for {num_kv_pairs} distinct keys and values per row "
                f"and seq_len {seq_len} (Zoology asks vocab_size > seq_len); raise vocab_size."
            )
        if not power_a > 0:
            raise SeqlabError(f"{where}: power_a must be positive (Zoology: 0.01), got {power_a}.")
        for name, value in (
            ("num_train_examples", num_train_examples),
            ("num_val_examples", num_val_examples),
            ("num_test_examples", num_test_examples),
            ("batch_size", batch_size),
        ):
            if value < 1:
                raise SeqlabError(f"{where}: {name} must be at least 1, got {value}; fix the task's init_args.")
        self.vocab_size, self.seq_len, self.num_kv_pairs = vocab_size, seq_len, num_kv_pairs
        self.power_a, self.random_non_queries = power_a, random_non_queries
        self.num_train_examples, self.num_val_examples = num_train_examples, num_val_examples
        self.num_test_examples, self.batch_size, self.data_seed = num_test_examples, batch_size, data_seed
        self.seed = 0
        self._sets: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    # ----------------------------------------------------------------- data
    def _generate(self, which: int, rows: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng([_STREAM, self.data_seed % (1 << 63), which])
        return multiquery_ar(
            rng, rows, self.vocab_size, self.seq_len, self.num_kv_pairs, self.power_a, self.random_non_queries
        )

    def dataset(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """``(inputs, targets)`` of ``train``, ``val`` or ``test``, made once from ``data_seed``."""
        if split not in self._sets:
            if split == "train":
                self._sets[split] = self._generate(_TRAIN, self.num_train_examples)
            else:
                rows = self.num_val_examples if split == "val" else self.num_test_examples
                self._sets[split] = self._held_out(_VAL if split == "val" else _TEST, rows, split)
        return self._sets[split]

    def _held_out(self, which: int, rows: int, split: str) -> tuple[np.ndarray, np.ndarray]:
        """``rows`` held-out rows, none of which occurs in the training set or twice."""
        seen = _row_keys(self.dataset("train")[0])
        for extra in (rows // 10 + 16, rows + 64, 4 * rows + 256):  # more draws only if collisions ate the margin
            inputs, targets = self._generate(which, rows + extra)
            keys = _row_keys(inputs)
            unique = np.zeros(len(inputs), dtype=bool)
            unique[np.unique(keys, return_index=True)[1]] = True
            keep = np.flatnonzero(unique & ~np.isin(keys, seen))
            if len(keep) >= rows:
                break
        else:
            raise SeqlabError(
                f"mqar: only {len(keep)} {split} rows differ from the training rows and each other, fewer than "
                f"{rows}; raise vocab_size or seq_len, or lower num_{split}_examples."
            )
        if len(keep) < len(inputs):
            log.info("mqar: %s rows that repeat a training row or each other were replaced", split)
        keep = keep[:rows]
        return inputs[keep], targets[keep]

    def indices(self, step: int) -> np.ndarray:
        """Training rows of ``step``: positions ``step * batch_size ...`` of the epochs' orders."""
        n = self.num_train_examples

        def order(epoch: int) -> np.ndarray:
            return np.random.default_rng([_STREAM, self.seed % (1 << 63), _ORDER, epoch]).permutation(n)

        return epoch_positions(step, self.batch_size, n, order)

    def train_batch(self, step: int) -> Batch:
        inputs, targets = self.dataset("train")
        rows = self.indices(step)
        return Batch(paddle.to_tensor(inputs[rows].astype(np.int64)), paddle.to_tensor(targets[rows].astype(np.int64)))

    def _batches(self, split: str) -> list[Batch]:
        inputs, targets = self.dataset(split)
        return [
            Batch(inputs[i : i + _EVAL_ROWS].astype(np.int64), targets[i : i + _EVAL_ROWS].astype(np.int64))
            for i in range(0, len(inputs), _EVAL_ROWS)
        ]

    def val_batches(self) -> list[Batch]:
        return self._batches("val")

    def test_batches(self) -> list[Batch]:
        return self._batches("test")

    # ----------------------------------------------------------- what is scored
    def metrics(self):
        return [QueryAccuracy(), CrossEntropy()]
