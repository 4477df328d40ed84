"""Log a run to VisualDL, so ``visualdl --logdir runs/<experiment>`` overlays every run."""

from __future__ import annotations

import math
import struct
import time
from pathlib import Path
from typing import Any

from seqlab.callback import Callback
from seqlab.evaluation import inference_mode


def _hparam_value(value: Any):
    # VisualDL 2.5.3 takes str, int and float; a bool hits its int branch and fails
    # ("Expected an int, got a boolean"), so booleans are shown as text.
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float, str)):
        return value
    return str(value)


def trial_tag(test_key: str) -> str:
    """``test/masked_acc`` -> ``trial/masked_acc``: the final test's tag in VisualDL."""
    return "trial/" + test_key.split("/", 1)[-1]


def _result_text(trainer, metrics: dict[str, float]) -> str:
    tested = getattr(trainer, "tested", None) or {}
    lines = [
        f"Final test of the {tested.get('checkpoint', 'last')} checkpoint (step {tested.get('step', trainer.global_step)}):",
        "",
        "| metric | value |",
        "|---|---:|",
    ]
    lines += [
        f"| {key.split('/', 1)[-1]} | {value:.6g} |" if math.isfinite(value) else f"| {key.split('/', 1)[-1]} | n/a |"
        for key, value in metrics.items()
    ]
    return "\n".join(lines)


def read_records(path: Path):
    """``(bytes, Record)`` of every complete record in a VisualDL record file.

    A run killed with -9 can leave half a record at the end of its file; reading stops there
    (VisualDL's own LogReader fails on it), so a resume still replays every complete point.
    """
    from visualdl.proto.record_pb2 import Record

    data = Path(path).read_bytes()
    pos = 0
    while pos + 8 <= len(data):
        (length,) = struct.unpack_from("<Q", data, pos)
        if pos + 8 + length > len(data):
            break  # a torn last record
        raw = data[pos + 8 : pos + 8 + length]
        record = Record()
        try:
            record.ParseFromString(raw)
        except Exception:  # noqa: BLE001  (protobuf's DecodeError; a damaged tail)
            break
        yield raw, record
        pos += 8 + length


def run_hparams(trainer) -> dict[str, Any]:
    """The run's key hyperparameters, flat, for the hyperparameter tab."""
    from seqlab.registry import MODELS

    model = trainer.model
    hp = {
        "run": trainer.run_name,
        "model": MODELS.name_of(type(model)),
        "lr": trainer.base_lr,
        "params": model.num_parameters() if model is not None else 0,
        "weight_decay": trainer.optimizer_config.weight_decay,
        "max_steps": trainer.max_steps,
        "seed": trainer.seed,
    }
    model_args = (trainer.config.get("model") or {}).get("init_args") or {}
    hp.update({f"model.{k}": v for k, v in model_args.items() if isinstance(v, (int, float, str, bool))})
    return hp


def _now_ms() -> int:
    return round(time.time() * 1000)


class RecordFile:
    """A VisualDL record file, written by the calling thread in batches.

    ``visualdl.LogWriter`` hands every record to a writer thread through a locked queue. Per step
    that is costly even on an idle machine, and more so on a busy one (each record wakes the
    thread and the two trade the GIL; ``benchmarks/RESULTS.md``, "Trainer overhead"). Here records
    are serialised with VisualDL's own builders, kept in memory and appended to the file every
    ``flush_secs``, in the format VisualDL reads (``<u64 length><Record protobuf>``, as
    ``LogWriter`` writes it).
    """

    def __init__(self, path: Path, display_name: str):
        from visualdl.component import base_component as vdl

        self._vdl = vdl
        self.path = path
        self._file = open(path, "xb")  # never truncate an existing record file
        self._pending: list[bytes] = []
        self.add(vdl.meta_data(display_name=display_name, walltime=_now_ms()))
        self.flush()

    def add(self, record) -> None:
        self.add_raw(record.SerializeToString())

    def add_raw(self, data: bytes) -> None:
        self._pending.append(struct.pack("<Q", len(data)) + data)

    def scalar(self, tag: str, value: float, step: int, walltime: int | None = None) -> None:
        self.add(self._vdl.scalar(tag, float(value), int(step), walltime or _now_ms()))

    def text(self, tag: str, text: str, step: int, walltime: int | None = None) -> None:
        self.add(self._vdl.text(tag, text, int(step), walltime or _now_ms()))

    def hparams(self, hparams: dict[str, Any], metrics: list[str]) -> None:
        from visualdl.utils.md5_util import md5

        self.add(self._vdl.hparam(md5(str(self.path)), hparams, metrics, _now_ms()))

    def flush(self) -> None:
        if self._pending:
            self._file.write(b"".join(self._pending))
            self._pending.clear()
        self._file.flush()

    def close(self) -> None:
        if not self._file.closed:
            self.flush()
            self._file.close()


