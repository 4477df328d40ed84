"""The task contract: what to learn and how to score it.

A task knows its vocabulary, makes training batches deterministically from ``(seed, step)`` and
held-out batches, and *declares* how it is scored: its metrics, its primary metric and the
report's columns. Running a model to score it (eval mode, no gradients, chunks) is shared code
in :mod:`seqlab.evaluation`. A task never sees an optimizer or a callback.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

import paddle

from seqlab._init_args import record_init_args
from seqlab.errors import SeqlabError
from seqlab.metrics import IGNORE_INDEX, CrossEntropy, Metric
from seqlab.summary import Chart, Column, ReportSpec
from seqlab.text import one_line_summary


@dataclass
class Batch:
    """One training or evaluation batch.

    ``inputs`` and ``targets`` are int64 ``[B, T]`` (Paddle tensors for training; held-out
    batches may be numpy arrays); ``targets[:, t]`` is the token that follows ``inputs[:, t]``,
    or :data:`IGNORE_INDEX` (-100) where nothing is to be predicted (padding). ``mask``
    (optional, bool ``[B, T]``) narrows the positions the accuracy metrics score.
    """

    inputs: Any
    targets: Any
    mask: Any = None

    @property
    def num_tokens(self) -> int:
        return int(self.inputs.shape[0] * self.inputs.shape[1])

    @property
    def num_rows(self) -> int:
        return int(self.inputs.shape[0])

    def num_targets(self, ignore_index: int = IGNORE_INDEX) -> int:
        """Targets that count in the loss (not ``ignore_index``): the weight of a micro-batch."""
        return int((self.targets != ignore_index).astype("int64").sum().item())

    def select(self, rows: slice) -> Batch:
        """The batch made of ``rows`` (a slice of row indices)."""
        mask = self.mask[rows] if self.mask is not None else None
        return Batch(self.inputs[rows], self.targets[rows], mask)

    def split(self, parts: int) -> list[Batch]:
        """``parts`` consecutive row blocks whose sizes differ by at most one (gradient accumulation)."""
        if parts == 1:
            return [self]
        n = self.num_rows
        if parts > n:
            raise SeqlabError(
                f"accumulate_grad_batches={parts} needs at least {parts} rows per process, but the "
                f"batch has {n}; lower accumulate_grad_batches or raise the task's batch_size."
            )
        bounds = [n * i // parts for i in range(parts + 1)]
        return [self.select(slice(a, b)) for a, b in zip(bounds[:-1], bounds[1:])]


@dataclass
class EvalSet:
    """Held-out batches and the metrics that score them.

    Attributes:
        batches: the batches (a list, or a generator made when the set is scored).
        metrics: fresh :class:`seqlab.metrics.Metric` instances.
        prefix: put before every metric's name (``probe_`` -> ``probe_masked_acc``).
        optional: a model whose declared ``max_len`` is shorter than these rows (e.g. learned
            positions) gets NaN for this set's metrics and a warning, instead of failing; any
            other error the model raises propagates.
        about: what the set holds, for that warning (``rows of 162 tokens``).
    """

    batches: Iterable[Batch]
    metrics: list[Metric]
    prefix: str = ""
    optional: bool = False
    about: str = ""


class Task:
    """Base class of every seqlab task.

    A task implements ``train_batch(step)`` and ``val_batches()`` and declares how it is scored:
    ``metrics()``, ``primary_metric``/``primary_mode``, optionally ``test_sets()`` (extra sets
    for the final test, such as a probe) and ``report_spec()`` (the report's columns and
    words). ``evaluate``/``test`` then run in shared code (:mod:`seqlab.evaluation`); a task
    overrides them only for something the shared path cannot do. ``describe`` shows samples.

    ``train_batch(step)`` must depend only on the run seed and ``step``: a resumed run then sees
    exactly the batches it would have seen, and every model of a recipe sees the same data.
    """

    vocab_size: int = 0
    #: One line shown by ``seqlab tasks``; defaults to the first line of the class docstring.
    description: str = ""
    #: The metric that ranks runs in the report, and whether higher (``max``) or lower is better.
    primary_metric: str = "loss"
    primary_mode: Literal["min", "max"] = "min"

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        record_init_args(cls)  # so a run driven from Python can write its config.yaml

    def setup(self, seed: int) -> None:
        """Called by the Trainer before training with the run seed."""
        self.seed = int(seed)

    def train_batch(self, step: int) -> Batch:
        """The batch for optimizer step ``step`` (0-based), deterministic in (seed, step)."""
        raise NotImplementedError

    def loss(self, logits, batch: Batch):
        """Mean next-token cross-entropy over the targets that are not :data:`IGNORE_INDEX`.

        Paddle's own ``mean`` divides by every position, padding included, so a padded batch
        is summed and divided by its counted targets; a batch without padding keeps the plain
        mean (the seed's loss, bit for bit).
        """
        vocab = logits.shape[-1]
        logits, targets = logits.reshape([-1, vocab]), batch.targets.reshape([-1])
        counted = batch.num_targets()
        if counted == targets.shape[0]:
            return paddle.nn.functional.cross_entropy(logits, targets)
        per_token = paddle.nn.functional.cross_entropy(logits, targets, reduction="none", ignore_index=IGNORE_INDEX)
        return per_token.sum() / max(counted, 1)

    # ------------------------------------------------------------------ what a task declares
    def metrics(self) -> list[Metric]:
        """Fresh metric instances that score the held-out set (default: the loss)."""
        return [CrossEntropy()]

    def val_batches(self) -> Iterable[Batch]:
        """The fixed held-out batches, the same for every run and every call."""
        raise NotImplementedError(f"{type(self).__name__} must implement val_batches() (or evaluate())")

    def test_batches(self) -> Iterable[Batch]:
        """The final test's main set; by default the held-out validation batches (as the seed tests)."""
        return self.val_batches()

    def test_sets(self) -> list[EvalSet]:
        """Extra sets scored only by the final test (e.g. a length-generalisation probe)."""
        return []

    def report_spec(self) -> ReportSpec:
        """How the report shows this task's runs: one column per metric, ranked by the primary one.

        Override it to word the columns, notes and chart yourself (digit reversal does).
        """
        metrics = self.metrics() + [m for s in self.test_sets() for m in _renamed(s)]
        columns = [Column(m.name, m.header, m.format, m.digits) for m in metrics]
        primary = next((m for m in metrics if m.name == self.primary_metric), None)
        chart = None
        if primary is not None:
            chart = Chart(
                name=f"test_{primary.name}",
                heading=f"Test {primary.header}",
                title=f"test {primary.header}",
                ylabel=primary.header,
                series=[[primary.name, primary.header]],
                percent=primary.format == "percent",
            )
        return ReportSpec(
            primary_metric=self.primary_metric,
            primary_mode=self.primary_mode,
            primary_label=primary.header if primary is not None else self.primary_metric,
            metrics=[m.name for m in metrics],
            columns=columns,
            chart=chart,
        )

    # ------------------------------------------------------------------ scoring (shared code)
    def evaluate(self, model) -> dict[str, float]:
        """Score ``model`` on the held-out batches with the declared metrics; plain floats."""
        from seqlab.evaluation import score

        return score(model, [EvalSet(self.val_batches(), self.metrics())])

    def test(self, model) -> dict[str, float]:
        """The final evaluation after training: ``test_batches()``, then every ``test_sets()`` set."""
        from seqlab.evaluation import score

        return score(model, [EvalSet(self.test_batches(), self.metrics()), *self.test_sets()])

    def describe(self, model, num_samples: int = 1) -> str:
        """A human-readable sample: input, gold answer, the model's prediction and their diff.

        It takes the model rather than a batch because a prediction needs one.
        """
        return ""

    def judge(self, prompt: str, completion: str) -> str | None:
        """A verdict on a model's ``completion`` of ``prompt`` (``seqlab predict`` prints it after
        the text), e.g. ``right``; None when there is nothing to judge (the default)."""
        return None

    def state_dict(self) -> dict[str, Any]:
        """Task state saved in checkpoints (the default task is stateless)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    @classmethod
    def summary(cls) -> str:
        """The one-line description used by ``seqlab tasks``."""
        return one_line_summary(cls)


def _renamed(eval_set: EvalSet) -> list[Metric]:
    """The set's metrics under the names they report with (its prefix added)."""
    for metric in eval_set.metrics:
        metric.name = eval_set.prefix + metric.name
    return eval_set.metrics


__all__ = ["IGNORE_INDEX", "Batch", "EvalSet", "Task"]
