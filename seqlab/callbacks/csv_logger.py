"""Per-step metrics as a CSV file beside the run (the seed's training_log.csv, grown up)."""

from __future__ import annotations

import csv
import os
import time
from pathlib import Path
from typing import Any

from seqlab.callback import Callback

TRAIN_COLUMNS = ["step", "loss", "lr", "grad_norm", "tokens_per_s"]


def column_name(key: str) -> str:
    """``train/loss`` -> ``loss``, ``val/masked_acc`` -> ``val_masked_acc``."""
    if key.startswith("train/"):
        return key[len("train/"):]
    return key.replace("/", "_")


class CSVLogger(Callback):
    """Write ``run_dir/metrics.csv``: one row per step, validation metrics on the steps they ran.

    Columns: ``step, loss, lr, grad_norm, tokens_per_s``, then one ``val_<name>`` column per
    validation metric (``val/masked_acc`` -> ``val_masked_acc``) and any other metric a callback
    logs, in the order they first appear. Columns a step lacks are empty. Validation metrics are
    only known after the first validation, so the header is rewritten (once) when new columns
    appear.

    The file is flushed every couple of seconds and at every validation. On resume, rows after
    the resumed step (the discarded future) are dropped and new rows are appended, so every step
    appears exactly once.

    Args:
        filename: file name inside the run folder.
    """

    def __init__(self, filename: str = "metrics.csv", flush_secs: float = 2.0):
        self.filename = filename
        self.flush_secs = float(flush_secs)
        self.path: Path | None = None
        self.columns: list[str] = list(TRAIN_COLUMNS)
        self._file = None
        self._writer = None
        self._pending: dict[str, Any] | None = None
        self._last_flush = 0.0

    # -- file handling --------------------------------------------------------------------------
    def _rewrite(self, rows: list[dict[str, Any]]) -> None:
        """Atomically replace the file with ``rows`` under the current header; reopen to append."""
        self._close_file()
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.columns, restval="", extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        self._file = open(self.path, "a", newline="")
        self._writer = csv.DictWriter(
            self._file, fieldnames=self.columns, restval="", extrasaction="ignore"
        )

    def _read_rows(self) -> list[dict[str, Any]]:
        with open(self.path, newline="") as f:
            reader = csv.DictReader(f)
            for name in reader.fieldnames or []:
                if name not in self.columns:
                    self.columns.append(name)
            return list(reader)

    def _close_file(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file, self._writer = None, None

    def _write(self, row: dict[str, Any], force_flush: bool = False) -> None:
        new = [c for c in row if c not in self.columns]
        if new:
            self._file.flush()
            rows = self._read_rows()
            self.columns.extend(new)
            rows.append(row)
            self._rewrite(rows)
            return
        self._writer.writerow(row)
        now = time.monotonic()
        if force_flush or now - self._last_flush >= self.flush_secs:
            self._file.flush()
            self._last_flush = now

    def _write_pending(self, force_flush: bool = False) -> None:
        if self._pending is not None and self._writer is not None:
            self._write(self._pending, force_flush)
        self._pending = None

    # -- hooks ----------------------------------------------------------------------------------
    def on_train_start(self, trainer, task, model) -> None:
        if not trainer.is_global_zero:
            return
        self.path = Path(trainer.run_dir) / self.filename
        rows: list[dict[str, Any]] = []
        if trainer.global_step > 0 and self.path.exists():
            rows = [r for r in self._read_rows() if r.get("step") and int(r["step"]) <= trainer.global_step]
        self._rewrite(rows)

    def on_train_batch_end(self, trainer, task, model, metrics) -> None:
        if self._writer is None:
            return
        self._write_pending()
        row: dict[str, Any] = {"step": trainer.global_step}
        for key, value in metrics.items():
            row[column_name(key)] = f"{value:.7g}"
        step = trainer.global_step
        if trainer.val_every and (step % trainer.val_every == 0 or step == trainer.max_steps):
            # A validation follows at this step; its metrics go into the same row.
            self._pending = row
        else:
            # Before a checkpoint, make sure the rows it covers are on disk.
            self._write(row, force_flush=bool(trainer.save_every) and step % trainer.save_every == 0)

    def on_validation_end(self, trainer, task, model, metrics) -> None:
        if self._writer is None:
            return
        if self._pending is None or self._pending["step"] != trainer.global_step:
            self._write_pending()
            self._pending = {"step": trainer.global_step}
        for key, value in metrics.items():
            self._pending[column_name(key)] = f"{value:.7g}"
        self._write_pending(force_flush=True)

    def on_train_end(self, trainer, task, model) -> None:
        self._write_pending(force_flush=True)

    def on_exception(self, trainer, task, model, exception) -> None:
        self._write_pending(force_flush=True)

    def teardown(self, trainer, task, model) -> None:
        self._write_pending()
        self._close_file()
