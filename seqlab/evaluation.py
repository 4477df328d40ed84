"""Evaluation is the Trainer's job, not the task's: eval mode, no gradients, back to training after.

Tasks say what to score; this module says how a model is run to score it, in one place.
"""

from __future__ import annotations

import contextlib

from seqlab._paddle import import_paddle

paddle = import_paddle()


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


def evaluate_checkpoint(trainer, ckpt_path: str | None, test: bool) -> dict[str, float]:
    """Load a checkpoint of ``trainer``'s run into its model and evaluate it; writes nothing.

    ``ckpt_path`` None means the weights a finished fit is tested on (best, else last).
    ``test=True`` runs the task's final test (probes included), otherwise its validation.
    """
    from seqlab.checkpoint import best_or_last, check_compatible, load_checkpoint, resolve_ckpt_path
    from seqlab.errors import SeqlabError
    from seqlab.registry import MODELS, TASKS

    task, model = trainer.task, trainer.model
    if ckpt_path is None:
        found = best_or_last(trainer.checkpoint_dir)
        if found is None:
            resolve_ckpt_path("last", trainer.checkpoint_dir)  # names the convert command for old files
            raise SeqlabError(f"no checkpoint in '{trainer.checkpoint_dir}'; train this run first (seqlab fit).")
        path = found[0]
    else:
        path = resolve_ckpt_path(ckpt_path, trainer.checkpoint_dir)
    ckpt = load_checkpoint(path)
    check_compatible(ckpt, path, MODELS.name_of(type(model)), TASKS.name_of(type(task)), model.state_dict())
    model.set_state_dict(ckpt["model"])
    task.setup(trainer.seed)
    with inference_mode(model):
        results = task.test(model) if test else task.evaluate(model)
    return {"step": int(ckpt["step"]), "checkpoint": str(path), **{k: float(v) for k, v in results.items()}}
