"""The budget ladder's table and plot: test accuracy against training tokens and wall-clock seconds.

Reads the rungs that scripts/reverse_digits_ladder.sh leaves, ``LADDER/x<k>/sweep/<point>/``
(each point's ``metrics.json`` and ``config.yaml``; the sweep's ``sweep.json`` names its points),
and writes into ``LADDER``:

- ``ladder.md``: per model and rung, the training tokens, the seeds, the test metric's mean,
  sample std and Student t 95% interval (seqlab.report.stats), the means of exact match and the
  61-80-digit probe, and the mean wall time per run;
- ``ladder.png``: the metric against training tokens (left) and wall-clock seconds per run
  (right; the machine of each point is in the table), one line per model, the intervals as
  error bars;
- ``ladder.json``: every figure above and the per-seed values behind it.

    .venv/bin/python scripts/ladder_report.py runs/reverse_digits_cpu_ladder/uniform [--metric masked_acc] \
        [--out docs/results/reverse_digits_cpu_ladder]

With ``--out``, the rungs' raw files (each rung's manifest, each finished point's metrics.json and
config.yaml) are copied to ``OUT/raw`` first and the three files are built from that copy into
``OUT``, so the committed figures come from committed files (tests/test_results_docs.py rebuilds
them).

Training tokens are steps x batch_size x (seq_len - 1), from each point's resolved config (the
figure the recipe's "5.3M tokens" counts); a point without a config falls back to
tokens_per_s x train_time_s.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import sys
from pathlib import Path

import yaml

from seqlab.io import atomic_write_text
from seqlab.report import save_figure
from seqlab.report.stats import INTERVAL_METHOD, mean_interval
from seqlab.summary import RunSummary

RUNG = re.compile(r"x(\d+(?:\.\d+)?)")
# Besides the metric with its interval, the table gives the mean of these test figures: whether the
# numbers come out whole (exact match) and how far the model goes past its training lengths (the
# 61-80-digit probe; NaN for a model with learned positions, which has none).
ALSO = ("exact_acc", "probe_masked_acc")


def _also(metric: str) -> list[str]:
    """The ALSO figures besides ``metric`` (which has its own columns)."""
    return [name for name in ALSO if name != metric]


def training_tokens(point: Path, summary: RunSummary) -> float | None:
    config = point / "config.yaml"
    if config.is_file():
        data = yaml.safe_load(config.read_text()) or {}
        task = (data.get("task") or {}).get("init_args") or {}
        if task.get("batch_size") and task.get("seq_len"):
            return float(summary.steps * int(task["batch_size"]) * (int(task["seq_len"]) - 1))
    if summary.tokens_per_s and summary.train_time_s:
        return summary.tokens_per_s * summary.train_time_s
    return None


def _finite(values) -> list[float]:
    return [float(v) for v in values if isinstance(v, (int, float)) and v == v]


def collect(ladder: Path, metric: str) -> list[dict]:
    """One row per (model, rung): its finished points' tokens, wall times and test ``metric`` (with
    its interval), and the means of the ``ALSO`` figures."""
    rows = []
    rungs = sorted(
        (p for p in ladder.iterdir() if p.is_dir() and RUNG.fullmatch(p.name)), key=lambda p: float(p.name[1:])
    )
    for rung in rungs:
        manifest = rung / "sweep" / "sweep.json"
        if not manifest.is_file():
            continue
        by_run: dict[str, list[tuple[int, Path, RunSummary]]] = {}
        for name, info in json.loads(manifest.read_text())["points"].items():
            path = rung / "sweep" / name
            if (path / RunSummary.FILENAME).is_file():
                by_run.setdefault(info["run"], []).append(
                    (int(info["seed"]), path, RunSummary.read(path / RunSummary.FILENAME))
                )
        for run, points in by_run.items():
            points.sort(key=lambda p: p[0])
            values = _finite(s.test.get(metric) for _, _, s in points)
            also = {name: _finite(s.test.get(name) for _, _, s in points) for name in _also(metric)}
            tokens = [training_tokens(path, s) for _, path, s in points]
            walls = [s.wall_time_s for _, _, s in points if s.wall_time_s is not None]
            machines = sorted({s.machine or "not recorded" for _, _, s in points})
            iv = mean_interval(values)
            rows.append(
                {
                    "run": run,
                    "rung": float(rung.name[1:]),
                    "seeds": [seed for seed, _, _ in points],
                    "tokens": statistics.fmean(t for t in tokens if t is not None) if any(tokens) else None,
                    "wall_time_s": walls,
                    "mean_wall_time_s": statistics.fmean(walls) if walls else None,
                    "machines": machines,  # wall times compare only within one machine
                    metric: None if iv is None else {**iv.to_dict(), "values": values},
                    "also": {
                        name: {"mean": statistics.fmean(v) if v else None, "values": v} for name, v in also.items()
                    },
                }
            )
    return rows


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{x * 100:.2f}"


def table(rows: list[dict], metric: str) -> str:
    """The markdown table: one row per model and rung."""
    lines = [
        f"| model | rung | training tokens | seeds | {metric}: mean | sample std | 95% interval (t) | "
        + "".join(f"{name}: mean | " for name in _also(metric))
        + "wall time per run (s) | trained on |",
        "|---|---:|---:|---|---:|---:|---:|" + "---:|" * len(_also(metric)) + "---:|---|",
    ]
    for r in sorted(rows, key=lambda r: (r["run"], r["rung"])):
        iv = r[metric] or {}
        lo, hi = (iv.get("ci") or [None, None])[:2]
        interval = "—" if lo is None else f"[{_pct(lo)}, {_pct(hi)}]"
        tokens = "—" if r["tokens"] is None else f"{r['tokens'] / 1e6:.1f}M"
        wall = "—" if r["mean_wall_time_s"] is None else f"{r['mean_wall_time_s']:.0f}"
        lines.append(
            f"| {r['run']} | {r['rung']:g}x | {tokens} | {', '.join(map(str, r['seeds']))} | "
            f"{_pct(iv.get('mean'))} | {_pct(iv.get('sample_std'))} | {interval} | "
            + "".join(f"{_pct(also['mean'])} | " for also in r.get("also", {}).values())
            + f"{wall} | "
            f"{'; '.join(r['machines'])} |"
        )
    return "\n".join(lines)


def write(ladder: Path, metric: str, out: Path | None = None, title: str | None = None) -> list[Path]:
    """ladder.md, ladder.json and ladder.png from the rungs under ``ladder``, into ``out`` (default
    ``ladder`` itself)."""
    out = out or ladder
    rows = collect(ladder, metric)
    if not rows:
        raise SystemExit(f"{ladder}: no finished rung (x<k>/sweep/ with metrics.json files); run the ladder first.")
    lines = [
        f"# Budget ladder: {title or ladder}",
        "",
        f"Test `{metric}` per model and rung (a multiple of the recipe's training tokens). Mean, sample "
        f"std (n-1) and 95% interval ({INTERVAL_METHOD}), in percent; then the mean of "
        + ", ".join(f"`{name}`" for name in _also(metric))
        + " (— where no seed has it: the Transformer's learned positions stop at 129, so it has no probe); "
        "wall time is the mean per run on "
        "the machine the last column names (metrics.json's `machine`; wall times compare only within one).",
        "",
        table(rows, metric),
        "",
        "![accuracy against training tokens and wall-clock seconds](ladder.png)",
        "",
    ]
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "ladder.md", "\n".join(lines))
    atomic_write_text(
        out / "ladder.json",
        json.dumps({"metric": metric, "interval_method": INTERVAL_METHOD, "rows": rows}, indent=2) + "\n",
    )
    _plot(rows, metric, out / "ladder.png")
    return [out / "ladder.md", out / "ladder.json", out / "ladder.png"]


def copy_raw(ladder: Path, raw: Path) -> None:
    """Each rung's manifest and every finished point's metrics.json and config.yaml, in the same
    layout (``raw/x<k>/sweep/...``): the report is rebuilt from them, and a ladder run again
    after ``cp -r raw/* runs/<ladder>/`` trains only the points that are missing."""
    if raw.exists():
        shutil.rmtree(raw)
    for manifest in sorted(ladder.glob("x*/sweep/sweep.json")):
        if not RUNG.fullmatch(manifest.parent.parent.name):
            continue
        dest = raw / manifest.parent.relative_to(ladder)
        dest.mkdir(parents=True)
        shutil.copyfile(manifest, dest / "sweep.json")
        for name in json.loads(manifest.read_text())["points"]:
            point = manifest.parent / name
            if (point / RunSummary.FILENAME).is_file():
                (dest / name).mkdir()
                for file in (RunSummary.FILENAME, "config.yaml"):
                    if (point / file).is_file():
                        shutil.copyfile(point / file, dest / name / file)


