"""The Trainer: the loop, the event dispatch, and the Trainer's own state.

A step is :meth:`Trainer.training_step`, :meth:`Trainer.backward`, :meth:`Trainer.optimizer_step`.
Everything optional (schedules, clipping, logging, best model, the run's files) is a callback;
precision, data parallelism, signals and pre-run checks have modules of their own. docs/api.md
gives the event order."""

from __future__ import annotations

import logging
import signal
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import paddle

from seqlab import checkpoint
from seqlab._init_args import python_run_config, record_init_args
from seqlab._paddle import configure_cpu_defaults
from seqlab.callback import Callback, Event
from seqlab.callbacks import arrange_callbacks
from seqlab.checkpoint import LAST, checkpoint_file
from seqlab.distributed import DataParallelContext
from seqlab.errors import SeqlabError
from seqlab.evaluation import evaluate
from seqlab.interrupts import ESCALATING, GracefulStop, TrainingInterrupted
from seqlab.io import disk_full
from seqlab.model import Model
from seqlab.nonfinite import update_is_finite
from seqlab.optim import AdamW
from seqlab.precision import Precision
from seqlab.preflight import check_forward, check_run_folder, check_settings, check_test_set, check_vocab
from seqlab.registry import MODELS
from seqlab.seeding import seed_everything
from seqlab.task import Task

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Setup:
    """What :meth:`Trainer._setup` checked and built; ``checkpoint`` (from ``resume_from``) is None for a fresh run."""

    task: Task
    model: Model
    ckpt_path: str | None
    resume_from: Path | None
    checkpoint: dict[str, Any] | None

    def is_for(self, task: Task, model: Model, ckpt_path: str | None) -> bool:
        return self.task is task and self.model is model and self.ckpt_path == ckpt_path


