"""What does the seqlab Trainer (with its default callbacks) cost over a hand-written loop?

Three variants train the same model on the same batches with the same AdamW for the same number
of steps, interleaved, each repeated; the median time per training step is compared:

* ``bare``: ``task.train_batch -> model -> loss -> backward -> step -> clear_grad -> loss.item()``;
* ``trainer-nocb``: ``Trainer(default_callbacks=False)``: the loop and the hook dispatch alone;
* ``trainer``: ``Trainer`` with all default callbacks (progress, CSV, VisualDL, moving-average
  best checkpoint, which writes ``best.safetensors`` whenever the 100-step average improves).

Validation and periodic checkpoints are off (they are the same work with or without a Trainer);
only the training loop is timed (``on_train_start`` to ``on_train_end``), not setup or the test.
On a shared machine the end-to-end difference is mostly noise, so two in-run measures are printed
too: the loop time outside the steps the Trainer times itself, and the time inside each default
callback's hooks (see benchmarks/RESULTS.md, "Trainer overhead").

    python benchmarks/bench_trainer_overhead.py --model mlp --batch-size 64 --steps 60 --repeats 5
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import seqlab  # noqa: E402,F401
from seqlab._paddle import configure_cpu_defaults, import_paddle  # noqa: E402
from seqlab.callback import Callback, Event  # noqa: E402
from seqlab.callbacks import MovingAverageCheckpoint  # noqa: E402
from seqlab.optim import AdamW  # noqa: E402
from seqlab.registry import MODELS, TASKS  # noqa: E402
from seqlab.trainer import Trainer  # noqa: E402

paddle = import_paddle()
# The Trainer applies seqlab's CPU settings in setup; the bare loop must run under the same ones,
# whichever runs first.
configure_cpu_defaults(paddle)


def make(args):
    import seqlab.models  # noqa: F401  (registers the in-tree models)
    import seqlab.tasks  # noqa: F401

    paddle.seed(0)
    model = MODELS.get(args.model)()
    task = TASKS.get("reverse_digits")(batch_size=args.batch_size)
    task.setup(0)
    return task, model


def bare_loop(args) -> float:
    task, model = make(args)
    opt = AdamW(lr=1e-3).build(model)
    model.train()
    t0 = time.perf_counter()
    for step in range(args.steps):
        batch = task.train_batch(step)
        loss = task.loss(model(batch.inputs), batch)
        loss.backward()
        opt.step()
        opt.clear_grad()
        loss.item()
    return (time.perf_counter() - t0) / args.steps


PER_STEP = {
    Event.ON_TRAIN_BATCH_START,
    Event.ON_BEFORE_BACKWARD,
    Event.ON_AFTER_BACKWARD,
    Event.ON_BEFORE_OPTIMIZER_STEP,
    Event.ON_TRAIN_BATCH_END,
}


def time_hooks(callbacks, totals: dict[str, float]) -> None:
    """Wrap every hook of ``callbacks`` to add its wall time to ``totals[class name]``.

    The difference of two end-to-end timings is noisy on a shared machine; the time spent
    inside the callbacks is a direct, much steadier measure of what they cost.
    """
    for cb in callbacks:
        for event in Event:
            hook = getattr(cb, event.value)
            kind = "step" if event in PER_STEP else "once"
            name = f"{type(cb).__name__}:{kind}"
            totals.setdefault(name, 0.0)

            def timed(*args, _hook=hook, _name=name):
                t0 = time.perf_counter()
                try:
                    return _hook(*args)
                finally:
                    totals[_name] += time.perf_counter() - t0

            setattr(cb, event.value, timed)


class LoopTimer(Callback):
    """Loop wall time, and the part of it the Trainer itself measured as training steps.

    ``train/tokens_per_s`` covers batch -> forward -> backward -> optimizer step -> loss.item()
    (plus the hooks inside the step); the rest of the loop time is the Trainer's bookkeeping and
    the end-of-step hooks. Both come from the same steps, so their ratio does not drift with
    the load other jobs put on a shared machine.
    """

    def on_train_start(self, trainer, task, model):
        self.step_seconds = 0.0
        self.t0 = time.perf_counter()

    def on_train_batch_start(self, trainer, task, model, batch):
        self.tokens = batch.num_tokens

    def on_train_batch_end(self, trainer, task, model, metrics):
        self.step_seconds += self.tokens / metrics["train/tokens_per_s"]

    def on_train_end(self, trainer, task, model):
        self.seconds = time.perf_counter() - self.t0
        OUTSIDE_STEP.setdefault(self.variant, []).append(self.seconds / self.step_seconds - 1.0)


OUTSIDE_STEP: dict[str, list[float]] = {}


HOOK_TIME: dict[str, list[float]] = {}


def trainer_loop(args, defaults: bool) -> float:
    task, model = make(args)
    timer = LoopTimer()
    timer.variant = "trainer" if defaults else "trainer-nocb"
    # A short window makes the best-checkpoint saves start early: in a real run the 100-step
    # average improves (and a checkpoint is written) at most steps while the loss falls.
    extra = [MovingAverageCheckpoint(window=args.best_window)] if defaults else []
    with tempfile.TemporaryDirectory() as root:
        trainer = Trainer(
            max_steps=args.steps,
            val_every=0,
            log_every=50,
            save_every=0,
            seed=0,
            root_dir=root,
            experiment="bench",
            run_name=args.model,
            optimizer=AdamW(lr=1e-3),
            callbacks=[timer, *extra],
            default_callbacks=defaults,
        )
        totals: dict[str, float] = {}
        if defaults:
            time_hooks([cb for cb in trainer.callbacks if cb is not timer], totals)
        # The progress lines would interleave with the results; they are part of the cost.
        with contextlib.redirect_stdout(io.StringIO()):
            trainer.fit(task, model)
    per_step = timer.seconds / args.steps
    for name, seconds in totals.items():
        HOOK_TIME.setdefault(name, []).append(seconds)
    return per_step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mlp")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--best-window", type=int, default=10, help="MovingAverageCheckpoint window (default callbacks use 100)"
    )
    args = parser.parse_args()

    variants = {
        "bare": bare_loop,
        "trainer-nocb": lambda a: trainer_loop(a, defaults=False),
        "trainer": lambda a: trainer_loop(a, defaults=True),
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    bare_loop(argparse.Namespace(**{**vars(args), "steps": 20}))  # warm up kernels and caches
    for rep in range(args.repeats):
        order = list(variants) if rep % 2 == 0 else list(reversed(variants))
        for name in order:
            times[name].append(variants[name](args))
        print(f"repeat {rep + 1}: " + ", ".join(f"{n} {times[n][-1] * 1e3:.2f} ms" for n in variants), flush=True)

    med = {name: statistics.median(ts) for name, ts in times.items()}
    print(f"\n{args.model}, B={args.batch_size}, {args.steps} steps x {args.repeats} repeats (median ms/step)")
    for name in variants:
        over = (med[name] / med["bare"] - 1.0) * 100.0
        print(f"  {name:13s} {med[name] * 1e3:8.3f} ms/step  overhead {over:+6.2f}%")
    print(
        "loop time outside the measured training steps (trainer bookkeeping + end-of-step "
        "hooks), share of step time (median):"
    )
    for name, shares in OUTSIDE_STEP.items():
        print(f"  {name:13s} {statistics.median(shares) * 100:6.2f}%")
    # Per-step hooks, as a share of the trainer's median step time; one-time hooks (setup,
    # opening files, test, teardown) in ms per run.
    print("time inside the default callbacks (median over repeats):")
    step_total = 0.0
    for name, runs in HOOK_TIME.items():
        cls, kind = name.split(":")
        value = statistics.median(runs)
        if kind == "step":
            ms = value / args.steps * 1e3
            step_total += ms
            print(f"  {cls:24s} per step {ms:7.3f} ms = {ms / (med['trainer'] * 1e3) * 100:6.3f}%")
        elif value * 1e3 >= 0.05:
            print(f"  {cls:24s} once     {value * 1e3:7.1f} ms per run")
    print(f"  {'all, per step':24s} {step_total:7.3f} ms = {step_total / (med['trainer'] * 1e3) * 100:6.3f}% of a step")


if __name__ == "__main__":
    main()
