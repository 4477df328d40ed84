"""Collect the MQAR CPU sweep (scripts/mqar_cpu_sweep.sh) into docs/results/mqar_cpu/.

    .venv/bin/python scripts/mqar_cpu_results.py [--runs runs/mqar_cpu] [--out docs/results/mqar_cpu]

Each ``runs/mqar_cpu/L<len>-w<width>/sweep`` holds one sweep: every model at one sequence length
and width, at each learning rate and seed. For every (model, length, width) this picks the
learning rate with the best mean *validation* query accuracy over the seeds, as Zoology plots the
best of its learning rates, and reports the *test* query accuracy of that rate's seeds: the test
rows never choose anything. It writes

* ``results.json``: every point (model, length, width, lr, seed, state size, validation and test
  accuracy, wall time) and the selection, so any figure below can be recomputed;
* ``mqar_state_size.png``: test accuracy against recurrent state size, one panel per length, one
  line per model family (the plot Zoology's Figure 2 made known);
* the README's table (between its ``<!-- mqar-table -->`` markers), rebuilt from ``results.json``:
  tests/test_mqar.py checks that the committed README still matches the committed results.json.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import statistics
from pathlib import Path

import yaml

FAMILIES = {  # run name -> what the plot and the table call it
    "transformer_modern": "attention (transformer_modern)",
    "transformer": "attention (seed Transformer, learned positions)",
    "rwkv7": "RWKV-7",
    "lstm": "LSTM",
    "mlp": "MLP (seqlab's baseline)",
}
MARK = "<!-- mqar-table -->"
# L64-w64, or a check beside the sweep: budget4x/L64-w64 (4x the steps), learned_pos/L64-w64.
SWEEP_DIR = re.compile(r"(?:(?:budget(\d+)x|[a-z_]+)/)?L(\d+)-w(\d+)")


def collect(runs: Path) -> list[dict]:
    """One row per finished point of every ``[budget<k>x/]L<len>-w<width>`` sweep under ``runs``."""
    points = []
    for sweep in sorted(runs.rglob("sweep")):
        match = SWEEP_DIR.fullmatch(sweep.parent.relative_to(runs).as_posix())
        if not match or not (sweep / "sweep.json").is_file():
            continue
        budget, seq_len, width = int(match[1] or 1), int(match[2]), int(match[3])
        manifest = json.loads((sweep / "sweep.json").read_text())
        for name, point in manifest["points"].items():
            metrics_file = sweep / name / "metrics.json"
            if not metrics_file.is_file():
                continue  # not finished (yet)
            metrics = json.loads(metrics_file.read_text())
            config = yaml.safe_load((sweep / name / "config.yaml").read_text())
            task = config["task"]["init_args"]
            if int(task["seq_len"]) != seq_len:
                raise SystemExit(f"{sweep / name}: seq_len {task['seq_len']} in a sweep named L{seq_len}")
            points.append(
                {
                    "model": point["run"],
                    "seq_len": seq_len,
                    "num_kv_pairs": int(task["num_kv_pairs"]),
                    "width": width,
                    "budget": budget,
                    "lr": float(point["settings"]["trainer.optimizer.lr"]),
                    "seed": int(point["seed"]),
                    "params": int(metrics["params"]),
                    "state_size": int(metrics["state_size"]),
                    "steps": int(metrics["steps"]),
                    "rows_per_step": int(task["batch_size"]),
                    "val_query_acc": float(metrics["val"]["query_acc"]),
                    "test_query_acc": float(metrics["query_acc"]),
                    "test_loss": float(metrics["loss"]),
                    "wall_time_s": float(metrics["wall_time_s"]),
                    "folder": f"{sweep.relative_to(runs).as_posix()}/{name}",
                }
            )
    return points


def select(points: list[dict]) -> list[dict]:
    """Per (model, length, width, budget): the lr with the best mean validation accuracy over its seeds."""
    cells: dict[tuple, dict[float, list[dict]]] = {}
    for p in points:
        cells.setdefault((p["model"], p["seq_len"], p["width"], p["budget"]), {}).setdefault(p["lr"], []).append(p)
    chosen = []
    for (model, seq_len, width, budget), by_lr in sorted(cells.items()):
        lr, runs = max(by_lr.items(), key=lambda item: statistics.fmean(r["val_query_acc"] for r in item[1]))
        test = [r["test_query_acc"] for r in runs]
        chosen.append(
            {
                "model": model,
                "seq_len": seq_len,
                "width": width,
                "budget": budget,
                "steps": runs[0]["steps"],
                "lr": lr,
                "lrs_tried": sorted(by_lr),
                "seeds": sorted(r["seed"] for r in runs),
                "state_size": runs[0]["state_size"],
                "rows_per_step": runs[0]["rows_per_step"],
                "params": runs[0]["params"],
                "test_query_acc_mean": statistics.fmean(test),
                "test_query_acc_sample_std": statistics.stdev(test) if len(test) > 1 else None,
                "val_query_acc_mean": statistics.fmean(r["val_query_acc"] for r in runs),
            }
        )
    return chosen


def table(selected: list[dict]) -> str:
    """Markdown: test query accuracy (mean ± sample std over seeds) by model, width and length at
    the sweep's budget; then, where a longer budget ran, its figures beside the first."""
    longer = [s for s in selected if s["budget"] > 1]
    selected = [s for s in selected if s["budget"] == 1]
    lengths = sorted({s["seq_len"] for s in selected})
    rows = [
        "| model | width | state size (floats) at "
        + ", ".join(f"L={n}" for n in lengths)
        + " | "
        + " | ".join(f"L={n}" for n in lengths)
        + " | chosen lr | seeds |",
        "|---|---:|---:|" + "---:|" * len(lengths) + "---|---|",
    ]
    by_key = {(s["model"], s["width"], s["seq_len"]): s for s in selected}
    for model in FAMILIES:
        for width in sorted({s["width"] for s in selected if s["model"] == model}):
            cells = [by_key.get((model, width, n)) for n in lengths]
            states = ", ".join(f"{c['state_size']:,}" if c else "–" for c in cells)
            accs = [_acc(c) for c in cells]
            lrs = ", ".join(f"{c['lr']:g}" if c else "–" for c in cells)
            seeds = max((len(c["seeds"]) for c in cells if c), default=0)
            rows.append(f"| {FAMILIES[model]} | {width} | {states} | " + " | ".join(accs) + f" | {lrs} | {seeds} |")
    if longer:
        rows += ["", "| model | length | width | steps x rows | test query acc | at the sweep's budget | lr | seeds |"]
        rows.append("|---|---:|---:|---:|---:|---:|---|---|")
        for cell in sorted(
            longer, key=lambda c: (list(FAMILIES).index(c["model"]), c["seq_len"], c["width"], c["budget"])
        ):
            base = by_key.get((cell["model"], cell["width"], cell["seq_len"]))
            rows.append(
                f"| {FAMILIES[cell['model']]} | {cell['seq_len']} | {cell['width']} | "
                f"{cell['steps']:,} x {cell['rows_per_step']} ({cell['budget']}x) | {_acc(cell)} | {_acc(base)} | "
                f"{cell['lr']:g} | {len(cell['seeds'])} |"
            )
    return "\n".join(rows)


