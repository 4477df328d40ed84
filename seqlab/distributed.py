"""Data parallelism on ``paddle.distributed``: who this process is, its rows, and the all-reduces.

The Trainer runs the same loop on every rank. The recipe's batch is the global batch: each rank
trains on its own rows of it (``rank, rank + world, ...``), ``paddle.DataParallel`` averages the
gradients, and logged values are reduced to the global mean, so one process and N processes
follow the same loss curve.

Under ``seqlab fit --trainer.devices N`` each rank also keeps a heartbeat (:class:`Heartbeat`): a
count of the collectives it has reached, which the launching process reads to tell a hung rank
(whose count stopped behind) from the ranks waiting for it.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import paddle

from seqlab.errors import SeqlabError

HEARTBEAT_DIR = "SEQLAB_HEARTBEAT_DIR"  # set by seqlab.launch for its ranks


def heartbeat_file(folder: str | os.PathLike, rank: int) -> Path:
    return Path(folder) / f"rank{rank}.beat"


class Heartbeat:
    """How far this rank got: the number of collectives it has entered, in a file of its own.

    Every rank runs the same code, so every rank enters the same collectives in the same order. A
    rank that hangs stops counting behind the others, which wait for it in the next collective:
    the lowest count names it. The count lives in the file (a recipe's runs are Trainers of one
    process, and each counts on from it): one 20-byte ``pread`` and ``pwrite`` (no fsync) per
    collective, and nothing at all when ``SEQLAB_HEARTBEAT_DIR`` is unset (one process, or a
    launcher of the user's own).
    """

    def __init__(self, rank: int, folder: str | None = None):
        folder = folder if folder is not None else os.environ.get(HEARTBEAT_DIR)
        self._fd = None
        if folder:
            try:
                self._fd = os.open(heartbeat_file(folder, rank), os.O_RDWR | os.O_CREAT, 0o644)
            except OSError:
                self._fd = None  # no heartbeat: a hang is then named by the collective's timeout alone

    def beat(self) -> None:
        if self._fd is None:
            return
        try:
            text = os.pread(self._fd, 21, 0).strip()
            count = int(text) + 1 if text.isdigit() else 1
            os.pwrite(self._fd, f"{count:20d}\n".encode(), 0)
        except OSError:
            pass

    def __del__(self) -> None:
        if self._fd is not None:
            os.close(self._fd)


def read_heartbeat(path: Path) -> int | None:
    """The count a rank's heartbeat file holds, or None before its first beat."""
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def launched() -> bool:
    """Whether this process is one of several started by ``paddle.distributed.launch``."""
    return "PADDLE_TRAINER_ID" in os.environ or paddle.distributed.get_world_size() > 1


class DataParallelContext:
    """This process's place in a (possibly 1-process) data-parallel run."""

    def __init__(self) -> None:
        self.world_size = paddle.distributed.get_world_size()
        self.rank = paddle.distributed.get_rank()
        self._initialised = False
        self._heartbeat = Heartbeat(self.rank) if self.world_size > 1 else None

    def beat(self) -> None:
        """Count one more collective reached (before entering it): see :class:`Heartbeat`."""
        if self._heartbeat is not None:
            self._heartbeat.beat()

    @property
    def is_global_zero(self) -> bool:
        return self.rank == 0

    def wrap(self, model):
        """The module to call for training: ``model`` itself, or its DataParallel wrapper."""
        if self.world_size == 1:
            return model
        if not self._initialised:
            paddle.distributed.init_parallel_env()
            self._initialised = True
        # find_unused_parameters: RWKV-7's first layer owns value-residual weights it never uses;
        # without it the gradient all-reduce would wait for them forever.
        return paddle.DataParallel(model, find_unused_parameters=True)

    def shard(self, batch):
        """This rank's rows of the global batch."""
        if self.world_size == 1:
            return batch
        self.beat()  # each step's forward and backward (the gradient all-reduce) come next
        rows = int(batch.inputs.shape[0])
        if rows % self.world_size:
            raise SeqlabError(
                f"the batch has {rows} rows, which {self.world_size} processes cannot share "
                "equally; make the task's batch_size a multiple of the number of processes."
            )
        return batch.select(slice(self.rank, None, self.world_size))

    def no_sync(self, module, skip: bool):
        """Skip the gradient all-reduce of this backward (all but the last micro-batch)."""
        if skip and self.world_size > 1 and hasattr(module, "no_sync"):
            return module.no_sync()
        return contextlib.nullcontext()

    def mean(self, value: float) -> float:
        """The mean of a per-rank float over all ranks (every rank gets it)."""
        if self.world_size == 1:
            return value
        total = paddle.to_tensor([value], dtype="float64")
        self.beat()
        paddle.distributed.all_reduce(total)
        return total.item() / self.world_size

    def any(self, flag: bool) -> bool:
        """True on every rank when it is true on any rank (a stop that all ranks agree on)."""
        return self.any_each(flag)[0]

    def any_each(self, *flags: bool) -> tuple[bool, ...]:
        """Each flag made true on every rank when it is true on any rank, in one all-reduce
        (Lightning's ``reduce_boolean_decision(decision, all=False)``, for several decisions)."""
        if self.world_size == 1:
            return tuple(bool(flag) for flag in flags)
        total = paddle.to_tensor([1 if flag else 0 for flag in flags], dtype="int64")
        self.beat()
        paddle.distributed.all_reduce(total)
        return tuple(bool(count) for count in total.numpy().tolist())

    def barrier(self) -> None:
        if self.world_size > 1:
            self.beat()
            paddle.distributed.barrier()
