"""Evaluation is shared code, not the task's: eval mode, no gradients, chunks, the declared metrics.

A task says what to score (its held-out batches, its metrics, extra test sets such as a probe);
this module says how a model is run to score it, in one place:

- :func:`inference_mode`: ``model.eval()`` and ``paddle.no_grad()``, the previous mode after;
- :func:`predict`: logits of any number of rows, :data:`EVAL_CHUNK_ROWS` rows per forward pass;
- :func:`score`: every set's batches through the model, chunk by chunk, into its metrics;
- :func:`declared_max_len`: the longest rows a model declares it reads (an optional set beyond it is NaN);
- :func:`evaluate`: what the Trainer calls at each validation and for the final test.

Scoring is pure: this module loads no checkpoint (see :func:`seqlab.checkpoint.load_tested_weights`).
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterable, Iterator

import numpy as np
import paddle

from seqlab.metrics import Scored

log = logging.getLogger(__name__)

#: Rows per forward pass when scoring: bounds memory for big models and big held-out sets.
EVAL_CHUNK_ROWS = 128


@contextlib.contextmanager
def inference_mode(model):
    """``model.eval()`` and ``paddle.no_grad()`` inside; the model's previous mode after."""
    was_training = model.training
    model.eval()
    try:
        with paddle.no_grad():
            yield model
    finally:
        if was_training:
            model.train()


def to_numpy(x) -> np.ndarray:
    return x.numpy() if hasattr(x, "numpy") else np.asarray(x)


def predict(model, inputs, chunk_rows: int = EVAL_CHUNK_ROWS) -> Iterator[tuple[slice, np.ndarray]]:
    """``(rows, logits)`` per chunk of ``inputs`` (int ``[N, T]``): float ``[n, T, V]`` numpy logits.

    Runs in eval mode without gradients, ``chunk_rows`` rows per forward pass.
    """
    inputs = to_numpy(inputs)
    with inference_mode(model):
        for start in range(0, len(inputs), chunk_rows):
            rows = slice(start, min(start + chunk_rows, len(inputs)))
            yield rows, model(paddle.to_tensor(np.ascontiguousarray(inputs[rows]))).numpy()


def logits(model, inputs, chunk_rows: int = EVAL_CHUNK_ROWS) -> np.ndarray:
    """All logits of ``inputs`` at once (for samples and small sets), float ``[N, T, V]``."""
    return np.concatenate([out for _, out in predict(model, inputs, chunk_rows)], axis=0)


def score(model, sets, chunk_rows: int = EVAL_CHUNK_ROWS) -> dict[str, float]:
    """Run ``model`` over each :class:`seqlab.task.EvalSet` and compute its metrics.

    Returns ``{prefix + metric.name: value}`` over the sets, in order. An ``optional`` set whose
    rows are longer than the model's declared ``max_len`` (e.g. a length probe for a model with a
    learned position table) is not run: its metrics are NaN, with one warning. Any exception the
    model raises propagates, on an optional set too, so a model bug is never reported as "n/a".
    """
    results: dict[str, float] = {}
    for eval_set in sets:
        for metric in eval_set.metrics:
            metric.reset()
        try:
            _accumulate(model, eval_set.batches, eval_set.metrics, chunk_rows, eval_set.optional)
            values = {m.name: float(m.compute()) for m in eval_set.metrics}
        except _RowsTooLong as exc:
            name = eval_set.prefix.rstrip("_") or "an optional"
            log.warning(
                "%s set skipped: the model cannot read %s, as its max_len is %d; its metrics are NaN.",
                name,
                eval_set.about or f"its rows of {exc.length} tokens",
                exc.limit,
            )
            values = {m.name: math.nan for m in eval_set.metrics}
        results.update({eval_set.prefix + k: v for k, v in values.items()})
    return results


def declared_max_len(model) -> int | None:
    """The longest rows ``model`` declares it reads (its ``max_len`` attribute), or None for no limit."""
    limit = getattr(model, "max_len", None)
    return limit if isinstance(limit, int) and not isinstance(limit, bool) else None


class _RowsTooLong(Exception):
    """An optional set's rows exceed the model's declared ``max_len``: the one expected failure."""

    def __init__(self, length: int, limit: int):
        super().__init__(f"rows of {length} tokens, max_len={limit}")
        self.length, self.limit = length, limit


def _accumulate(model, batches: Iterable, metrics, chunk_rows: int, optional: bool = False) -> None:
    limit = declared_max_len(model) if optional else None
    for batch in batches:
        # Checked per batch, before the model runs: ``batches`` may be a generator.
        length = int(batch.inputs.shape[1])
        if limit is not None and length > limit:
            raise _RowsTooLong(length, limit)
        targets = to_numpy(batch.targets)
        mask = None if batch.mask is None else to_numpy(batch.mask)
        for rows, out in predict(model, batch.inputs, chunk_rows):
            chunk = Scored(out, targets[rows], None if mask is None else mask[rows])
            for metric in metrics:
                metric.update(chunk)


def evaluate(task, model, stage: str = "val") -> dict[str, float]:
    """The Trainer's validation (``val``) or final test (``test``) of ``model`` on ``task``.

    Runs the task's ``evaluate``/``test`` (by default :func:`score` on its declared sets) in
    eval mode without gradients, and returns plain floats.
    """
    with inference_mode(model):
        results = task.test(model) if stage == "test" else task.evaluate(model)
    return {k: float(v) for k, v in results.items()}
