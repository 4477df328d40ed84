"""A user's task: sort the digits of a number, ``3141,1134#``, registered as ``sort_digits``.

    seqlab fit --recipe examples/custom_task.yaml          (from the seqlab repo root)

A task is registered when its module is imported. A recipe names it by ``class_path``, the
module's import path from the folder you run ``seqlab`` in (the CLI puts that folder on the
import path): ``examples.custom_task.SortDigits`` from the repo root, ``custom_task.SortDigits``
from inside examples/. Importing the module registers ``sort_digits``, so Python code can then
use ``TASKS.get("sort_digits")``. (To make a bare ``task: sort_digits`` work everywhere, ship the
task in a package with a ``seqlab.tasks`` entry point, as examples/plugin_gru does for a model.)

Rows pack examples ``d1 .. dk , sorted(d1 .. dk) #`` back to back into ``seq_len`` tokens, as in
digit reversal; the model learns next-token prediction on the whole row and is scored on the
sorted digits and the closing ``#`` (the only predictable tokens).
"""

from __future__ import annotations

import numpy as np
import paddle

from seqlab import Batch, Task, register_task
from seqlab.evaluation import logits
from seqlab.metrics import CrossEntropy, ExactMatch, MaskedAccuracy

VOCAB = "0123456789,#"  # token id = index
COMMA, HASH = 10, 11


@register_task("sort_digits")
class SortDigits(Task):
    """Sort the digits of a number: ``3141,1134#``.

    Metrics (declared below, computed by seqlab): ``masked_acc`` (correct scored tokens / scored
    tokens, averaged over rows), ``exact_acc`` (complete sorted answers entirely right) and
    ``loss`` (cross-entropy over all positions).

    Args:
        digit_min: Fewest digits of a number.
        digit_max: Most digits of a number.
        seq_len: Tokens per row (inputs are ``row[:-1]``, targets ``row[1:]``); at least
            ``2 * digit_max + 2``, so a row holds one complete example.
        batch_size: Rows per training batch.
        eval_samples: Rows of the fixed held-out set.
        eval_seed: Seed of the held-out set, the same for every run and model.
    """

    vocab_size = len(VOCAB)
    primary_metric, primary_mode = "masked_acc", "max"  # higher is better

    def __init__(
        self,
        digit_min: int = 1,
        digit_max: int = 8,
        seq_len: int = 65,
        batch_size: int = 32,
        eval_samples: int = 100,
        eval_seed: int = 1234,
    ):
        if not 1 <= digit_min <= digit_max or seq_len < 2 * digit_max + 2:
            raise ValueError(
                "sort_digits: need 1 <= digit_min <= digit_max and "
                f"seq_len >= 2 * digit_max + 2, got {digit_min}, {digit_max}, {seq_len}."
            )
        self.digit_min, self.digit_max, self.seq_len = digit_min, digit_max, seq_len
        self.batch_size, self.eval_samples, self.eval_seed = batch_size, eval_samples, eval_seed
        self.seed = 0  # the Trainer calls setup(seed) before training
        # The fixed held-out set: made once, from eval_seed only.
        self.eval_rows, self.eval_mask = self._rows(np.random.default_rng([1, eval_seed]), eval_samples)

    def _rows(self, rng, n):
        """``n`` rows ``[n, seq_len]`` and their scored-target mask ``[n, seq_len - 1]``."""
        rows = np.zeros((n, self.seq_len), dtype=np.int64)
        scored = np.zeros((n, self.seq_len), dtype=bool)  # True where a row token is an answer
        for r in range(n):
            tokens, answer = [], []
            while len(tokens) < self.seq_len:
                digits = rng.integers(0, 10, size=rng.integers(self.digit_min, self.digit_max + 1))
                example = [*digits, COMMA, *np.sort(digits), HASH]
                tokens += example
                answer += [False] * (len(digits) + 1) + [True] * (len(digits) + 1)
            rows[r], scored[r] = tokens[: self.seq_len], answer[: self.seq_len]
        return rows, scored[:, 1:]  # targets are row[1:]

    def train_batch(self, step: int) -> Batch:
        """A function of (run seed, step) only: resumed runs and every model see the same data."""
        rows, mask = self._rows(np.random.default_rng([0, self.seed, step]), self.batch_size)
        return Batch(paddle.to_tensor(rows[:, :-1]), paddle.to_tensor(rows[:, 1:]), paddle.to_tensor(mask))

    # What the task is scored on: seqlab runs the model (eval mode, no gradients, in chunks) over
    # val_batches() and computes these metrics; the report ranks runs by primary_metric.
    def metrics(self):
        return [MaskedAccuracy(), ExactMatch(end_token=HASH), CrossEntropy()]

    def val_batches(self):
        return [Batch(self.eval_rows[:, :-1], self.eval_rows[:, 1:], self.eval_mask)]

    def describe(self, model, num_samples: int = 1) -> str:
        """The first example of held-out rows: input, gold, prediction and a ^ under each error."""
        preds = logits(model, self.eval_rows[:, :-1]).argmax(-1)
        blocks = []
        for row, pred, mask in list(zip(self.eval_rows, preds, self.eval_mask))[:num_samples]:
            targets = row[1:]
            first = int(np.argmax(mask))  # row[first] is the first example's ','
            end = int(np.argmax(mask & (targets == HASH)))  # its '#' is targets[end]
            k = end - first  # digits of the number
            gold, guess = targets[first : end + 1], pred[first : end + 1]
            show = lambda tokens: "".join(VOCAB[t] for t in tokens)
            blocks.append(
                f"input : {show(row[first - k : first + 1])}\ngold  : {show(gold)}\n"
                f"pred  : {show(guess)}\ndiff  : " + "".join(" " if a == b else "^" for a, b in zip(gold, guess))
            )
        return "\n\n".join(blocks)
