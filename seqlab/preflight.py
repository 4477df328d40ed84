"""Checks run before a run writes anything: each failure is one sentence naming the fix.

Pure checks: none builds anything, fires an event or writes a file. ``Trainer._setup`` calls
them in order between its own stages. A recipe may hold several runs; the CLI sets up all of
them before the first one trains, so a mistake in the last run is found in seconds, not after
the first run's hour.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from seqlab.errors import SeqlabError, first_line
from seqlab.evaluation import inference_mode, to_numpy


def check_root_dir(root_dir: Path) -> None:
    """The run folder can be created under ``root_dir`` (probed with a temporary folder)."""
    path = Path(root_dir).absolute()
    existing = path
    while not existing.exists():
        existing = existing.parent
    problem = None
    if not existing.is_dir():
        problem = f"'{existing}' is a file, not a folder"
    else:
        try:  # os.access says yes to root everywhere; only trying tells (e.g. /proc)
            os.rmdir(tempfile.mkdtemp(prefix=".seqlab-probe-", dir=existing))
        except OSError as exc:
            problem = f"'{existing}' is not writable ({exc.strerror})"
    if problem:
        raise SeqlabError(
            f"trainer.root_dir '{root_dir}' cannot be created: {problem}; pass a writable --trainer.root_dir."
        )


def check_vocab(task, model, run: str) -> None:
    """A model whose embedding is smaller than the task's vocabulary would crash inside Paddle."""
    vocab = getattr(model, "vocab_size", None)
    if isinstance(vocab, int) and task.vocab_size and vocab < task.vocab_size:
        raise SeqlabError(
            f"run '{run}': the model's vocabulary ({vocab}) is smaller than the task's ({task.vocab_size}); set "
            f"model.init_args.vocab_size to {task.vocab_size}, or leave it unset to take the task's."
        )


def check_token_ids(batch, model, task, run: str) -> None:
    """Every id of ``batch`` (labels -100 aside) is below the model's vocabulary.

    Paddle's CPU embedding says so in its own words, other kernels may not at all; this names
    both numbers before any forward pass.
    """
    import numpy as np

    from seqlab.metrics import IGNORE_INDEX

    vocab = getattr(model, "vocab_size", None)
    vocab = vocab if isinstance(vocab, int) and vocab > 0 else task.vocab_size
    if not vocab:
        return
    targets = to_numpy(batch.targets).ravel()
    ids = np.concatenate([to_numpy(batch.inputs).ravel(), targets[targets != IGNORE_INDEX]])
    bad = ids[(ids < 0) | (ids >= vocab)]
    if bad.size:
        worst = int(bad.max()) if int(bad.max()) >= vocab else int(bad.min())
        raise SeqlabError(
            f"run '{run}': the task's first batch holds token id {worst}, but the model's vocabulary has "
            f"{vocab} ids (0..{vocab - 1}); raise model.init_args.vocab_size (and the task's) above "
            f"{max(worst, 0)}, or fix the data."
        )


def check_forward(task, model, run: str) -> None:
    """One row of the first batch through the model: its ids and shape rules are checked on real data."""
    batch = task.train_batch(0)
    check_token_ids(batch, model, task, run)
    try:
        with inference_mode(model):
            logits = model(batch.inputs[:1])
    except SeqlabError:
        raise  # already one sentence: a model's own check, or a signal (TrainingInterrupted) mid-forward
    except Exception as exc:  # noqa: BLE001  (Paddle raises many kinds; the message is the point)
        first = first_line(exc)
        raise SeqlabError(f"run '{run}': the model cannot read the task's rows: {first}") from None
    if int(logits.shape[-1]) < task.vocab_size:
        raise SeqlabError(
            f"run '{run}': the model returns {int(logits.shape[-1])} logits per token, fewer than "
            f"the task's vocabulary ({task.vocab_size}); set model.init_args.vocab_size to "
            f"{task.vocab_size}."
        )


def check_settings(settings: dict) -> None:
    """The Trainer's settings (its ``__init__``'s locals): steps, accumulation and devices at least
    1, intervals at least 0, ``nonfinite`` stop or skip."""
    counts = {
        k: settings[k]
        for k in ("max_steps", "accumulate_grad_batches", "devices", "val_every", "save_every", "log_every")
    }
    nonfinite = settings["nonfinite"]
    for name, value in counts.items():
        low = 1 if name in ("max_steps", "accumulate_grad_batches", "devices") else 0
        if value < low:
            what = " (0 disables it)" if low == 0 else ""
            raise SeqlabError(f"trainer.{name} must be at least {low}{what}, got {value}.")
    if nonfinite not in ("stop", "skip"):
        raise SeqlabError(f"trainer.nonfinite must be 'stop' or 'skip', got {nonfinite!r}.")


def check_test_set(task, run: str) -> None:
    """The final test's main set can be read (its first batch), so a run cannot train for hours
    and then fail at its test (e.g. a ``DatasetTask`` without ``val=``). Tasks that replace
    ``Task.test`` say themselves what their test reads."""
    from seqlab.task import Task

    if type(task).test is not Task.test:
        return
    try:
        next(iter(task.test_batches()), None)
    except SeqlabError as exc:
        raise SeqlabError(f"run '{run}': {exc}") from None


def check_run_names(trainer) -> None:
    """The experiment and run names are plain names, so the run folder stays under ``root_dir``."""
    from seqlab.io import check_name

    check_name(trainer.experiment, "trainer.experiment", nested=True)
    check_name(trainer.run_name, "trainer.run_name")


def check_writable_run_dir(run_dir: Path) -> None:
    """An existing run folder (and its checkpoints/) can be written: made read-only (no write
    permission bit, which even root's writes would ignore), or on a read-only mount, is refused."""
    import stat

    for folder in (Path(run_dir), Path(run_dir) / "checkpoints"):
        if not folder.is_dir():
            continue
        problem = None
        if not folder.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH):
            problem = "is read-only"
        else:
            try:
                os.rmdir(tempfile.mkdtemp(prefix=".seqlab-probe-", dir=folder))
            except OSError as exc:
                problem = f"is not writable ({exc.strerror})"
        if problem:
            raise SeqlabError(
                f"run folder '{folder}' {problem}; make it writable (chmod u+w), or pass another "
                "--trainer.root_dir (or --trainer.run_name) for this run."
            )


def check_run_folder(trainer, ckpt_path):
    """The folder can be made, and the run either resumes a compatible checkpoint or starts
    fresh without mixing with an earlier run's files. Returns ``(path, checkpoint)`` or ``(None, None)``.
    """
    from seqlab.checkpoint import check_compatible, load_checkpoint, resolve_ckpt_path
    from seqlab.checkpoint.run_dir import check_claim, check_run_dir_free
    from seqlab.registry import MODELS, TASKS

    check_run_names(trainer)
    if trainer.is_global_zero:  # only rank 0 writes files, so only it needs to be able to
        check_root_dir(trainer.root_dir)
        check_run_dir_free(trainer.run_dir)  # no other fit is writing this folder
        check_writable_run_dir(trainer.run_dir)
    path = resolve_ckpt_path(ckpt_path, trainer.checkpoint_dir, resume=True)
    ckpt = load_checkpoint(path) if path is not None else None
    if ckpt is not None:
        check_compatible(
            ckpt,
            path,
            MODELS.name_of(type(trainer.model)),
            TASKS.name_of(type(trainer.task)),
            trainer.model.state_dict(),
            config=trainer.config,
        )
    else:
        check_claim(trainer.run_dir, trainer.overwrite)  # an earlier run is there, or not seqlab's to delete
    return path, ckpt
