"""Log a run to VisualDL, so ``visualdl --logdir runs/<experiment>`` overlays every run."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from seqlab._paddle import import_paddle
from seqlab.callback import Callback

paddle = import_paddle()


def _hparam_value(value: Any):
    # VisualDL's hparams accept only str, int, float and bool.
    if isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


class VisualDLLogger(Callback):
    """Write the run's curves, samples and hyperparameters as VisualDL records.

    Records go to ``run_dir/vdl``: every run of an experiment is a sub-folder of
    ``runs/<experiment>``, so ``visualdl --logdir runs/<experiment>`` shows all runs side by
    side. VisualDL would name a run by its folder (``mlp/vdl``); the records carry a display
    name instead (``run_label``, by default the run name, e.g. ``mlp``). When you point VisualDL
    at several experiments that share run names, use ``run_label="{experiment}/{run_name}"``.

    What is logged: every step metric (``train/loss``, ``train/lr``, ``train/grad_norm``,
    ``train/tokens_per_s``, ...) at every step; ``val/*`` at each validation, with the task's
    ``describe(model)`` sample as text (``val/sample``); ``test/*`` at the end, and the run's
    hyperparameters (``add_hparams``) with the test metrics.

    Resuming: VisualDL reads only the newest ``vdlrecords.*.log`` of a folder. A resumed run
    therefore writes a new record file that first replays every earlier point up to the resumed
    step (points after it belong to the discarded future), then continues. The old files are
    left in place, untouched: VisualDL ignores them, and a running server would fail on a
    vanished file. A server that was already running when the run resumed keeps the points it
    had read and so shows the replayed ones twice; restart it to see the clean curve.

    Only rank 0 writes.

    Args:
        flush_secs: how often records reach the disk (the server shows them ~1 s later).
        log_text: log ``task.describe(model)`` at each validation.
        run_label: the run's name in the VisualDL UI; ``{experiment}`` and ``{run_name}`` are
            replaced.
    """

    def __init__(self, flush_secs: int = 2, log_text: bool = True, run_label: str = "{run_name}"):
        self.flush_secs = int(flush_secs)
        self.log_text = bool(log_text)
        self.run_label = run_label
        self.writer = None
        self.log_dir: Path | None = None

    # -- opening, with the replay of earlier records on resume ----------------------------------
    @staticmethod
    def _record_files(log_dir: Path) -> list[Path]:
        # VisualDL picks the newest file by reverse-sorted name; sort the same way.
        return sorted((p for p in log_dir.iterdir() if "vdlrecords" in p.name and p.is_file()),
                      key=lambda p: p.name)

    @staticmethod
    def _new_file_name(existing: list[Path]) -> str:
        # LogWriter names files vdlrecords.<unix seconds>.log and truncates an existing name, so a
        # resume within the same second must pick a later (and lexically larger) name.
        stamp = int(time.time())
        for path in existing:
            parts = path.name.split(".")
            if len(parts) >= 2 and parts[1].isdigit():
                stamp = max(stamp, int(parts[1]) + 1)
        return f"vdlrecords.{stamp:010d}.log"

    def _replay(self, source: Path, max_step: int) -> None:
        """Copy scalars and texts with step <= max_step from an earlier record file."""
        from visualdl import LogReader

        # log_data is keyed by VisualDL's escaped tags ("train%loss"); v.tag is the original.
        data = LogReader(file_path=str(source)).log_data
        for values in data.get("scalar", {}).values():
            for v in values:
                if v.id <= max_step:
                    self.writer.add_scalar(v.tag, v.value, v.id, walltime=v.timestamp)
        for values in data.get("text", {}).values():
            for v in values:
                if v.id <= max_step:
                    self.writer.add_text(v.tag, v.text.encoded_text_string, v.id,
                                         walltime=v.timestamp)

    def _open(self, trainer) -> None:
        from visualdl import LogWriter

        self.log_dir = Path(trainer.run_dir) / "vdl"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        old_files = self._record_files(self.log_dir)
        label = self.run_label.format(experiment=trainer.experiment, run_name=trainer.run_name)
        self.writer = LogWriter(
            logdir=str(self.log_dir),
            file_name=self._new_file_name(old_files),
            flush_secs=self.flush_secs,
            max_queue=4096,  # never block the training loop on the writer thread
            display_name=label,
        )
        if old_files and trainer.global_step > 0:
            # The newest file holds the whole history (earlier resumes replayed into it).
            self._replay(old_files[-1], trainer.global_step)
            self.writer.flush()
        # Superseded files stay: VisualDL shows only the newest file of a folder, and a server
        # that is running reads every file it has seen by path and fails if one disappears.

    # -- hooks ----------------------------------------------------------------------------------
    def on_train_start(self, trainer, task, model) -> None:
        if trainer.is_global_zero and self.writer is None:
            self._open(trainer)

    def on_train_batch_end(self, trainer, task, model, metrics) -> None:
        if self.writer is None:
            return
        step = trainer.global_step
        add = self.writer.add_scalar
        for key, value in metrics.items():
            add(key, value, step)
        if trainer.save_every and step % trainer.save_every == 0:
            # A checkpoint follows: get the records on disk first, so a resume finds no gap.
            self.writer.flush()

    def on_validation_end(self, trainer, task, model, metrics) -> None:
        if self.writer is None:
            return
        step = trainer.global_step
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, step)
        if self.log_text:
            text = self._describe(task, model)
            if text:
                self.writer.add_text("val/sample", text, step)
        self.writer.flush()

    @staticmethod
    def _describe(task, model) -> str:
        was_training = model.training
        model.eval()
        try:
            with paddle.no_grad():
                return task.describe(model)
        finally:
            if was_training:
                model.train()

    def on_test_end(self, trainer, task, model, metrics) -> None:
        if not trainer.is_global_zero:
            return
        if self.writer is None:
            self._open(trainer)
        step = trainer.global_step
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, step)
        hparams = {k: _hparam_value(v) for k, v in trainer.hparams().items() if v is not None}
        # The hparams view reads the listed metrics from this run's scalars.
        self.writer.add_hparams(hparams, list(metrics))
        self.writer.flush()

    def on_exception(self, trainer, task, model, exception) -> None:
        if self.writer is not None:
            self.writer.flush()

    def teardown(self, trainer, task, model) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