def _plot(rows: list[dict], metric: str, path: Path) -> None:
    from matplotlib.figure import Figure
    from matplotlib.ticker import NullLocator

    # An accuracy cannot leave [0, 1], but a t interval on 3 seeds can: the bars are drawn clipped
    # (the table gives the interval as computed).
    bounded = metric.endswith("acc")

    def clip(x: float) -> float:
        return min(max(x, 0.0), 1.0) if bounded else x

    fig = Figure(figsize=(12, 5))
    axes = fig.subplots(1, 2, sharey=True)
    for run in dict.fromkeys(r["run"] for r in rows):
        mine = sorted((r for r in rows if r["run"] == run and r[metric]), key=lambda r: r["rung"])
        for ax, x_key in zip(axes, ("tokens", "mean_wall_time_s")):
            pts = [r for r in mine if r[x_key] is not None]
            if not pts:
                continue
            ys = [r[metric]["mean"] for r in pts]
            lo = [clip(r[metric]["ci"][0]) if r[metric]["ci"][0] is not None else m for m, r in zip(ys, pts)]
            hi = [clip(r[metric]["ci"][1]) if r[metric]["ci"][1] is not None else m for m, r in zip(ys, pts)]
            err = [[m - x for m, x in zip(ys, lo)], [x - m for m, x in zip(ys, hi)]]
            ax.errorbar([r[x_key] for r in pts], ys, yerr=err, marker="o", capsize=4, linewidth=2, label=run)
    for ax, label in zip(
        axes, ("training tokens (rung)", "wall-clock seconds per run (the table names each rung's CPU)")
    ):
        ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.grid(True, linestyle="--", alpha=0.5)
    # One tick per rung, named by its tokens and multiple, instead of log-scale decades.
    rungs = {r["rung"]: r["tokens"] for r in rows if r["tokens"] is not None}
    axes[0].xaxis.set_minor_locator(NullLocator())
    axes[0].set_xticks(list(rungs.values()), [f"{t / 1e6:.1f}M ({k:g}x)" for k, t in rungs.items()])
    interval = "95% t interval" + (", clipped to [0, 1]" if bounded else "")
    axes[0].set_ylabel(f"test {metric} (mean, {interval})")
    axes[0].legend(loc="center right")
    fig.suptitle(f"Budget ladder: test {metric} against training budget")
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("ladder", type=Path, help="the ladder's folder, e.g. runs/reverse_digits_cpu_ladder/uniform")
    parser.add_argument("--metric", default="masked_acc", help="the test metric to plot (default masked_acc)")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="a folder to commit (e.g. docs/results/reverse_digits_cpu_ladder): the rungs' raw files go "
        "to OUT/raw and the report is built from that copy",
    )
    parser.add_argument(
        "--mark",
        default=None,
        help="with --out: put the table between <!-- MARK --> markers in OUT/README.md and the top-level README.md",
    )
    args = parser.parse_args(argv)
    source = args.ladder
    if args.out is not None:
        copy_raw(args.ladder, args.out / "raw")
        source = args.out / "raw"
    for path in write(source, args.metric, args.out, title=str(args.ladder)):
        sys.stdout.write(f"{path}\n")
    if args.mark and args.out is not None:
        from reverse_digits_results import update_readme  # scripts/: the one marker writer

        text = table(collect(source, args.metric), args.metric)
        for readme in (args.out / "README.md", Path(__file__).resolve().parents[1] / "README.md"):
            update_readme(readme, args.mark, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
