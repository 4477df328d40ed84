"""Tell the user how training goes: a live bar on a terminal, plain lines in CI logs."""

from __future__ import annotations

import sys
import time

from seqlab.callback import Callback
from seqlab.text import format_duration  # noqa: F401  (also the name tests and users import here)


def _short(key: str) -> str:
    return key.split("/", 1)[1] if "/" in key else key


def format_metrics(metrics: dict[str, float]) -> str:
    return " | ".join(f"{_short(k)} {v:.4f}" for k, v in metrics.items())


class ProgressBar(Callback):
    """Progress of the run: step, loss, lr, throughput in kt/s (thousand tokens/s) and ETA.

    On a terminal (stderr is a TTY) it redraws one live line on stderr. Otherwise it prints one
    plain line every ``trainer.log_every`` steps (and at the last) to **stdout**, so CI logs and
    ``| tee`` stay readable; ``log_every: 0`` turns these step lines off::

        step 50/2000 | loss 1.2345 | lr 3.99e-03 | 45.2 kt/s | eta 3m12s

    In both modes each validation and the final test print one line with their metrics. The loss
    shown is the loss of that step (as in the seed); kt/s is the mean throughput of the steps
    since the previous line, not counting validation time.

    Args:
        refresh_every: on a terminal, redraw the bar at most every this many steps.
    """

    def __init__(self, refresh_every: int = 1):
        self.refresh_every = max(1, int(refresh_every))
        self.interactive: bool | None = None
        self._t0 = 0.0
        self._start_step = 0
        self._inv_rate_sum = 0.0
        self._rate_count = 0
        self._last_draw = 0.0
        self._bar_shown = False
        self._closed = False

    # -- output ---------------------------------------------------------------------------------
    def _write(self, stream, text: str) -> None:
        """Write, unless the reader is gone (``seqlab fit | head``, a dead --parallel parent):
        then the run goes on silently instead of dying with its work unsaved."""
        if self._closed:
            return
        try:
            stream.write(text)
            stream.flush()
        except (BrokenPipeError, ValueError, OSError):
            self._closed = True

    def _line(self, text: str) -> None:
        if self.interactive:
            # Clear the live bar, print the line above it; the next step redraws the bar.
            self._write(sys.stderr, "\r\033[K" + text + "\n")
            self._bar_shown = False
        else:
            self._write(sys.stdout, text + "\n")

    def _status(self, trainer, metrics: dict[str, float]) -> str:
        step, total = trainer.global_step, trainer.max_steps
        parts = [f"step {step}/{total}"]
        if "train/loss" in metrics:
            parts.append(f"loss {metrics['train/loss']:.4f}")
        if "train/lr" in metrics:
            parts.append(f"lr {metrics['train/lr']:.2e}")
        if self._rate_count:
            # Harmonic mean of per-step rates = total tokens / total time (equal-sized batches).
            kts = self._rate_count / self._inv_rate_sum / 1000.0 if self._inv_rate_sum else 0.0
            parts.append(f"{kts:.1f} kt/s")
        done = step - self._start_step
        if done > 0 and total:
            per_step = (time.perf_counter() - self._t0) / done
            parts.append(f"eta {format_duration(per_step * (total - step))}")
        return " | ".join(parts)

    # -- hooks ----------------------------------------------------------------------------------
    def on_train_start(self, trainer, task, model) -> None:
        if self.interactive is None:
            self.interactive = sys.stderr.isatty()
        self._t0 = time.perf_counter()
        self._start_step = trainer.global_step
        self._inv_rate_sum, self._rate_count = 0.0, 0

    def on_train_batch_end(self, trainer, task, model, metrics) -> None:
        if not trainer.is_global_zero:
            return
        rate = metrics.get("train/tokens_per_s")
        if rate:
            self._inv_rate_sum += 1.0 / rate
            self._rate_count += 1
        step = trainer.global_step
        if self.interactive:
            now = time.perf_counter()
            # Redraw at most ~10 times a second: a terminal write per fast step costs time.
            if (step % self.refresh_every and step != trainer.max_steps) or (
                now - self._last_draw < 0.1 and step != trainer.max_steps
            ):
                return
            self._last_draw = now
            self._write(sys.stderr, "\r\033[K" + self._status(trainer, metrics))
            self._bar_shown = True
            self._inv_rate_sum, self._rate_count = 0.0, 0
        elif trainer.log_every and (step % trainer.log_every == 0 or step == trainer.max_steps):
            self._write(sys.stdout, self._status(trainer, metrics) + "\n")
            self._inv_rate_sum, self._rate_count = 0.0, 0

    def on_validation_end(self, trainer, task, model, metrics) -> None:
        if trainer.is_global_zero and metrics:
            self._line(f"val step {trainer.global_step} | {format_metrics(metrics)}")

    def on_train_end(self, trainer, task, model) -> None:
        if trainer.is_global_zero and self.interactive and self._bar_shown:
            self._write(sys.stderr, "\n")
            self._bar_shown = False

    def on_test_end(self, trainer, task, model, metrics) -> None:
        if not trainer.is_global_zero:
            return
        line = f"test | {format_metrics(metrics)}" if metrics else "test"
        source = _checkpoint_source(trainer)
        if source:
            line += f" | {source}"
        self._line(line)


def _checkpoint_source(trainer) -> str:
    """Which weights the test used: the tested checkpoint and, for ``best``, why it was best."""
    tested = getattr(trainer, "tested", None) or {}
    meta = tested.get("meta") or {}
    if tested.get("checkpoint") == "best" and "best_value" in meta:
        return (
            f"best checkpoint: step {meta.get('best_step', tested.get('step'))} "
            f"({meta.get('monitor', '')} avg {float(meta['best_value']):.4f})"
        )
    return f"{tested.get('checkpoint', 'last')} checkpoint: step {tested.get('step', trainer.global_step)}"
