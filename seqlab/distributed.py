"""Data parallelism on ``paddle.distributed``: who this process is, its rows, and the all-reduces.

The Trainer runs the same loop on every rank. The recipe's batch is the global batch: each rank
trains on its own rows of it (``rank, rank + world, ...``), ``paddle.DataParallel`` averages the
gradients, and logged values are reduced to the global mean, so one process and N processes
follow the same loss curve.
"""

from __future__ import annotations

import contextlib
import os

import paddle

from seqlab.errors import SeqlabError


def launched() -> bool:
    """Whether this process is one of several started by ``paddle.distributed.launch``."""
    return "PADDLE_TRAINER_ID" in os.environ or paddle.distributed.get_world_size() > 1


class DataParallelContext:
    """This process's place in a (possibly 1-process) data-parallel run."""

    def __init__(self) -> None:
        self.world_size = paddle.distributed.get_world_size()
        self.rank = paddle.distributed.get_rank()
        self._initialised = False

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
        paddle.distributed.all_reduce(total)
        return tuple(bool(count) for count in total.numpy().tolist())

    def barrier(self) -> None:
        if self.world_size > 1:
            paddle.distributed.barrier()
