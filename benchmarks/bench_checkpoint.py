"""Checkpoint save/load time and file size: the old pickle format against the safetensors format.

For each model, a real ``Trainer`` trains two steps and the checkpoint dict it hands to
``atomic_save`` is captured (model weights, AdamW moments, LR scheduler, callback states, RNG
states, config). The same dict is then written and read both ways, interleaved, ``--repeats``
times; the medians are printed side by side:

* ``old`` (format 1): the RNG states pickled into one uint8 array, ``paddle.save`` to ``*.tmp``,
  fsync, rename, folder fsync; loading is ``paddle.load`` (which unpickles);
* ``new`` (format 2): :func:`seqlab.checkpoint.atomic_save` (safetensors + JSON metadata, same
  atomic write) and :func:`seqlab.checkpoint.load_checkpoint` (parse, check, copy into arrays).

Restoring the RNG states is timed separately (``pickle.loads`` + ``set_state`` against
:func:`~seqlab.checkpoint.restore_rng_state`). Files go to a folder on the repository's disk,
(``runs/``), not /tmp, so the fsyncs are real. The fsyncs take a large, noisy share of a small file's save, so
each save is also timed with ``os.fsync`` replaced by a no-op ("save, no fsync"): the same code
otherwise, i.e. the cost of the format itself.

    python benchmarks/bench_checkpoint.py --models rwkv7,lstm --repeats 30
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import pickle
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import seqlab  # noqa: E402,F401
import seqlab.models  # noqa: E402,F401  (registers the in-tree models)
import seqlab.tasks  # noqa: E402,F401
import seqlab.trainer  # noqa: E402
from seqlab._paddle import import_paddle  # noqa: E402
from seqlab.callbacks import CosineWarmupLR, MovingAverageCheckpoint  # noqa: E402
from seqlab.checkpoint import atomic_save, capture_rng_state, load_checkpoint, restore_rng_state  # noqa: E402
from seqlab.optim import AdamW  # noqa: E402
from seqlab.registry import MODELS, TASKS  # noqa: E402
from seqlab.trainer import Trainer, seed_everything  # noqa: E402

paddle = import_paddle()


def trainer_checkpoint(model_name: str, root: Path) -> dict:
    """The dict a Trainer writes after two steps of ``model_name`` (default config)."""
    captured = {}
    real_save = seqlab.trainer.atomic_save

    def capture(obj, path):
        captured["ckpt"] = obj
        return real_save(obj, path)

    seed_everything(0)
    model = MODELS.get(model_name)()
    task = TASKS.get("reverse_digits")(batch_size=8, eval_samples=8, probe_samples=8)
    trainer = Trainer(
        max_steps=2,
        val_every=0,
        save_every=2,
        root_dir=str(root),
        experiment="bench",
        run_name=model_name,
        optimizer=AdamW(lr=1e-3),
        callbacks=[CosineWarmupLR(warmup_steps=1), MovingAverageCheckpoint(window=100)],
        default_callbacks=False,
    )
    seqlab.trainer.atomic_save = capture
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            trainer.fit(task, model)
    finally:
        seqlab.trainer.atomic_save = real_save
    ckpt = captured["ckpt"]
    # A real run's moving-average window is full: 100 floats, as in a long run's checkpoint.
    ckpt["callbacks"]["MovingAverageCheckpoint"]["values"] = [2.0 + 0.01 * i for i in range(100)]
    return ckpt


def old_rng_blob() -> np.ndarray:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "paddle": paddle.get_rng_state()}
    return np.frombuffer(pickle.dumps(state), dtype=np.uint8).copy()


def old_save(ckpt: dict, path: Path) -> None:
    """Format 1's writer, as it was: capture the RNG blob, paddle.save, fsync, rename, fsync dir."""
    obj = dict(ckpt, format_version=1, rng=old_rng_blob())
    tmp = path.with_name(path.name + ".tmp")
    paddle.save(obj, str(tmp))
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def new_save(ckpt: dict, path: Path) -> None:
    atomic_save(dict(ckpt, rng=capture_rng_state()), path)


