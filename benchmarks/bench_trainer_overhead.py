"""What does the seqlab Trainer (with its default callbacks) cost over a hand-written loop?

Three variants train the same model on the same batches with the same AdamW for the same number
of steps, interleaved, each repeated; the median time per training step is compared:

* ``bare``: ``task.train_batch -> model -> loss -> backward -> step -> clear_grad -> loss.item()``;
* ``trainer-nocb``: ``Trainer(default_callbacks=False)``: the loop and the hook dispatch alone;
* ``trainer``: ``Trainer`` with all default callbacks (progress, CSV, VisualDL, moving-average
  best checkpoint, which writes ``best.pdckpt`` whenever the 100-step average improves).

Validation and periodic checkpoints are off (they are the same work with or without a Trainer);
only the training loop is timed (``on_train_start`` to ``on_train_end``), not setup or the test.

    python benchmarks/bench_trainer_overhead.py --model mlp --batch-size 64 --steps 300 --repeats 5
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
from seqlab._paddle import import_paddle  # noqa: E402
from seqlab.callback import Callback  # noqa: E402
from seqlab.optim import AdamW  # noqa: E402
from seqlab.registry import MODELS, TASKS  # noqa: E402
from seqlab.trainer import Trainer  # noqa: E402

paddle = import_paddle()


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


class LoopTimer(Callback):
    def on_train_start(self, trainer, task, model):
        self.t0 = time.perf_counter()

    def on_train_end(self, trainer, task, model):
        self.seconds = time.perf_counter() - self.t0


def trainer_loop(args, defaults: bool) -> float:
    task, model = make(args)
    timer = LoopTimer()
    with tempfile.TemporaryDirectory() as root:
        trainer = Trainer(max_steps=args.steps, val_every=0, log_every=50, save_every=0, seed=0,
                          root_dir=root, experiment="bench", run_name=args.model,
                          optimizer=AdamW(lr=1e-3), callbacks=[timer],
                          default_callbacks=defaults)
        # The progress lines would interleave with the results; they are part of the cost.
        with contextlib.redirect_stdout(io.StringIO()):
            trainer.fit(task, model)
    return timer.seconds / args.steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mlp")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=5)
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
        print(f"repeat {rep + 1}: " + ", ".join(f"{n} {times[n][-1] * 1e3:.2f} ms" for n in variants),
              flush=True)

    med = {name: statistics.median(ts) for name, ts in times.items()}
    print(f"\n{args.model}, B={args.batch_size}, {args.steps} steps x {args.repeats} repeats "
          f"(median ms/step)")
    for name in variants:
        over = (med[name] / med["bare"] - 1.0) * 100.0
        print(f"  {name:13s} {med[name] * 1e3:8.3f} ms/step  overhead {over:+6.2f}%")


if __name__ == "__main__":
    main()
