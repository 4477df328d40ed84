"""Evaluation is shared code, not the task's: eval mode, no gradients, chunks, the declared metrics.

A task says what to score (its held-out batches, its metrics, extra test sets such as a probe);
this module says how a model is run to score it, in one place:

- :func:`inference_mode`: ``model.eval()`` and ``paddle.no_grad()``, the previous mode after;
- :func:`predict`: logits of any number of rows, :data:`EVAL_CHUNK_ROWS` rows per forward pass;
- :func:`score`: every set's batches through the model, chunk by chunk, into its metrics;
- :func:`evaluate`: what the Trainer calls at each validation and for the final test.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterable, Iterator
from pathlib import Path

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

    Returns ``{prefix + metric.name: value}`` over the sets, in order. An ``optional`` set the
    model cannot run (it raises) gives NaN for its metrics and one warning.
    """
    results: dict[str, float] = {}
    for eval_set in sets:
        for metric in eval_set.metrics:
            metric.reset()
        try:
            _accumulate(model, eval_set.batches, eval_set.metrics, chunk_rows)
            values = {m.name: float(m.compute()) for m in eval_set.metrics}
        except Exception as exc:  # noqa: BLE001  (a model may fail in many ways on unusual rows)
            if not eval_set.optional:
                raise
            name = eval_set.prefix.rstrip("_") or "an optional"
            log.warning(
                "%s set skipped: the model failed on %s: %s: %s; its metrics are NaN.",
                name,
                eval_set.about or "its rows",
                type(exc).__name__,
                exc,
            )
            values = {m.name: math.nan for m in eval_set.metrics}
        results.update({eval_set.prefix + k: v for k, v in values.items()})
    return results


def _accumulate(model, batches: Iterable, metrics, chunk_rows: int) -> None:
    for batch in batches:
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


def load_weights(
    checkpoint_dir: Path, task, model, ckpt_path: str | None, test_checkpoint: str = "best"
) -> tuple[Path, int]:
    """Load a checkpoint of a run (its ``checkpoint_dir``) into ``model``; returns ``(path, step)``.

    ``ckpt_path`` None means the weights a finished fit is tested on, by the run's
    ``test_checkpoint`` rule (``best``: best, else last; ``last``). The checkpoint must have been
    written for this model, task and architecture.
    """
    from seqlab.checkpoint import LEGACY_SUFFIX, check_compatible, load_checkpoint, resolve_ckpt_path, tested_weights
    from seqlab.errors import SeqlabError
    from seqlab.registry import MODELS, TASKS

    if ckpt_path is None:
        path, which = tested_weights(checkpoint_dir, test_checkpoint)
        if not path.is_file():
            if any(Path(checkpoint_dir).glob(f"*{LEGACY_SUFFIX}")):
                resolve_ckpt_path(which, checkpoint_dir)  # names the convert command for the old file
            raise SeqlabError(f"no checkpoint in '{checkpoint_dir}'; train this run first (seqlab fit).")
    else:
        path = resolve_ckpt_path(ckpt_path, checkpoint_dir)
    ckpt = load_checkpoint(path)
    check_compatible(ckpt, path, MODELS.name_of(type(model)), TASKS.name_of(type(task)), model.state_dict())
    model.set_state_dict(ckpt["model"])
    return path, int(ckpt["step"])


def evaluate_checkpoint(trainer, ckpt_path: str | None, test: bool) -> dict[str, float]:
    """Load a checkpoint of ``trainer``'s run into its model and evaluate it; writes nothing.

    ``test=True`` runs the task's final test (probes included), otherwise its validation.
    """
    path, step = load_weights(trainer.checkpoint_dir, trainer.task, trainer.model, ckpt_path, trainer.test_checkpoint)
    trainer.task.setup(trainer.seed)
    results = evaluate(trainer.task, trainer.model, "test" if test else "val")
    return {"step": step, "checkpoint": str(path), **results}