class VisualDLLogger(Callback):
    """Write the run's curves, samples and hyperparameters as VisualDL records.

    Records go to ``run_dir/vdl``: every run of an experiment is a sub-folder of
    ``runs/<experiment>``, so ``visualdl --logdir runs/<experiment>`` shows all runs side by
    side. VisualDL would name a run by its folder (``mlp/vdl``); the records carry a display
    name instead (``run_label``, by default the run name, e.g. ``mlp``). When you point VisualDL
    at several experiments that share run names, use ``run_label="{experiment}/{run_name}"``.

    What is logged: every step metric (``train/loss``, ``train/lr``, ``train/grad_norm``,
    ``train/tokens_per_s``, ...) at every step; ``val/*`` at each validation, with the task's
    ``describe(model)`` sample as text (``val/sample``); at the end, the final test as
    ``trial/*`` scalars and a ``trial/result`` text, and the run's hyperparameters
    (``add_hparams``) with those metrics. The Scalars page therefore opens on ``train``.

    Resuming: VisualDL reads only the newest ``vdlrecords.*.log`` of a folder. A resumed run
    therefore writes a new record file that first replays every earlier point up to the resumed
    step (points after it belong to the discarded future), then continues. The old files are
    left in place, untouched: VisualDL ignores them, and a running server would fail on a
    vanished file. A server that was already running when the run resumed keeps the points it
    had read and so shows the replayed ones twice; restart it to see the clean curve.

    Records are written by the training thread itself, in batches (see :class:`RecordFile`): it
    is much cheaper per step than ``visualdl.LogWriter``'s writer thread (``benchmarks/RESULTS.md``,
    "Trainer overhead"). Only rank 0 writes.

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
        self.writer: RecordFile | None = None
        self.log_dir: Path | None = None
        self._last_flush = 0.0

    # -- opening, with the replay of earlier records on resume ----------------------------------
    @staticmethod
    def _record_files(log_dir: Path) -> list[Path]:
        # VisualDL picks the newest file by reverse-sorted name; sort the same way.
        return sorted((p for p in log_dir.iterdir() if "vdlrecords" in p.name and p.is_file()), key=lambda p: p.name)

    @staticmethod
    def _new_file_name(existing: list[Path]) -> str:
        # VisualDL's own naming, vdlrecords.<unix seconds>.log; a resume within the same second
        # must still pick a later (lexically larger) name than every existing file.
        stamp = int(time.time())
        for path in existing:
            parts = path.name.split(".")
            if len(parts) >= 2 and parts[1].isdigit():
                stamp = max(stamp, int(parts[1]) + 1)
        return f"vdlrecords.{stamp:010d}.log"

    def _replay(self, source: Path, max_step: int) -> None:
        """Copy the scalar and text records with step <= max_step from an earlier record file."""
        for raw, record in read_records(source):
            kinds = {v.WhichOneof("one_value") for v in record.values}
            if kinds <= {"value", "text"} and all(v.id <= max_step for v in record.values):
                self.writer.add_raw(raw)

    def _open(self, trainer) -> None:
        self.log_dir = Path(trainer.run_dir) / "vdl"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        old_files = self._record_files(self.log_dir)
        label = self.run_label.format(experiment=trainer.experiment, run_name=trainer.run_name)
        self.writer = RecordFile(self.log_dir / self._new_file_name(old_files), label)
        self._last_flush = time.monotonic()
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
        writer = self.writer
        if writer is None:
            return
        step = trainer.global_step
        walltime = _now_ms()
        for key, value in metrics.items():
            writer.scalar(key, value, step, walltime)
        now = time.monotonic()
        if now - self._last_flush >= self.flush_secs:
            writer.flush()
            self._last_flush = now

    def on_save_checkpoint(self, trainer, task, model, checkpoint) -> None:
        # Every point a checkpoint covers is on disk before the checkpoint exists, so a resume
        # after a kill -9 finds no gap (and replays nothing past the checkpoint).
        if self.writer is not None:
            self.writer.flush()
            self._last_flush = time.monotonic()

    def on_validation_end(self, trainer, task, model, metrics) -> None:
        if self.writer is None:
            return
        step = trainer.global_step
        for key, value in metrics.items():
            self.writer.scalar(key, value, step)
        if self.log_text:
            with inference_mode(model):
                text = task.describe(model)
            if text:
                self.writer.text("val/sample", text, step)
        self.writer.flush()

    def on_test_end(self, trainer, task, model, metrics) -> None:
        if not trainer.is_global_zero:
            return
        if self.writer is None:
            self._open(trainer)
        step = trainer.global_step
        # The final test is one point per run: as scalars under "test/" they would be the first
        # group of the Scalars page (groups sort by name) and fold the training curves away. They
        # go under "trial/" instead (VisualDL's word for a run in its hyperparameter table, which
        # reads them from these scalars), and as a text record. NaN (a probe a model cannot
        # read) is left out: VisualDL drops a run whose hparam metric is NaN from that table.
        finite = {trial_tag(k): v for k, v in metrics.items() if math.isfinite(v)}
        for tag, value in finite.items():
            self.writer.scalar(tag, value, step)
        self.writer.text("trial/result", _result_text(trainer, metrics), step)
        hparams = {k: _hparam_value(v) for k, v in run_hparams(trainer).items() if v is not None}
        self.writer.hparams(hparams, list(finite))
        self.writer.flush()

    def on_exception(self, trainer, task, model, exception) -> None:
        if self.writer is not None:
            self.writer.flush()

    def teardown(self, trainer, task, model) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