def old_load(path: Path) -> dict:
    return paddle.load(str(path))


def old_restore(ckpt: dict) -> None:
    state = pickle.loads(np.asarray(ckpt["rng"], dtype=np.uint8).tobytes())
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    paddle.set_rng_state(state["paddle"])


def timed(fn, *args) -> tuple[float, object]:
    t0 = time.perf_counter()
    result = fn(*args)
    return (time.perf_counter() - t0) * 1e3, result


def bench(model_name: str, repeats: int, folder: Path) -> dict[str, float]:
    ckpt = trainer_checkpoint(model_name, folder / "train")
    params = sum(int(np.prod(v.shape)) for v in {id(v): v for v in ckpt["model"].values()}.values())
    paths = {"old": folder / f"{model_name}.pdckpt", "new": folder / f"{model_name}.safetensors"}
    save = {"old": old_save, "new": new_save}
    load = {"old": old_load, "new": load_checkpoint}
    restore = {"old": old_restore, "new": lambda c: restore_rng_state(c["rng"])}
    times = {f"{k}_{v}": [] for k in ("save", "nofsync", "load", "restore") for v in ("old", "new")}
    for variant in ("old", "new"):  # warm-up: first-call costs (imports, page cache) are not measured
        save[variant](ckpt, paths[variant])
        restore[variant](load[variant](paths[variant]))
    for r in range(repeats):
        for variant in ("old", "new") if r % 2 == 0 else ("new", "old"):
            ms, _ = timed(save[variant], ckpt, paths[variant])
            times[f"save_{variant}"].append(ms)
            fsync, os.fsync = os.fsync, lambda fd: None
            try:
                ms, _ = timed(save[variant], ckpt, paths[variant])
            finally:
                os.fsync = fsync
            times[f"nofsync_{variant}"].append(ms)
            ms, loaded = timed(load[variant], paths[variant])
            times[f"load_{variant}"].append(ms)
            ms, _ = timed(restore[variant], loaded)
            times[f"restore_{variant}"].append(ms)
    result = {key: statistics.median(values) for key, values in times.items()}
    result["params"] = params
    result["size_old"] = paths["old"].stat().st_size
    result["size_new"] = paths["new"].stat().st_size
    # The new file holds the same weights: check it, so the timing compares like with like.
    new = load_checkpoint(paths["new"])
    old = paddle.load(str(paths["old"]))
    for key, value in old["model"].items():
        assert np.array_equal(np.asarray(value), new["model"][key]), key
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="rwkv7,lstm")
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    runs = Path(__file__).resolve().parents[1] / "runs"  # on the repository's disk, git-ignored
    runs.mkdir(exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="bench_checkpoint_", dir=runs))
    try:
        rows = {name: bench(name, args.repeats, folder) for name in args.models.split(",")}
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(
        f"# {platform.node()} {platform.machine()}, Python {platform.python_version()}, Paddle "
        f"{paddle.__version__}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; "
        f"median of {args.repeats} interleaved repeats"
    )
    print(
        "| model | params | save old ms | save new ms | save, no fsync, old ms | save, no fsync, new ms "
        "| load old ms | load new ms | RNG restore old ms | RNG restore new ms | size old bytes | size new bytes |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, r in rows.items():
        print(
            f"| {name} | {r['params']:,} | {r['save_old']:.2f} | {r['save_new']:.2f} "
            f"({r['save_new'] / r['save_old']:.2f}x) | {r['nofsync_old']:.2f} | {r['nofsync_new']:.2f} "
            f"({r['nofsync_new'] / r['nofsync_old']:.2f}x) | {r['load_old']:.2f} | {r['load_new']:.2f} "
            f"({r['load_new'] / r['load_old']:.2f}x) | {r['restore_old']:.3f} | {r['restore_new']:.3f} | "
            f"{r['size_old']:,} | {r['size_new']:,} |"
        )


if __name__ == "__main__":
    main()
