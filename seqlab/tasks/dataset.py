"""Any ``paddle.io.Dataset`` of token sequences as a task: Lightning's DataModule, in seqlab's terms.

    from seqlab.tasks.dataset import DatasetTask
    task = DatasetTask(train=my_train_set, val=my_val_set, vocab_size=1000, batch_size=16)
    Trainer(max_steps=500).fit(task, model)

Each item is one sequence of token ids (a list, numpy array or Paddle tensor); the model learns
next-token prediction on it (inputs ``seq[:-1]``, targets ``seq[1:]``). A batch pads its
sequences to the longest with :func:`seqlab.data.pad_batch`: inputs with ``pad_value``, labels
with -100, which no loss or metric counts.

Order: the data is an endless run of epochs; epoch ``e`` visits every item once, in an order
drawn from ``(seed, e)`` (or in dataset order, without ``shuffle``), and step ``s`` takes the
items at positions ``s * batch_size`` .. ``(s + 1) * batch_size - 1`` of that run. So a batch is
a function of (seed, step) alone: a resumed run continues at exactly the same data position,
with no loader state to save.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Optional

import numpy as np
import paddle

from seqlab.data import check_ids, epoch_positions, pad_batch, shift
from seqlab.errors import SeqlabError
from seqlab.evaluation import EVAL_CHUNK_ROWS, to_numpy
from seqlab.metrics import CrossEntropy, Perplexity, TokenAccuracy
from seqlab.task import Batch, Task

Dataset = paddle.io.Dataset

_ORDER_STREAM = 0x64617461  # keeps this task's shuffles apart from other random streams


class DatasetTask(Task):
    """Train on any ``paddle.io.Dataset`` of token sequences; sequences are padded per batch.

    Metrics on ``val``: ``loss`` (cross-entropy over real tokens), ``perplexity`` and
    ``token_acc`` (correct next tokens / counted tokens, seed 003's ``calculate_acc``).

    Args:
        train: Items are 1-D sequences of token ids (at least 2 each), one training row per item.
        val: The held-out sequences (needed for validation and the final test).
        vocab_size: Token ids are below this.
        batch_size: Sequences per training batch.
        pad_value: The input id of padding; its labels are -100, so it is never predicted.
        shuffle: A new order each epoch, drawn from (seed, epoch); False keeps the dataset's order.
    """

    def __init__(
        self,
        train: Dataset,
        val: Optional[Dataset] = None,
        vocab_size: int = 256,
        batch_size: int = 32,
        pad_value: int = 0,
        shuffle: bool = True,
    ):
        if len(train) < 1:
            raise SeqlabError("dataset: the train dataset is empty; give it at least one sequence.")
        if vocab_size < 1 or batch_size < 1:
            raise SeqlabError(
                f"dataset: vocab_size and batch_size must be at least 1, got {vocab_size} and "
                f"{batch_size}; fix the task's arguments."
            )
        if not 0 <= pad_value < vocab_size:
            raise SeqlabError(
                f"dataset: pad_value {pad_value} is not a token id below vocab_size {vocab_size}; "
                "pick an id the model can read (its labels are -100 anyway)."
            )
        self.train, self.val = train, val
        self.vocab_size, self.batch_size, self.pad_value, self.shuffle = vocab_size, batch_size, pad_value, shuffle
        self.seed = 0

    # ----------------------------------------------------------------- data
    def indices(self, step: int) -> np.ndarray:
        """Items of the batch of ``step``: positions ``step * batch_size ...`` of the epochs' orders."""
        return epoch_positions(step, self.batch_size, len(self.train), self._order)

    def _order(self, epoch: int) -> np.ndarray:
        n = len(self.train)
        if not self.shuffle:
            return np.arange(n)
        return np.random.default_rng([_ORDER_STREAM, self.seed % (1 << 63), epoch]).permutation(n)

    def train_batch(self, step: int) -> Batch:
        batch = self._batch(self.train, self.indices(step), f"step {step}'s batch")
        return Batch(paddle.to_tensor(batch.inputs), paddle.to_tensor(batch.targets))

    def val_batches(self) -> Iterator[Batch]:
        if self.val is None or len(self.val) == 0:
            raise SeqlabError(
                "dataset: validation and the final test need held-out sequences; pass val= to DatasetTask."
            )
        for start in range(0, len(self.val), EVAL_CHUNK_ROWS):
            yield self._batch(self.val, range(start, min(start + EVAL_CHUNK_ROWS, len(self.val))), "the val set")

    def _batch(self, dataset, indices, what: str) -> Batch:
        seqs = []
        for i in indices:
            seq = to_numpy(dataset[int(i)])
            if seq.ndim != 1 or len(seq) < 2 or not np.issubdtype(seq.dtype, np.integer):
                raise SeqlabError(
                    f"dataset: item {int(i)} of {what} is a {seq.ndim}-D {seq.dtype} array of "
                    f"{seq.size} values; each item must be a sequence of at least 2 token ids."
                )
            seqs.append(seq.astype(np.int64))
        ids, labels = pad_batch(seqs, self.pad_value)
        check_ids(labels, self.vocab_size, f"dataset ({what})", "set vocab_size above the largest id, or fix the data.")
        return shift(ids, labels)

    # ----------------------------------------------------------- what is scored
    def metrics(self):
        return [CrossEntropy(), Perplexity(), TokenAccuracy()]
