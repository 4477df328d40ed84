"""``seqlab sweep``: every grid point x seed of every selected run, chosen on validation, with error bars.

A comparison of architectures is only as fair as the tuning each one got. A sweep gives every
model the same budget: the same grid size, the same seeds, the same data. Each point is an
ordinary run (``seqlab fit`` of one recipe run with overrides), stored under
``runs/<experiment>/sweep/<point>/``, so VisualDL's hyperparameter tab shows every point and a
sweep run again skips the points that finished and resumes the others from their last checkpoint.

Selection uses the validation metrics of each point's last validation, never the test: for each
run of the recipe, the setting with the best mean validation metric wins, compared on the seeds
that every setting of that run finished (a screening stage of one seed per setting, then more
seeds at the winner, gives the winner no edge from its extra draws). The report gives the test
metrics at the chosen setting as mean ± std over all its seeds.
"""

from __future__ import annotations

import difflib
import json
import logging
import math
import re
import statistics
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

from seqlab.errors import SeqlabError
from seqlab.io import atomic_write_text
from seqlab.summary import RunSummary

log = logging.getLogger(__name__)

MANIFEST = "sweep.json"  # what was asked for: the points and their settings, by folder name


# ---------------------------------------------------------------------------- planning
def parse_grid(items: list[str], runs: list[str]) -> dict[str, dict[str, list[str]]]:
    """The grid of each run, from ``--grid KEY=v1,v2`` (every run) and ``--grid RUN:KEY=v1,v2``.

    ``{"rwkv7": {"trainer.optimizer.lr": ["4e-3", "8e-3"]}, ...}``: a model may need its own
    values (its lr's optimum lies elsewhere) while every model gets as many.
    """
    grids: dict[str, dict[str, list[str]]] = {run: {} for run in runs}
    for item in items:
        key, eq, values = item.partition("=")
        scope, colon, key = key.strip().removeprefix("--").rpartition(":")
        options = [v.strip() for v in values.split(",") if v.strip()]
        if not eq or not key or not options:
            raise SeqlabError(
                f"--grid {item!r}: write KEY=v1,v2,... (or RUN:KEY=v1,v2,... for one run) with a dotted "
                "option as KEY, e.g. --grid trainer.optimizer.lr=1e-3,2e-3,4e-3."
            )
        if colon and scope not in grids:
            close = difflib.get_close_matches(scope, list(grids), n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise SeqlabError(f"--grid {item!r}: no selected run '{scope}'.{hint} Selected: {', '.join(grids)}.")
        for run in [scope] if colon else list(grids):
            if key in grids[run]:
                raise SeqlabError(f"--grid gives {key} twice for run '{run}'; give all its values in one --grid.")
            grids[run][key] = options
    return grids


def _short(key: str) -> str:
    return key.rsplit(".", 1)[-1]


@dataclass(frozen=True)
class Point:
    """One run of the recipe at one grid setting and one seed."""

    run: str
    settings: tuple[tuple[str, str], ...]  # (dotted key, value), in grid order
    seed: int

    @property
    def name(self) -> str:
        """The point's folder: ``rwkv7-lr=0.004-seed42`` (characters a file system takes)."""
        parts = [self.run] + [f"{_short(k)}={v}" for k, v in self.settings] + [f"seed{self.seed}"]
        return re.sub(r"[^A-Za-z0-9._=+-]", "_", "-".join(parts))

    def overrides(self) -> list[str]:
        args = []
        for key, value in self.settings:
            args += [f"--{key}", value]
        return [*args, "--trainer.seed", str(self.seed)]


def plan(runs: dict[str, int], grids: dict[str, dict[str, list[str]]], seeds: int) -> list[Point]:
    """Every run x its grid points x seed; ``runs`` maps a run to its base seed (base, base+1, ...)."""
    points = []
    for run, base in runs.items():
        combos: list[tuple[tuple[str, str], ...]] = [()]
        for key, values in grids.get(run, {}).items():
            combos = [c + ((key, v),) for c in combos for v in values]
        points += [Point(run, combo, base + i) for combo in combos for i in range(seeds)]
    return points


def write_manifest(sweep_dir: Path, points: list[Point], grids: dict[str, dict[str, list[str]]]) -> None:
    """Add ``points`` and the values tried to the sweep's manifest (a later sweep may add more)."""
    path = sweep_dir / MANIFEST
    data = json.loads(path.read_text()) if path.is_file() else {"grids": {}, "points": {}}
    for run, grid in grids.items():
        for key, values in grid.items():
            known = data["grids"].setdefault(run, {}).setdefault(key, [])
            known += [v for v in values if v not in known]
    for p in points:
        data["points"][p.name] = {"run": p.run, "settings": dict(p.settings), "seed": p.seed}
    sweep_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")


# ---------------------------------------------------------------------------- results
@dataclass
class Setting:
    """One run at one grid setting, over its seeds."""

    run: str
    settings: dict[str, str]
    points: list[tuple[int, RunSummary]] = field(default_factory=list)  # (seed, summary)

    def scores(self, where: str, metric: str) -> dict[int, float]:
        """Seed -> the finite value of ``metric`` in the point's ``val`` or ``test`` metrics."""
        out = {}
        for seed, s in self.points:
            value = (s.val if where == "val" else s.test).get(metric)
            if isinstance(value, (int, float)) and math.isfinite(value):
                out[seed] = float(value)
        return out

    def values(self, where: str, metric: str) -> list[float]:
        return list(self.scores(where, metric).values())

    def mean(self, where: str, metric: str, seeds: Optional[set[int]] = None) -> Optional[float]:
        v = [x for seed, x in self.scores(where, metric).items() if seeds is None or seed in seeds]
        return statistics.fmean(v) if v else None

    def std(self, where: str, metric: str) -> Optional[float]:
        v = self.values(where, metric)
        return statistics.stdev(v) if len(v) > 1 else None


def load_settings(sweep_dir: Path) -> list[Setting]:
    """The finished points of a sweep, grouped by (run, setting), in manifest order."""
    path = sweep_dir / MANIFEST
    if not path.is_file():
        return []
    manifest = json.loads(path.read_text())
    groups: dict[tuple, Setting] = {}
    for name, info in manifest["points"].items():
        key = (info["run"], tuple(sorted(info["settings"].items())))
        group = groups.setdefault(key, Setting(info["run"], dict(info["settings"])))
        summary_path = sweep_dir / name / RunSummary.FILENAME
        if summary_path.is_file():
            try:
                group.points.append((int(info["seed"]), RunSummary.read(summary_path)))
            except (OSError, ValueError, TypeError) as exc:
                log.warning("sweep: cannot read %s (%s); left out.", summary_path, exc)
    return list(groups.values())


def selection_seeds(settings: list[Setting], run: str, metric: str) -> Optional[set[int]]:
    """The seeds on which every scored setting of ``run`` has a validation ``metric`` (None: no common seed)."""
    seed_sets = [set(s.scores("val", metric)) for s in settings if s.run == run and s.scores("val", metric)]
    common = set.intersection(*seed_sets) if seed_sets else set()
    return common or None


def best_settings(settings: list[Setting], metric: str, mode: str) -> dict[str, Setting]:
    """Per run, the setting with the best mean validation ``metric`` (min or max) on the run's
    :func:`selection_seeds` (all seeds when the settings share none); the first listed wins a tie."""
    best: dict[str, Setting] = {}
    for run in dict.fromkeys(s.run for s in settings):
        seeds = selection_seeds(settings, run, metric)
        scored = [(s.mean("val", metric, seeds), s) for s in settings if s.run == run]
        scored = [(score, s) for score, s in scored if score is not None]
        if scored:
            pick = max if mode == "max" else min
            best[run] = pick(scored, key=lambda item: item[0])[1]
    return best


def at_grid_edge(setting: Setting, grid: dict[str, list[str]]) -> list[str]:
    """The swept keys whose winning value is the smallest or largest tried (widen the grid)."""
    edges = []
    for key, value in setting.settings.items():
        values = grid.get(key, [])
        try:
            ordered = sorted(values, key=float)
        except ValueError:
            continue  # not numbers: no ends to speak of
        if len(ordered) >= 2 and value in (ordered[0], ordered[-1]):
            edges.append(key)
    return edges


# ---------------------------------------------------------------------------- the report
def _fmt(mean: Optional[float], std: Optional[float], pct: bool) -> str:
    if mean is None:
        return "—"
    if pct:
        return f"{mean:.2%}" + (f" ± {std * 100:.2f}" if std is not None else "")
    return f"{mean:.4f}" + (f" ± {std:.4f}" if std is not None else "")


def _is_fraction(metric: str) -> bool:
    return metric.endswith("acc")


def write_sweep_report(sweep_dir: Path, metric: str, mode: str) -> list[Path]:
    """``report.md``, ``sweep.png`` (validation metric against each swept value) and ``results.json``.

    The test columns are ``metric`` and the columns the task declares for its report.
    """
    settings = load_settings(sweep_dir)
    if not any(s.points for s in settings):
        return []
    spec = next((p.report for s in settings for _, p in s.points if p.report is not None), None)
    test_metrics = [metric] + [c.key for c in (spec.columns if spec else []) if c.key != metric]
    manifest = json.loads((sweep_dir / MANIFEST).read_text())
    grids = manifest["grids"]
    best = best_settings(settings, metric, mode)
    pct = _is_fraction(metric)
    generated = datetime.now(timezone.utc).replace(microsecond=0).isoformat()
    lines = [
        f"# Sweep: {sweep_dir.parent.name}",
        "",
        f"Generated {generated}. Each point is a run under `{sweep_dir.name}/`; selection is on the "
        f"last validation's `{metric}` ({'higher' if mode == 'max' else 'lower'} is better), averaged "
        "over the seeds that every setting of the model finished, never on the test set.",
        "",
        "## Best setting per model",
        "",
        "| model | best setting | seeds | val " + metric + " | " + " | ".join(f"test {m}" for m in test_metrics) + " |",
        "|---|---|---:|---:|" + "---:|" * len(test_metrics),
    ]
    for run, s in best.items():
        cells = [run, s_label(s), str(len(s.points)), _fmt(s.mean("val", metric), s.std("val", metric), pct)]
        cells += [_fmt(s.mean("test", m), s.std("test", m), _is_fraction(m)) for m in test_metrics]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(
        "Values are mean ± standard deviation over all seeds of the setting (sample std; none with one seed). "
        "Seeds compared in the selection: "
        + "; ".join(f"{run} {_seeds_text(selection_seeds(settings, run, metric))}" for run in best)
        + "."
    )
    edge = {run: at_grid_edge(s, grids.get(run, {})) for run, s in best.items()}
    flagged = [f"{run} ({', '.join(keys)})" for run, keys in edge.items() if keys]
    lines.append(
        "Every winning value lies inside its grid."
        if not flagged
        else "**At the edge of the grid** (its optimum may lie beyond; widen the grid): " + ", ".join(flagged) + "."
    )
    lines += [
        "",
        "![validation metric per setting](sweep.png)",
        "",
        "## Every setting",
        "",
        "| model | setting | seeds | val " + metric + " | test " + metric + " |",
        "|---|---|---:|---:|---:|",
    ]
    for s in settings:
        mark = " **(best)**" if best.get(s.run) is s else ""
        lines.append(
            f"| {s.run} | {s_label(s)}{mark} | {len(s.points)} | "
            f"{_fmt(s.mean('val', metric), s.std('val', metric), pct)} | "
            f"{_fmt(s.mean('test', metric), s.std('test', metric), pct)} |"
        )
    lines += [
        "",
        "## Every point",
        "",
        "| point | seed | val " + metric + " | test " + metric + " | steps | wall time (s) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for s in settings:
        for seed, summary in sorted(s.points, key=lambda p: p[0]):
            lines.append(
                f"| {summary.run} | {seed} | {_fmt(summary.val.get(metric), None, pct)} | "
                f"{_fmt(summary.test.get(metric), None, pct)} | {summary.steps} | "
                f"{summary.wall_time_s or 0:.0f} |"
            )
    report = sweep_dir / "report.md"
    atomic_write_text(report, "\n".join(lines) + "\n")
    paths = [report]
    if _plot(settings, grids, metric, mode, sweep_dir / "sweep.png"):
        paths.append(sweep_dir / "sweep.png")
    results = [
        {
            "run": s.run,
            "settings": s.settings,
            "best": best.get(s.run) is s,
            "seeds": [seed for seed, _ in s.points],
            "val": {metric: s.values("val", metric)},
            "test": {m: s.values("test", m) for m in test_metrics},
        }
        for s in settings
    ]
    atomic_write_text(
        sweep_dir / "results.json",
        json.dumps({"metric": metric, "mode": mode, "generated_at": generated, "settings": results}, indent=2) + "\n",
    )
    return paths + [sweep_dir / "results.json"]


def _seeds_text(seeds: Optional[set[int]]) -> str:
    return ", ".join(str(seed) for seed in sorted(seeds)) if seeds else "all (no seed common to every setting)"


def s_label(s: Setting) -> str:
    return ", ".join(f"{_short(k)}={v}" for k, v in s.settings.items()) or "(default)"


def _plot(settings: list[Setting], grids: dict[str, dict[str, list[str]]], metric: str, mode: str, path: Path) -> bool:
    """The validation metric against each run's first swept key, one line per model, error bars over seeds."""
    from matplotlib.figure import Figure

    from seqlab.report import save_figure

    keys = {run: next(iter(grid)) for run, grid in grids.items() if grid}
    try:
        xs = [float(v) for run, key in keys.items() for v in grids[run][key]]
    except ValueError:
        return False
    if not xs:
        return False
    fig = Figure(figsize=(9, 5.5))
    ax = fig.add_subplot()
    for run, key in keys.items():
        rows = sorted(
            (float(s.settings[key]), s.mean("val", metric), s.std("val", metric) or 0.0)
            for s in settings
            if s.run == run and key in s.settings and s.mean("val", metric) is not None
        )
        if rows:
            ax.errorbar(
                [r[0] for r in rows],
                [r[1] for r in rows],
                yerr=[r[2] for r in rows],
                marker="o",
                capsize=4,
                linewidth=2,
                label=run,
            )
    if min(xs) > 0 and max(xs) / min(xs) >= 10:
        ax.set_xscale("log")
    names = sorted(set(keys.values()))
    ax.set_xlabel(", ".join(names))
    ax.set_ylabel(f"val {metric} (mean ± std over seeds)")
    ax.set_title(
        f"{metric} ({'higher' if mode == 'max' else 'lower'} is better) against {', '.join(_short(k) for k in names)}"
    )
    ax.grid(True, linestyle="--", alpha=0.5)
    ax.legend()
    save_figure(fig, path)
    return True
