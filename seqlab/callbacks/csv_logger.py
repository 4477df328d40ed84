"""Per-step metrics as a CSV file beside the run (the seed's training_log.csv, grown up)."""

from __future__ import annotations

import csv
import io
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

    Each step's row is written at the end of the step; a validation at that step then amends
    that last row in place (whenever it runs, including after an early stop). The file is
    flushed every ``flush_secs``, at every validation and before every periodic checkpoint. On
    resume, rows after the resumed step (the discarded future) are dropped and new rows are
    appended, so every step appears exactly once.

    Args:
        filename: file name inside the run folder.
        flush_secs: at most this many seconds of rows are only in memory.
    """

    def __init__(self, filename: str = "metrics.csv", flush_secs: float = 2.0):
        self.filename = filename
        self.flush_secs = float(flush_secs)
        self.path: Path | None = None
        self.columns: list[str] = list(TRAIN_COLUMNS)
        self._file = None
        self._buffer: io.StringIO | None = None
        self._writer = None
        self._end = 0
        self._last_row: dict[str, Any] | None = None
        self._last_row_pos = 0
        self._last_flush = 0.0

    # -- file handling --------------------------------------------------------------------------
    def _rewrite(self, rows: list[dict[str, Any]]) -> None:
        """Atomically replace the file with ``rows`` under the current header; reopen to append."""
        self._close_file()
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.columns, restval="", extrasaction="ignore")
            writer.writeheader()
            for row in rows[:-1]:
                writer.writerow(row)
            self._last_row_pos = f.tell()
            if rows:
                writer.writerow(rows[-1])
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        self._last_row = dict(rows[-1]) if rows else None
        # Binary, with our own position: text files' tell() flushes on every call.
        self._file = open(self.path, "r+b")
        self._end = self._file.seek(0, os.SEEK_END)
        self._buffer = io.StringIO()
        self._writer = csv.DictWriter(
            self._buffer, fieldnames=self.columns, restval="", extrasaction="ignore"
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

    def _write(self, row: dict[str, Any], amend: bool = False, flush: bool = False) -> None:
        """Append ``row``, or with ``amend`` replace the last row (the same step) by it."""
        new = [c for c in row if c not in self.columns]
        if new:
            self._file.flush()
            rows = self._read_rows()
            if amend and rows:
                rows.pop()
            self.columns.extend(new)
            self._rewrite(rows + [row])
            return
        self._buffer.seek(0)
        self._buffer.truncate()
        self._writer.writerow(row)
        line = self._buffer.getvalue().encode()
        if amend:
            self._file.seek(self._last_row_pos)
            self._file.truncate()
            self._end = self._last_row_pos
        self._last_row_pos = self._end
        self._file.write(line)
        self._end += len(line)
        self._last_row = row
        now = time.monotonic()
        if flush or now - self._last_flush >= self.flush_secs:
            self._file.flush()
            self._last_flush = now

    # -- hooks ----------------------------------------------------------------------------------
    def on_train_start(self, trainer, task, model) -> None:
        if not trainer.is_global_zero:
            return
        self.path = Path(trainer.run_dir) / self.filename
        rows: list[dict[str, Any]] = []
        if trainer.global_step > 0 and self.path.exists():
            rows = [r for r in self._read_rows()
                    if r.get("step") and int(r["step"]) <= trainer.global_step]
        self._rewrite(rows)

    def on_train_batch_end(self, trainer, task, model, metrics) -> None:
        if self._writer is None:
            return
        step = trainer.global_step
        row: dict[str, Any] = {"step": step}
        for key, value in metrics.items():
            row[column_name(key)] = f"{value:.7g}"
        # Before a checkpoint, make sure the rows it covers are on disk.
        self._write(row, flush=bool(trainer.save_every) and step % trainer.save_every == 0)

    def on_validation_end(self, trainer, task, model, metrics) -> None:
        if self._writer is None:
            return
        step = trainer.global_step
        last = self._last_row
        amend = last is not None and int(last["step"]) == step
        row = dict(last) if amend else {"step": step}
        for key, value in metrics.items():
            row[column_name(key)] = f"{value:.7g}"
        self._write(row, amend=amend, flush=True)

    def on_exception(self, trainer, task, model, exception) -> None:
        if self._file is not None:
            self._file.flush()

    def teardown(self, trainer, task, model) -> None:
        self._close_file()
