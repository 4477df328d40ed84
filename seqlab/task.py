"""The task contract: what to learn and how to score it.

A task knows its vocabulary, makes training batches deterministically from ``(seed, step)``,
computes the loss, and evaluates a model. It never sees an optimizer or a callback.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from seqlab._init_args import record_init_args
from seqlab._paddle import import_paddle
from seqlab.errors import SeqlabError
from seqlab.registry import one_line_summary

paddle = import_paddle()

#: Label of positions that count neither in the loss nor in any metric (seed 003's -100).
IGNORE_INDEX = -100


@dataclass
class Batch:
    """One training or evaluation batch.

    ``inputs`` and ``targets`` are int64 ``[B, T]``; ``targets[:, t]`` is the token that follows
    ``inputs[:, t]``. ``mask`` (optional, bool ``[B, T]``) marks the positions a task scores.
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

    def select(self, rows: slice) -> "Batch":
        """The batch made of ``rows`` (a slice of row indices)."""
        mask = self.mask[rows] if self.mask is not None else None
        return Batch(self.inputs[rows], self.targets[rows], mask)

    def split(self, parts: int) -> list["Batch"]:
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


class Task:
    """Base class of every seqlab task.

    Subclasses set ``vocab_size`` and implement ``train_batch``, ``evaluate`` and ``describe``.
    ``train_batch(step)`` must depend only on the run seed and ``step``: a resumed run then sees
    exactly the batches it would have seen, and every model of a recipe sees the same data.
    """

    vocab_size: int = 0
    #: One line shown by ``seqlab tasks``; defaults to the first line of the class docstring.
    description: str = ""

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
        """Mean next-token cross-entropy over all positions (the seed's training loss)."""
        vocab = logits.shape[-1]
        return paddle.nn.functional.cross_entropy(
            logits.reshape([-1, vocab]), batch.targets.reshape([-1])
        )

    def evaluate(self, model) -> dict[str, float]:
        """Score ``model`` on the task's fixed held-out set; returns plain floats."""
        raise NotImplementedError

    def test(self, model) -> dict[str, float]:
        """The final evaluation after training; by default the same as :meth:`evaluate`.

        A task may add probes here that are too slow to run at every validation (e.g. digit
        reversal's generalisation probe on numbers longer than it was trained on).
        """
        return self.evaluate(model)

    def describe(self, model, num_samples: int = 1) -> str:
        """A human-readable sample: input, gold answer, the model's prediction and their diff.

        It takes the model rather than a batch because a prediction needs one.
        """
        return ""

    def state_dict(self) -> dict[str, Any]:
        """Task state saved in checkpoints (the default task is stateless)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    @classmethod
    def summary(cls) -> str:
        """The one-line description used by ``seqlab tasks``."""
        return one_line_summary(cls)