def _acc(cell: dict | None) -> str:
    if cell is None:
        return "–"
    std = cell["test_query_acc_sample_std"]
    return f"{100 * cell['test_query_acc_mean']:.1f}%" + (f" ± {100 * std:.1f}" if std is not None else "")


def plot(selected: list[dict], points: list[dict], path: Path) -> None:
    """One panel per length: each family's mean over seeds (bars: sample std) at its chosen lr,
    and every seed of that lr as a small dot, since two seeds can disagree a lot."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    selected = [s for s in selected if s["budget"] == 1]
    lengths = sorted({s["seq_len"] for s in selected})
    fig = Figure(figsize=(4.6 * len(lengths), 4.0))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(lengths), sharey=True, squeeze=False)[0]
    for ax, seq_len in zip(axes, lengths):
        for index, (model, label) in enumerate(FAMILIES.items()):
            color = f"C{index}"  # the same colour for a family in every panel
            cells = sorted(
                (s for s in selected if s["model"] == model and s["seq_len"] == seq_len), key=lambda s: s["state_size"]
            )
            if not cells:
                continue
            x = [c["state_size"] for c in cells]
            y = [100 * c["test_query_acc_mean"] for c in cells]
            err = [100 * (c["test_query_acc_sample_std"] or 0.0) for c in cells]
            ax.errorbar(x, y, yerr=err, marker="o", capsize=3, color=color, label=label)
            for c in cells:
                seeds = [
                    p
                    for p in points
                    if (p["model"], p["seq_len"], p["width"], p["budget"], p["lr"])
                    == (model, seq_len, c["width"], 1, c["lr"])
                ]
                ax.scatter(
                    [c["state_size"]] * len(seeds),
                    [100 * p["test_query_acc"] for p in seeds],
                    s=12,
                    color=color,
                    alpha=0.5,
                )
        pairs = next(p["num_kv_pairs"] for p in points if p["seq_len"] == seq_len)
        ax.set_title(f"length {seq_len}, {pairs} key-value pairs")
        ax.set_xscale("log")
        ax.set_xlabel("recurrent state size (floats per sequence)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test query accuracy (%)")
    axes[0].set_ylim(-2, 102)
    axes[0].legend(fontsize=7, loc="center right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def update_readme(readme: Path, text: str) -> None:
    body = readme.read_text()
    head, first, rest = body.partition(MARK)
    _, second, tail = rest.partition(MARK)
    if not (first and second):
        raise SystemExit(f"{readme}: no pair of {MARK} markers to put the table between")
    readme.write_text(f"{head}{MARK}\n{text}\n{MARK}{tail}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=Path, default=Path("runs/mqar_cpu"))
    parser.add_argument("--out", type=Path, default=Path("docs/results/mqar_cpu"))
    args = parser.parse_args()
    points = collect(args.runs)
    if not points:
        raise SystemExit(f"no finished MQAR sweep points under {args.runs}")
    selected = select(points)
    args.out.mkdir(parents=True, exist_ok=True)
    results = {
        "points": points,
        "selected": selected,
        "total_train_wall_time_s": math.fsum(p["wall_time_s"] for p in points),
    }
    (args.out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    plot(selected, points, args.out / "mqar_state_size.png")
    text = table(selected)
    if (args.out / "README.md").is_file():
        update_readme(args.out / "README.md", text)
    print(text)
    print(f"{len(points)} points, {results['total_train_wall_time_s'] / 60:.1f} min of runs (summed over points)")


if __name__ == "__main__":
    main()
