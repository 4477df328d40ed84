"""The Trainer: owns the loop, dispatches callback events, saves and restores checkpoints.

Everything optional (lr schedules, clipping, logging, best-model selection) lives in callbacks;
the Trainer only knows the base classes. The event order is documented in docs/api.md.
"""

from __future__ import annotations

import json
import logging
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from seqlab._paddle import configure_cpu_defaults, import_paddle
from seqlab.callback import Callback, Event
from seqlab.checkpoint import (
    FORMAT_VERSION,
    atomic_save,
    capture_rng_state,
    check_compatible,
    checkpoint_file,
    claim_run_dir,
    load_checkpoint,
    load_optimizer_state,
    optimizer_state,
    resolve_ckpt_path,
    restore_rng_state,
    write_text_atomic,
)
from seqlab.errors import SeqlabError
from seqlab.model import Model
from seqlab.optim import AdamW
from seqlab.registry import MODELS, TASKS
from seqlab.task import Batch, Task

paddle = import_paddle()
log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and Paddle, so model initialisation is reproducible."""
    random.seed(seed)
    np.random.seed(seed)
    paddle.seed(seed)


class Trainer:
    """Trains one model on one task, validates it, and tests its best checkpoint.

    Args:
        max_steps: Optimizer steps to train for.
        val_every: Run ``task.evaluate`` every this many steps (and after the last); 0 disables.
        log_every: Steps between plain-text progress lines (used by the progress callback).
        save_every: Write ``checkpoints/last.safetensors`` every this many steps (and at the end).
        seed: Run seed: model initialisation, data order (``task.train_batch``) and RNG state.
        root_dir: Folder holding all experiments; a run lives in ``root_dir/experiment/run_name``.
        experiment: Name of the experiment (the recipe's name); groups runs for comparison.
        run_name: Name of this run; defaults to the model's registered name.
        optimizer: AdamW settings (lr, weight decay on the model's ``decay`` group, betas, eps).
        callbacks: Callbacks to use, in dispatch order (monitoring callbacks always run last).
        default_callbacks: Add progress, CSV, VisualDL and moving-average checkpoint callbacks
            for each of those kinds not already given in ``callbacks``.
        overwrite: Start over when the run folder already holds checkpoints of an earlier run
            (its files are deleted). Without it, such a fit stops with an error, unless it
            resumes with ``ckpt_path``.
    """

    def __init__(
        self,
        max_steps: int = 1000,
        val_every: int = 250,
        log_every: int = 50,
        save_every: int = 500,
        seed: int = 42,
        root_dir: str = "runs",
        experiment: str = "default",
        run_name: str | None = None,
        optimizer: AdamW | None = None,
        callbacks: list[Callback] | None = None,
        default_callbacks: bool = True,
        overwrite: bool = False,
    ) -> None:
        if max_steps < 1:
            raise SeqlabError(f"trainer.max_steps must be at least 1, got {max_steps}.")
        for name, value in (("val_every", val_every), ("save_every", save_every), ("log_every", log_every)):
            if value < 0:
                raise SeqlabError(f"trainer.{name} must be >= 0 (0 disables it), got {value}.")
        self.max_steps = max_steps
        self.val_every = val_every
        self.log_every = max(1, log_every)
        self.save_every = save_every
        self.seed = seed
        self.overwrite = overwrite
        self.root_dir = Path(root_dir)
        self.experiment = experiment
        self.run_name = run_name
        self.optimizer_config = optimizer or AdamW()
        self.callbacks = self._arrange_callbacks(list(callbacks or []), default_callbacks)
        self.config: dict[str, Any] = {}  # the resolved config; saved as run_dir/config.yaml
        self.global_step = 0
        self.should_stop = False  # a callback sets it to end training after the current step
        self.optimizer = None
        self.task: Task | None = None
        self.model: Model | None = None
        self.world_size = paddle.distributed.get_world_size()
        self.rank = paddle.distributed.get_rank()
        self._step_metrics: dict[str, float] = {}
        self._train_time_s = 0.0  # time spent in optimizer steps, over all sessions of the run
        self._train_tokens = 0
        self._wall_time_s = 0.0  # wall time of earlier sessions (a resumed run adds to it)
        self._session_start = time.perf_counter()
        self._seq_len: int | None = None
        self.last_val_metrics: dict[str, float] = {}

    # ------------------------------------------------------------------ public API
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

    def hparams(self) -> dict[str, Any]:
        """The run's key hyperparameters, flat, for loggers (e.g. VisualDL's ``add_hparams``)."""
        hp: dict[str, Any] = {
            "run": self.run_name,
            "model": MODELS.name_of(type(self.model)) if self.model is not None else None,
            "params": self.model.num_parameters() if self.model is not None else 0,
            "lr": self.base_lr,
            "weight_decay": self.optimizer_config.weight_decay,
            "max_steps": self.max_steps,
            "seed": self.seed,
        }
        model_args = (self.config.get("model") or {}).get("init_args") or {}
        for key, value in model_args.items():
            if isinstance(value, (int, float, str, bool)):
                hp[f"model.{key}"] = value
        return hp

    def fit(self, task: Task, model: Model, ckpt_path: str | None = None) -> dict[str, float]:
        """Train ``model`` on ``task``, then test the best (else last) checkpoint.

        ``ckpt_path`` resumes from ``"last"``, ``"best"`` or a file path. Returns the test
        metrics, which are also written to ``run_dir/metrics.json``.
        """
        self._bind(task, model)
        # A Trainer can fit again: progress comes from the checkpoint, never from a previous fit.
        self.global_step, self.should_stop, self.last_val_metrics = 0, False, {}
        self._train_time_s = self._wall_time_s = 0.0
        self._train_tokens = 0
        self._session_start = time.perf_counter()
        try:
            self._setup(ckpt_path)
            self._dispatch(Event.ON_FIT_START)
            self._dispatch(Event.ON_TRAIN_START)
            self._train_loop()
            self._dispatch(Event.ON_TRAIN_END)
            metrics = self._test()
            self._dispatch(Event.ON_FIT_END)
            return metrics
        except BaseException as exc:
            self._dispatch_safely(Event.ON_EXCEPTION, exc)
            raise
        finally:
            self._dispatch_safely(Event.TEARDOWN)

    def evaluate_checkpoint(self, task: Task, model: Model, ckpt_path: str | None,
                            test: bool = False) -> dict[str, float]:
        """Load a checkpoint of this run into ``model`` and evaluate it without training.

        ``test=True`` runs ``task.test`` (the final evaluation, probes included), otherwise
        ``task.evaluate``. Nothing is written.
        """
        self._bind(task, model)
        if ckpt_path is None:  # like the end of fit: best if there is one, else last
            has_best = checkpoint_file(self.checkpoint_dir, "best").is_file()
            ckpt_path = "best" if test and has_best else "last"
            if not checkpoint_file(self.checkpoint_dir, ckpt_path).is_file():
                raise SeqlabError(f"no checkpoint in '{self.checkpoint_dir}'; train this run first (seqlab fit).")
        path = resolve_ckpt_path(ckpt_path, self.checkpoint_dir)
        ckpt = load_checkpoint(path)
        check_compatible(ckpt, path, MODELS.name_of(type(model)), TASKS.name_of(type(task)), model.state_dict())
        model.set_state_dict(ckpt["model"])
        task.setup(self.seed)
        results = task.test(model) if test else task.evaluate(model)
        return {"step": int(ckpt["step"]), "checkpoint": str(path), **{k: float(v) for k, v in results.items()}}

    def validate(self) -> dict[str, float]:
        """Evaluate the current weights on the task's held-out set (``val/*`` metrics)."""
        self._dispatch(Event.ON_VALIDATION_START)
        metrics = {f"val/{k}": float(v) for k, v in self.task.evaluate(self.model).items()}
        self.last_val_metrics = metrics
        self._dispatch(Event.ON_VALIDATION_END, metrics)
        return metrics

    def save_checkpoint(self, path: str | Path, meta: dict[str, Any] | None = None) -> None:
        """Write a complete, resumable checkpoint atomically (rank 0 writes, every rank waits).

        Every rank calls this at the same steps (decisions rest on the global-mean loss), so the
        barrier keeps the other ranks from reading a checkpoint before it exists.
        """
        if self.is_global_zero:
            self._write_checkpoint(path, meta)
        if self.world_size > 1:
            paddle.distributed.barrier()

    def _write_checkpoint(self, path: str | Path, meta: dict[str, Any] | None) -> None:
        ckpt = {
            "format_version": FORMAT_VERSION,
            "step": self.global_step,
            "model": self.model.state_dict(),
            "optimizer": optimizer_state(self.optimizer, self.model),
            "callbacks": {cb.state_key: cb.state_dict() for cb in self.callbacks},
            "task": self.task.state_dict(),
            "rng": capture_rng_state(),
            "trainer": {
                "train_time_s": self._train_time_s,
                "train_tokens": self._train_tokens,
                "wall_time_s": self.wall_time_s(),
                "last_val_metrics": self.last_val_metrics,
            },
            "config": self.config,
            "meta": dict(meta or {}),
            "model_name": MODELS.name_of(type(self.model)),
            "task_name": TASKS.name_of(type(self.task)),
        }
        atomic_save(ckpt, path)

    def wall_time_s(self) -> float:
        """Wall time of this run so far, including earlier sessions of a resumed run."""
        return self._wall_time_s + time.perf_counter() - self._session_start

    # ------------------------------------------------------------------ internals
    def _bind(self, task: Task, model: Model) -> None:
        self.task, self.model = task, model
        if self.run_name is None:
            self.run_name = MODELS.name_of(type(model)) or type(model).__name__.lower()

    @staticmethod
    def _arrange_callbacks(callbacks: list[Callback], add_defaults: bool) -> list[Callback]:
        if add_defaults:
            from seqlab.callbacks import missing_defaults

            callbacks += missing_defaults([type(cb) for cb in callbacks])
        keys = [cb.state_key for cb in callbacks]
        dupes = sorted({k for k in keys if keys.count(k) > 1})
        if dupes:
            raise SeqlabError(
                f"two callbacks share the state_key {dupes[0]!r}; remove one or give it its own state_key."
            )
        # Stable sort: monitoring callbacks (best checkpoint, early stopping) run last.
        return sorted(callbacks, key=lambda cb: cb.monitor)

    def _dispatch(self, event: Event, *args: Any) -> None:
        for callback in self.callbacks:
            getattr(callback, event.value)(self, self.task, self.model, *args)

    def _dispatch_safely(self, event: Event, *args: Any) -> None:
        """Dispatch during cleanup: a failing callback is logged, never masks the real error."""
        for callback in self.callbacks:
            try:
                getattr(callback, event.value)(self, self.task, self.model, *args)
            except Exception:
                log.exception("%s.%s failed", type(callback).__name__, event.value)

    def _setup(self, ckpt_path: str | None) -> None:
        configure_cpu_defaults(paddle)
        seed_everything(self.seed)
        self.task.setup(self.seed)
        # The path is resolved before anything is written, so a bad --ckpt_path changes nothing.
        resume_from = resolve_ckpt_path(ckpt_path, self.checkpoint_dir)
        if resume_from is None:
            claim_run_dir(self.run_dir, self.overwrite)
        ckpt = load_checkpoint(resume_from) if resume_from is not None else None
        if ckpt is not None:
            check_compatible(ckpt, resume_from, MODELS.name_of(type(self.model)),
                             TASKS.name_of(type(self.task)), self.model.state_dict(), config=self.config)
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        self.optimizer = self.optimizer_config.build(self.model)
        self._forward_model = self.model
        if self.world_size > 1:
            paddle.distributed.init_parallel_env()
            # find_unused_parameters: RWKV-7's first layer owns value-residual weights it never
            # uses; without it the gradient all-reduce would wait for them forever.
            self._forward_model = paddle.DataParallel(self.model, find_unused_parameters=True)
        self._dispatch(Event.SETUP)
        if self.config and self.is_global_zero:
            # Written once the callbacks accepted the config, so a rejected one leaves no file.
            write_text_atomic(self.run_dir / "config.yaml", yaml.safe_dump(self.config, sort_keys=False))
        if ckpt is not None:
            self._restore(ckpt, resume_from)

    def _restore(self, ckpt: dict[str, Any], path: Path) -> None:
        self.model.set_state_dict(ckpt["model"])
        load_optimizer_state(self.optimizer, self.model, ckpt["optimizer"])
        states = ckpt.get("callbacks", {})
        for cb in self.callbacks:
            if cb.state_key in states:
                cb.load_state_dict(states[cb.state_key])
        self.task.load_state_dict(ckpt.get("task", {}))
        restore_rng_state(ckpt["rng"])
        trainer_state = ckpt.get("trainer", {})
        self._train_time_s = trainer_state.get("train_time_s", 0.0)
        self._train_tokens = trainer_state.get("train_tokens", 0)
        self._wall_time_s = trainer_state.get("wall_time_s", 0.0)
        self.last_val_metrics = trainer_state.get("last_val_metrics", {})
        self.global_step = int(ckpt["step"])
        log.info("resumed %s from %s at step %d", self.run_name, path, self.global_step)

    def _shard(self, batch: Batch) -> Batch:
        """Each rank trains on its rows of the global batch, so results don't depend on world size."""
        if self.world_size == 1:
            return batch
        rows = slice(self.rank, None, self.world_size)
        mask = batch.mask[rows] if batch.mask is not None else None
        return Batch(batch.inputs[rows], batch.targets[rows], mask)

    def _global_mean(self, loss) -> float:
        """The loss over the whole global batch: each rank only sees its own rows."""
        if self.world_size == 1:
            return loss.item()
        total = loss.detach().clone()
        paddle.distributed.all_reduce(total)
        return total.item() / self.world_size

    def _train_loop(self) -> None:
        self.model.train()
        while self.global_step < self.max_steps and not self.should_stop:
            started = time.perf_counter()
            self._step_metrics = {}
            batch = self._shard(self.task.train_batch(self.global_step))
            self._seq_len = int(batch.inputs.shape[1])
            self._dispatch(Event.ON_TRAIN_BATCH_START, batch)
            logits = self._forward_model(batch.inputs)
            loss = self.task.loss(logits, batch)
            self._dispatch(Event.ON_BEFORE_BACKWARD, loss)
            loss.backward()
            self._dispatch(Event.ON_AFTER_BACKWARD)
            self._dispatch(Event.ON_BEFORE_OPTIMIZER_STEP, self.optimizer)
            lr = float(self.optimizer.get_lr())
            self.optimizer.step()
            self.optimizer.clear_grad()
            self.global_step += 1
            loss_value = self._global_mean(loss)  # also waits for the step: the timing is real
            elapsed = time.perf_counter() - started
            tokens = batch.num_tokens * self.world_size
            self._train_time_s += elapsed
            self._train_tokens += tokens
            metrics = {"train/loss": loss_value, "train/lr": lr, "train/tokens_per_s": tokens / elapsed}
            metrics.update(self._step_metrics)
            self._dispatch(Event.ON_TRAIN_BATCH_END, metrics)
            last = self.global_step == self.max_steps or self.should_stop
            if self.val_every and (self.global_step % self.val_every == 0 or last):
                self.validate()
                self.model.train()
            last = last or self.should_stop  # a validation callback may have asked to stop
            # Saved after validation, so the file holds everything that happened at this step.
            if last or (self.save_every and self.global_step % self.save_every == 0):
                self.save_checkpoint(checkpoint_file(self.checkpoint_dir, "last"))
        if self.should_stop:
            log.info("%s: stopped by a callback at step %d of %d", self.run_name, self.global_step, self.max_steps)

    def _test(self) -> dict[str, float]:
        best = checkpoint_file(self.checkpoint_dir, "best")
        which = "best" if best.is_file() else "last"
        path = best if which == "best" else checkpoint_file(self.checkpoint_dir, "last")
        ckpt = load_checkpoint(path)
        self.model.set_state_dict(ckpt["model"])
        meta = ckpt.get("meta", {})
        log.info("testing %s with the %s checkpoint (step %d): %s", self.run_name, which, ckpt["step"], path)
        metrics = {f"test/{k}": float(v) for k, v in self.task.test(self.model).items()}
        self._dispatch(Event.ON_TEST_END, metrics)
        summary: dict[str, Any] = {
            "run": self.run_name,
            "experiment": self.experiment,
            "model": MODELS.name_of(type(self.model)) or type(self.model).__name__,
            "params": self.model.num_parameters(),
            "steps": self.global_step,
            "tokens_per_s": self._train_tokens / self._train_time_s if self._train_time_s else 0.0,
            "train_time_s": self._train_time_s,
            "wall_time_s": self.wall_time_s(),
            "tested_checkpoint": which,
            "tested_step": int(ckpt["step"]),
        }
        seq_len = self._seq_len or int(self.task.train_batch(0).inputs.shape[1])
        state_size = self.model.state_size(seq_len)
        if state_size is not None:
            summary["state_size"] = int(state_size)
        if which == "best":
            summary["best_step"] = int(meta.get("best_step", ckpt["step"]))
            if "best_value" in meta:
                summary["best_value"] = float(meta["best_value"])
                summary["best_monitor"] = meta.get("monitor", "")
        # Bare metric names (masked_acc, exact_acc, loss, ...) are what reports and scripts read.
        summary.update({k.split("/", 1)[1]: v for k, v in metrics.items()})
        if self.is_global_zero:
            # The report shows these predictions of the tested weights without loading models.
            samples = self.task.describe(self.model, num_samples=2)
            if samples:
                write_text_atomic(self.run_dir / "samples.txt", samples + "\n")
            write_text_atomic(self.run_dir / "metrics.json", json.dumps(summary, indent=2, sort_keys=True))
        return metrics