class Trainer:
    """Trains one model on one task, validates it, and tests the checkpoint ``test_checkpoint`` names.

    Args:
        max_steps: Optimizer steps to train for.
        val_every: Validate every this many steps (and after the last); 0 disables.
        log_every: Steps between plain-text progress lines (used by the progress callback); 0 disables them.
        save_every: Write ``checkpoints/last`` every this many steps (and at the end).
        seed: Run seed: data order (``task.train_batch``) and RNG state.
        root_dir: Folder holding all experiments; a run lives in ``root_dir/experiment/run_name``.
        experiment: Name of the experiment (the recipe's name); groups runs for comparison.
        run_name: Name of this run; defaults to the model's registered name.
        optimizer: AdamW settings (lr, weight decay on the model's ``decay`` group, betas, eps).
        precision: ``32-true``, ``bf16-mixed`` or ``16-mixed`` (GPU; float32 with a warning on CPU).
        accumulate_grad_batches: Micro-batches cut from each batch's rows, gradients summed: less memory.
        nonfinite: On a NaN/inf loss or gradient: ``stop`` (exit 1) or ``skip`` (drop the update).
        test_checkpoint: The final test's weights: ``best`` (saved by a callback, else last) or ``last``.
        callbacks: Callbacks to use, in dispatch order (``runs_last`` callbacks run last).
        default_callbacks: Add the defaults (progress, CSV, VisualDL, best checkpoint, run files) missing.
        overwrite: Start over in a run folder holding an earlier run (else: an error, or resume).
        devices: Data-parallel processes ``seqlab fit`` starts (gloo on CPU, NCCL on GPUs).
        config: The resolved config (config.yaml, resume checks); from Python, made from the objects.
    """

    # fmt: off
    def __init__(self, max_steps: int = 1000, val_every: int = 250, log_every: int = 50, save_every: int = 500,
                 seed: int = 42, root_dir: str = "runs", experiment: str = "default", run_name: str | None = None,
                 optimizer: AdamW | None = None, precision: Literal["32-true", "bf16-mixed", "16-mixed"] = "32-true",
                 accumulate_grad_batches: int = 1, nonfinite: Literal["stop", "skip"] = "stop",
                 test_checkpoint: Literal["best", "last"] = "best", callbacks: list[Callback] | None = None,
                 default_callbacks: bool = True, overwrite: bool = False, devices: int = 1,
                 config: dict[str, Any] | None = None) -> None:
        # fmt: on
        check_settings(locals())  # steps, intervals, devices, accumulation, nonfinite: one sentence each
        self.max_steps, self.val_every, self.log_every = max_steps, val_every, log_every
        self.save_every, self.seed, self.overwrite, self.devices = save_every, seed, overwrite, devices
        self.root_dir, self.experiment, self.run_name = Path(root_dir), experiment, run_name
        self.optimizer_config = optimizer or AdamW()
        self.precision = Precision(precision)  # warns here, once, if it cannot run as asked
        self.accumulate_grad_batches, self.nonfinite = accumulate_grad_batches, nonfinite
        self.test_checkpoint = test_checkpoint
        self.callbacks = arrange_callbacks(list(callbacks or []), default_callbacks)
        self.config: dict[str, Any] = dict(config or {})
        self._derived_config = False  # True while self.config is one _bind made, not a given one
        self.dp = DataParallelContext()
        self.world_size, self.rank = self.dp.world_size, self.dp.rank
        self.task, self.model, self.optimizer = None, None, None
        self._prepared: Setup | None = None  # what preflight set up, for the fit that follows
        self._reset_progress()

    # ------------------------------------------------------------------ what callbacks read
    @property
    def is_global_zero(self) -> bool:
        return self.rank == 0

    @property
    def base_lr(self) -> float:
        return float(self.optimizer_config.lr)

    @property
    def run_dir(self) -> Path:
        return self.root_dir / self.experiment / self.run_name

    @property
    def checkpoint_dir(self) -> Path:
        return self.run_dir / "checkpoints"

    def log(self, key: str, value: float) -> None:
        """Add a value to the current step's metrics (seen by ``on_train_batch_end``)."""
        self._step_metrics[key] = float(value)

    def wall_time_s(self) -> float:
        """Wall time of this run so far, including earlier sessions of a resumed run."""
        return self.counters["wall_time_s"] + time.perf_counter() - self._session_start

    # ------------------------------------------------------------------ entry points
    def preflight(self, task: Task, model: Model, ckpt_path: str | None = None) -> Setup:
        """Set up a run without training or writing a file (see :meth:`_setup`); a ``fit`` with the
        same arguments starts from this setup. The CLI sets up every run of a recipe this way first."""
        self._prepared = self._setup(task, model, ckpt_path)
        return self._prepared

    def fit(self, task: Task, model: Model, ckpt_path: str | None = None) -> dict[str, float]:
        """Train ``model`` on ``task`` (resuming from ``ckpt_path``: ``last``, ``best`` or a file),
        then test the ``test_checkpoint`` weights (best, else last; or last); returns the test metrics.
        A resume keeps the run's decisions (:func:`seqlab.checkpoint.check_resume`): a run a callback
        stopped (``should_stop`` is saved) ends at once, and another seed or LR schedule is refused."""
        self._reset_progress()
        try:
            # Under paddle.distributed.launch a repeated SIGTERM is the launcher's retry, not an abort.
            escalating = (signal.SIGINT,) if self.world_size > 1 else ESCALATING
            with GracefulStop(escalating) as self._signals:
                ready = self._prepared
                setup = ready if ready and ready.is_for(task, model, ckpt_path) else self._setup(task, model, ckpt_path)
                seed_everything(self.seed)
                if self.is_global_zero:  # only rank 0 touches files; the others wait for it
                    checkpoint.prepare_run_dir(self.run_dir, fresh=setup.checkpoint is None, overwrite=self.overwrite)
                self._forward_model = self.dp.wrap(model)
                if setup.checkpoint is not None:
                    checkpoint.restore_trainer(self, setup.checkpoint)
                    self.dispatch(Event.ON_LOAD_CHECKPOINT, setup.checkpoint)
                    log.info("resumed %s from %s at step %d", self.run_name, setup.resume_from, self.global_step)
                self.dispatch(Event.ON_FIT_START)
                self.dispatch(Event.ON_TRAIN_START)
                self._train_loop()
                self.dispatch(Event.ON_TRAIN_END)
                metrics = self._test_best()
            self.dispatch(Event.ON_FIT_END)
            return metrics
        except BaseException as exc:
            self.dispatch(Event.ON_EXCEPTION, exc, safe=True)
            full = disk_full(exc, self.run_dir)  # a logger's append, too: one sentence, exit 2
            if full is not None:
                raise full from exc
            raise
        finally:
            self._prepared = None  # a second fit sets up (and builds its optimizer) afresh
            self.dispatch(Event.TEARDOWN, safe=True)
            if self.is_global_zero:  # the run folder's lock (taken at its first write) ends with the fit
                checkpoint.release_run_dir(self.run_dir)

    def validate(self, task: Task, model: Model, ckpt_path: str | None = None) -> dict[str, float]:
        """Evaluate a checkpoint of this run (default: ``last``) on the held-out set; writes nothing."""
        self._bind(task, model)
        tested = checkpoint.load_tested_weights(self.checkpoint_dir, task, model, ckpt_path or LAST)
        task.setup(self.seed)
        return {"step": tested.step, "checkpoint": str(tested.path), **evaluate(task, model, "val")}

    def test(self, task: Task, model: Model, ckpt_path: str | None = None) -> dict[str, float]:
        """The final test of a checkpoint of this run (default: best, else last); writes nothing."""
        self._bind(task, model)
        tested = checkpoint.load_tested_weights(self.checkpoint_dir, task, model, ckpt_path, self.test_checkpoint)
        task.setup(self.seed)
        return {"step": tested.step, "checkpoint": str(tested.path), **evaluate(task, model, "test")}

    def save_checkpoint(self, path: str | Path, meta: dict[str, Any] | None = None) -> None:
        """Write a complete, resumable checkpoint atomically. Every rank calls it at the same steps
        (decisions rest on globally reduced values): rank 0 writes, the barrier makes the rest wait."""
        ckpt = checkpoint.trainer_checkpoint(self, meta)
        self.dispatch(Event.ON_SAVE_CHECKPOINT, ckpt)  # loggers flush here: the file covers what is on disk
        if self.is_global_zero:
            checkpoint.atomic_save(ckpt, path)
        self.dp.barrier()

    # ------------------------------------------------------------------ one optimizer step
    def training_step(self, batch):
        """Forward pass and loss of one (micro-)batch."""
        with self.precision.autocast():
            return self.task.loss(self._forward_model(batch.inputs), batch)

    def backward(self, loss) -> None:
        self.dispatch(Event.ON_BEFORE_BACKWARD, loss)
        self.precision.backward(loss)
        self.dispatch(Event.ON_AFTER_BACKWARD)

    def optimizer_step(self, loss_value: float) -> bool:
        """Unscale, check for NaN/inf, let callbacks clip, step. False when the update was dropped."""
        self.precision.unscale(self.optimizer)
        if not update_is_finite(self, loss_value):  # raises TrainingDiverged unless nonfinite="skip"
            self.optimizer.clear_grad()
            self.counters["skipped_steps"] += 1
            return False
        self.dispatch(Event.ON_BEFORE_OPTIMIZER_STEP, self.optimizer)
        self.precision.step(self.optimizer)
        self.optimizer.clear_grad()
        return True

    def _train_one_step(self) -> None:
        started = time.perf_counter()
        self._step_metrics = {}
        batch = self.dp.shard(self.task.train_batch(self.global_step))
        self.seq_len = int(batch.inputs.shape[1])
        self.dispatch(Event.ON_TRAIN_BATCH_START, batch)
        micro = batch.split(self.accumulate_grad_batches)
        # Each micro-batch's mean loss is weighted by its share of the counted targets, so the
        # summed gradient is the full batch's (also with padding, whose labels don't count).
        counts = [b.num_targets() for b in micro] if len(micro) > 1 else [1]
        loss_value = 0.0
        for i, (part, count) in enumerate(zip(micro, counts)):
            with self.dp.no_sync(self._forward_model, skip=i < len(micro) - 1):
                loss = self.training_step(part)
                if len(micro) > 1:
                    loss = loss * (count / sum(counts))
                self.backward(loss)
            loss_value += loss.item()
        loss_value = self.dp.mean(loss_value)
        lr = float(self.optimizer.get_lr())
        self.optimizer_step(loss_value)
        self.global_step += 1
        elapsed, tokens = time.perf_counter() - started, batch.num_tokens * self.world_size
        self.counters["train_time_s"] += elapsed
        self.counters["train_tokens"] += tokens
        metrics = {"train/loss": loss_value, "train/lr": lr, "train/tokens_per_s": tokens / elapsed}
        if self.counters["skipped_steps"]:
            metrics["train/skipped_steps"] = float(self.counters["skipped_steps"])
        self.dispatch(Event.ON_TRAIN_BATCH_END, {**metrics, **self._step_metrics})

    # ------------------------------------------------------------------ the loop
    def _train_loop(self) -> None:
        self.model.train()
        # Every rank must stop at the same step, or one would wait for the others forever: a stop any rank
        # asks for (signal, should_stop) is one decision for all (Lightning's reduce_boolean_decision).
        self.should_stop = self.dp.any(self.should_stop)
        while self.global_step < self.max_steps and not self.should_stop:
            self._train_one_step()
            step = self.global_step
            signalled, self.should_stop = self.dp.any_each(self._signals.requested, self.should_stop)
            last = step == self.max_steps or self.should_stop
            if self.val_every and (step % self.val_every == 0 or (last and not signalled)):
                self._validate()
                self.should_stop = self.dp.any(self.should_stop)  # e.g. EarlyStopping decides here
            # Saved after validation, so the file holds everything that happened at this step.
            if last or self.should_stop or signalled or (self.save_every and step % self.save_every == 0):
                self.save_checkpoint(checkpoint_file(self.checkpoint_dir, LAST))
            if signalled:
                last_file = str(checkpoint_file(self.checkpoint_dir, LAST))
                raise TrainingInterrupted.after_step(self._signals.signum, step, last_file)
        if self.should_stop:
            log.info("%s: stopped by a callback at step %d of %d", self.run_name, self.global_step, self.max_steps)

    def _validate(self) -> dict[str, float]:
        self.dispatch(Event.ON_VALIDATION_START)
        metrics = {f"val/{k}": v for k, v in evaluate(self.task, self.model, "val").items()}
        self.last_val_metrics = metrics
        self.dispatch(Event.ON_VALIDATION_END, metrics)
        return metrics

    def _test_best(self) -> dict[str, float]:
        # The same load as `seqlab test`: a best checkpoint that does not fit this model is refused.
        tested = checkpoint.load_tested_weights(self.checkpoint_dir, self.task, self.model, rule=self.test_checkpoint)
        self.tested = {"checkpoint": tested.alias, "step": tested.step, "meta": tested.meta}
        log.info("testing %s with the %s checkpoint (step %d): %s", self.run_name, tested.alias, tested.step, tested.path)
        metrics = {f"test/{k}": v for k, v in evaluate(self.task, self.model, "test").items()}
        self.dispatch(Event.ON_TEST_END, metrics)
        return metrics

    # ------------------------------------------------------------------ internals
    def _setup(self, task: Task, model: Model, ckpt_path: str | None) -> Setup:
        """Every stage before the first step, in order (as Lightning's ``Trainer._run`` lists
        them). It writes nothing, so a mistake in any run of a recipe shows before any trains."""
        self._bind(task, model)
        configure_cpu_defaults(paddle)
        task.setup(self.seed)
        resume_from, ckpt = check_run_folder(self, ckpt_path)  # raises before an earlier run is mixed in
        check_vocab(task, model, self.run_name)
        self.precision.reset()  # each fit starts from a fresh loss scale (a resume restores its own)
        self.optimizer = self.optimizer_config.build(model)
        try:  # a callback may reject the configuration here, e.g. a monitor naming no metric
            self.dispatch(Event.SETUP)
        except SeqlabError as exc:
            raise SeqlabError(f"run '{self.run_name}': {exc}") from None
        if ckpt is not None:  # the resume keeps the run's decisions (seed, schedule, callbacks, folder)
            checkpoint.check_resume(self, ckpt, resume_from)
        check_forward(task, model, self.run_name)  # one row through the model, on real data
        check_test_set(task, self.run_name)  # so a run cannot train for hours, then fail its test
        return Setup(task, model, ckpt_path, resume_from, ckpt)

    def _reset_progress(self) -> None:
        """A Trainer can fit again: progress comes from the checkpoint, never from a previous fit."""
        self.global_step, self.should_stop, self.last_val_metrics = 0, False, {}
        self.run_id = uuid.uuid4().hex  # names this run in its checkpoints; a resume takes the saved one
        self.counters = {"train_time_s": 0.0, "train_tokens": 0, "wall_time_s": 0.0, "skipped_steps": 0}
        self._session_start = time.perf_counter()
        self._step_metrics: dict[str, float] = {}
        self._signals = GracefulStop()
        self.seq_len: int | None = None
        self.tested: dict[str, Any] = {}

    def _bind(self, task: Task, model: Model) -> None:
        self.task, self.model = task, model
        self.run_name = self.run_name or MODELS.name_of(type(model)) or type(model).__name__.lower()
        if not self.config or self._derived_config:  # a run driven from Python records what it ran
            self.config, self._derived_config = python_run_config(self, task, model), True

    def dispatch(self, event: Event, *args: Any, safe: bool = False) -> None:
        """Call ``event``'s hook on every callback, in order (Composer's ``run_event``)."""
        for callback in self.callbacks:
            try:
                getattr(callback, event.value)(self, self.task, self.model, *args)
            except Exception:
                if not safe:
                    raise
                # During cleanup a failing callback is logged; it never masks the real error.
                log.exception("%s.%s failed", type(callback).__name__, event.value)


record_init_args(Trainer)  # its own arguments go into the config of a run driven from Python
