"""Helpers shared by the tests: one home for each (import them as ``from support import ...``)."""

from __future__ import annotations

from seqlab.callback import Callback


class LossRecorder(Callback):
    """Records every step's loss, keyed by step number (1-based: the steps done)."""

    def __init__(self):
        self.losses: dict[int, float] = {}

    def on_train_batch_end(self, trainer, task, model, metrics):
        self.losses[trainer.global_step] = metrics["train/loss"]


class StopAt(Callback):
    """Simulates a crash (e.g. a killed job) when ``step`` optimizer steps are done: raises
    ``KeyboardInterrupt`` at the start of step ``step + 1``."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_start(self, trainer, task, model, batch):
        if trainer.global_step == self.step:
            raise KeyboardInterrupt(f"stopped after step {self.step}")


# ---------------------------------------------------------------------- a task with NaN losses
from seqlab.tasks.reverse_digits import ReverseDigits  # noqa: E402


class NaNLossAt(ReverseDigits):
    """Digit reversal whose loss is NaN at the given (1-based) steps. Recipes name it by
    ``class_path: support.NaNLossAt`` when ``tests/`` is on the child's ``PYTHONPATH``."""

    def __init__(self, nan_steps: list[int] = [5], **kwargs):  # noqa: B006 - jsonargparse reads the default
        super().__init__(**kwargs)
        self.nan_steps = set(nan_steps)
        self._step = 0

    def train_batch(self, step):
        self._step = step + 1
        return super().train_batch(step)

    def loss(self, logits, batch):
        loss = super().loss(logits, batch)
        return loss * float("nan") if self._step in self.nan_steps else loss


# ---------------------------------------------------------------------- processes, from /proc
def live_pids(marker: str, environ: str | None = None) -> list[int]:
    """PIDs of live processes (zombies excluded) whose command line mentions ``marker`` and, if
    ``environ`` is given, whose environment holds that exact ``NAME=value`` entry (Linux /proc)."""
    from pathlib import Path

    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
            state = (entry / "stat").read_text().split(")")[-1].split()[0]
            env = (entry / "environ").read_bytes().decode(errors="replace").split("\0") if environ else []
        except OSError:
            continue
        if marker in cmdline and state != "Z" and (environ is None or environ in env):
            pids.append(int(entry.name))
    return pids


# ---------------------------------------------------------------------- the C++ ops
def in_ci() -> bool:
    """True under CI (``CI=true``, as GitHub Actions and ``.ci/run`` set it)."""
    import os

    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def require_cpu_ops() -> None:
    """Build (or load from the cache) seqlab's C++ CPU ops. Where they cannot be built the
    calling test is skipped, except in CI, where it fails: there a green suite must have tested
    the fused paths, which the models would otherwise silently replace by their fallbacks."""
    import pytest

    from seqlab.ops import _build

    try:
        _build.load_cpu_ops()
    except _build.OpBuildError as exc:
        if in_ci():
            pytest.fail(f"CI=true and the C++ ops failed to build: {exc}", pytrace=False)
        pytest.skip(f"the C++ ops cannot be built here: {exc}")
