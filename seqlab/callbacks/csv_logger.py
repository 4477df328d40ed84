"""Per-step metrics as a CSV file beside the run (the seed's training_log.csv, grown up)."""

from __future__ import annotations

import csv
import io
import os
import time
from pathlib import Path

from seqlab.callback import Callback
from seqlab.io import atomic_write_bytes, check_name

TRAIN_COLUMNS = ["step", "loss", "lr", "grad_norm", "tokens_per_s"]


def column_name(key: str) -> str:
    """``train/loss`` -> ``loss``, ``val/masked_acc`` -> ``val_masked_acc``."""
    if key.startswith("train/"):
        return key[len("train/") :]
    return key.replace("/", "_")


class CSVLogger(Callback):
    """Write ``run_dir/metrics.csv``: one row per step, validation metrics on the steps they ran.

    Columns: ``step, loss, lr, grad_norm, tokens_per_s``, then one ``val_<name>`` column per
    validation metric (``val/masked_acc`` -> ``val_masked_acc``) and any other metric a callback
    logs, in the order they first appear. Cells a step lacks are empty. Values are written
    exactly (Python's ``repr``: the shortest text that reads back as the same float).

    Rows are appended as steps end; a validation amends its step's row in place. When a new
    column appears, the file is rewritten (atomically) with the new header. Everything is on
    disk (flushed and fsynced) before every checkpoint, and at most ``flush_secs`` old
    otherwise. On resume, the rows after the resumed step (the discarded future, possibly a
    half-written line after a kill -9) are dropped, so every step appears exactly once.

    Args:
        filename: file name inside the run folder.
        flush_secs: at most this many seconds of rows are only in memory.
    """

    def __init__(self, filename: str = "metrics.csv", flush_secs: float = 2.0):
        self.filename = check_name(filename, "CSVLogger's filename")
        self.flush_secs = float(flush_secs)
        self.path: Path | None = None
        self.columns: list[str] = list(TRAIN_COLUMNS)
        self.rows: list[dict[str, str]] = []
        self._file = None
        self._last_row_at = 0  # byte offset of the last row, which a validation may amend
        self._last_flush = 0.0

    # -- file handling --------------------------------------------------------------------------
    def _line(self, row: dict[str, str]) -> bytes:
        buffer = io.StringIO()
        csv.DictWriter(buffer, fieldnames=self.columns, restval="", extrasaction="ignore").writerow(row)
        return buffer.getvalue().encode()

    def _rewrite(self) -> None:
        """Replace the file by the header and every row in memory; reopen it to append."""
        self._close()
        header = io.StringIO()
        csv.writer(header).writerow(self.columns)
        lines = [header.getvalue().encode()] + [self._line(r) for r in self.rows]
        atomic_write_bytes(self.path, b"".join(lines))
        self._file = open(self.path, "r+b")
        end = self._file.seek(0, os.SEEK_END)
        self._last_row_at = end - (len(lines[-1]) if self.rows else 0)

    def _append(self, row: dict[str, str], amend: bool) -> None:
        new = [c for c in row if c not in self.columns]
        if amend:
            self.rows[-1] = row
        else:
            self.rows.append(row)
        if new:
            self.columns.extend(new)
            self._rewrite()
            return
        line = self._line(row)
        if amend:
            self._file.seek(self._last_row_at)
            self._file.truncate()
        else:
            self._last_row_at = self._file.seek(0, os.SEEK_END)
        self._file.write(line)

    def _flush(self, durable: bool = False) -> None:
        if self._file is not None:
            self._file.flush()
            if durable:
                os.fsync(self._file.fileno())
            self._last_flush = time.monotonic()

    def _close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def _read_rows(self, max_step: int) -> list[dict[str, str]]:
        """Rows of an earlier session up to ``max_step``, one per step (the latest wins)."""
        by_step: dict[int, dict[str, str]] = {}
        with open(self.path, newline="") as f:
            reader = csv.DictReader(f)
            for name in reader.fieldnames or []:
                if name not in self.columns:
                    self.columns.append(name)
            for row in reader:
                try:
                    step = int(row.get("step") or "")
                except ValueError:
                    continue  # a torn line
                if step <= max_step:
                    by_step[step] = {k: v for k, v in row.items() if k is not None and v}
        return [by_step[s] for s in sorted(by_step)]

    # -- hooks ----------------------------------------------------------------------------------
    def on_train_start(self, trainer, task, model) -> None:
        if not trainer.is_global_zero:
            return
        self.path = Path(trainer.run_dir) / self.filename
        self.columns = list(TRAIN_COLUMNS)
        resumed = trainer.global_step > 0 and self.path.exists()
        self.rows = self._read_rows(trainer.global_step) if resumed else []
        self._rewrite()

    def on_train_batch_end(self, trainer, task, model, metrics) -> None:
        if self._file is None:
            return
        row = {"step": str(trainer.global_step), **{column_name(k): _fmt(v) for k, v in metrics.items()}}
        self._append(row, amend=False)
        if time.monotonic() - self._last_flush >= self.flush_secs:
            self._flush()

    def on_validation_end(self, trainer, task, model, metrics) -> None:
        if self._file is None:
            return
        step = str(trainer.global_step)
        amend = bool(self.rows) and self.rows[-1]["step"] == step
        row = dict(self.rows[-1]) if amend else {"step": step}
        row.update({column_name(k): _fmt(v) for k, v in metrics.items()})
        self._append(row, amend=amend)
        self._flush()

    def on_save_checkpoint(self, trainer, task, model, checkpoint) -> None:
        self._flush(durable=True)  # the rows a checkpoint covers are on disk before it exists

    def on_exception(self, trainer, task, model, exception) -> None:
        self._flush()

    def teardown(self, trainer, task, model) -> None:
        self._flush()
        self._close()


def _fmt(value: float) -> str:
    # repr: the shortest text that reads back as the same float, so a resumed run's losses can
    # be compared bit for bit with an uninterrupted one's.
    return repr(float(value))
