"""Seconds per point of a tiny sweep: local child processes against Ray tasks, side by side.

The same sweep of ``--points`` tiny MLP runs (tests/tiny.py's recipe, 6 steps: a run is
mostly its start-up), two at a time on this machine's two cores, with three executors in turn,
``--rounds`` times, and the median of each:

- ``local``: ``--executor local --parallel 2`` (child processes);
- ``ray (joined)``: ``--executor ray --ray_address`` to a Ray already running here (a head
  node of 2 CPUs started by this script): what a user of a cluster pays per point;
- ``ray (started)``: ``--executor ray`` alone, which starts a local Ray for the command and
  stops it after: that plus Ray's start and stop.

Run: ``.venv/bin/python benchmarks/bench_executors.py [--points 4] [--rounds 3]`` (needs the
``ray`` extra). Timings are noisy on a shared machine: compare the medians of one run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from tiny import SEQLAB, tiny_recipe  # noqa: E402

HOST = "127.0.0.2"  # loopback, and one Ray does not rewrite to the machine's address


def sweep_seconds(recipe: Path, root: Path, points: int, extra: list[str]) -> float:
    rates = ",".join(f"{(i + 1) * 1e-3:g}" for i in range(points))
    command = [*SEQLAB, "sweep", "--recipe", str(recipe), "--grid", f"trainer.optimizer.lr={rates}"]
    command += ["--trainer.root_dir", str(root), *extra]
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=dict(os.environ, PYTHONWARNINGS="ignore"))
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    shutil.rmtree(root)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    from ray.cluster_utils import Cluster

    folder = Path(tempfile.mkdtemp(prefix="bench-exec-", dir="/tmp"))
    os.environ["RAY_TMPDIR"] = str(folder)  # this benchmark's Ray files, removed at the end
    recipe = folder / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe()))
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 2,
            "object_store_memory": 100 * 2**20,
            "include_dashboard": False,
            "node_ip_address": HOST,
            "temp_dir": str(folder / "ray"),
        },
    )
    executors = {
        "local": ["--executor", "local", "--parallel", "2"],
        "ray (joined)": ["--executor", "ray", "--ray_address", cluster.address],
        "ray (started)": ["--executor", "ray"],
    }
    times: dict[str, list[float]] = {name: [] for name in executors}
    try:
        for round_ in range(args.rounds):
            for name, extra in executors.items():  # interleaved: the machine's load hits all alike
                seconds = sweep_seconds(recipe, folder / "runs", args.points, extra)
                times[name].append(seconds)
                print(f"round {round_ + 1}: {name:<14} {seconds:6.1f} s", flush=True)
    finally:
        cluster.shutdown()
        shutil.rmtree(folder, ignore_errors=True)
    print(f"\n{args.points} tiny points (MLP, 6 steps), 2 at a time, median of {args.rounds} rounds:")
    print("| executor | sweep wall (s) | s per point | vs local (s per point) |")
    print("|---|---|---|---|")
    base = statistics.median(times["local"]) / args.points
    for name, values in times.items():
        per_point = statistics.median(values) / args.points
        print(f"| {name} | {statistics.median(values):.1f} | {per_point:.2f} | {per_point - base:+.2f} |")


if __name__ == "__main__":
    main()
