"""``seqlab sweep``: every grid point x seed of every selected run, chosen on validation, with error bars.

A comparison of architectures is only as fair as the tuning each one got. A sweep gives every
model the same budget: the same grid size, the same seeds, the same data. Each point is an
ordinary run (``seqlab fit`` of one recipe run with overrides), stored under
``runs/<experiment>/sweep/<point>/``, so VisualDL's hyperparameter tab shows every point and a
sweep run again skips the points that finished and resumes the others from their last checkpoint.

Selection uses the validation metrics of each point's last validation, never the test: for each
run of the recipe, the setting with the best mean validation metric wins, compared on the seeds
that every setting of that run finished (a screening stage of one seed per setting, then more
seeds at the winner, gives the winner no edge from its extra draws).

The report gives each winner's test metrics over its **held-out seeds** (seeds that took no part
in the selection: ``--test_seeds K`` trains K of them after the selection, recorded as such in the
manifest; a winner's seeds outside the selection seeds count too), else over its selection seeds,
marked as such. Per model: mean, sample std and a Student t 95% interval
(:mod:`seqlab.report.stats`); per pair of models: whether the intervals overlap and Welch's test.
Its "tuning budget" counts every point folder of a model, plus ``--prior_points`` from earlier
tuning. ``results.json`` holds every figure the report prints and the values behind them.
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
from seqlab.report.stats import INTERVAL_METHOD, Interval, mean_interval, overlap, welch_test
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
        options = [v.strip() for v in _split_values(values) if v.strip()]
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


def _split_values(values: str) -> list[str]:
    """``1e-3,2e-3`` -> two values; commas inside brackets stay, so a list is one value:
    ``[32,32],[64,64]`` -> ``[32,32]`` and ``[64,64]`` (e.g. the LSTM's hidden_sizes)."""
    out, depth, start = [], 0, 0
    for i, ch in enumerate(values):
        depth += {"[": 1, "{": 1, "]": -1, "}": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            out.append(values[start:i])
            start = i + 1
    return [*out, values[start:]]


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
    # Points trained for ``--test_seeds`` after the selection: reported, never selected on.
    held: list[tuple[int, RunSummary]] = field(default_factory=list)

    def test_scores(self, metric: str) -> dict[int, float]:
        """Seed -> the finite test ``metric`` over every point, held-out ones included."""
        return {**self.scores("test", metric), **Setting(self.run, self.settings, self.held).scores("test", metric)}

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
    held = set(manifest.get("held_out", []))
    groups: dict[tuple, Setting] = {}
    for name, info in manifest["points"].items():
        key = (info["run"], tuple(sorted(info["settings"].items())))
        group = groups.setdefault(key, Setting(info["run"], dict(info["settings"])))
        summary_path = sweep_dir / name / RunSummary.FILENAME
        if summary_path.is_file():
            try:
                where = group.held if name in held else group.points
                where.append((int(info["seed"]), RunSummary.read(summary_path)))
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


# ---------------------------------------------------------------------------- held-out seeds, budget
def held_out_seeds(settings: list[Setting], setting: Setting, metric: str) -> list[int]:
    """Seeds of ``setting`` (a run's winner) that took no part in the selection: those outside the
    run's :func:`selection_seeds`. None of them when the settings share no seed (then every
    seed was compared)."""
    chosen = selection_seeds(settings, setting.run, metric)
    outside = [seed for seed, _ in setting.points if chosen is not None and seed not in chosen]
    return sorted({*outside, *(seed for seed, _ in setting.held)})


def record_held_out(sweep_dir: Path, names: list[str]) -> None:
    """Mark the points ``names`` in the manifest as held-out test points (never selected on)."""
    path = sweep_dir / MANIFEST
    data = json.loads(path.read_text()) if path.is_file() else {"grids": {}, "points": {}}
    known = data.setdefault("held_out", [])
    known += [n for n in names if n not in known]
    sweep_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")


def read_prior_points(sweep_dir: Path) -> dict[str, int]:
    """The points each run had before this sweep, as the manifest records them (``--prior_points``)."""
    path = sweep_dir / MANIFEST
    data = json.loads(path.read_text()) if path.is_file() else {}
    return {str(k): int(v) for k, v in (data.get("prior_points") or {}).items()}


def record_prior_points(sweep_dir: Path, prior: dict[str, int]) -> None:
    """Store ``--prior_points RUN=N`` in the manifest, so every later report counts them."""
    path = sweep_dir / MANIFEST
    data = json.loads(path.read_text()) if path.is_file() else {"grids": {}, "points": {}}
    data.setdefault("prior_points", {}).update({run: int(n) for run, n in prior.items()})
    sweep_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")


def parse_prior_points(items: list[str]) -> dict[str, int]:
    """``["rwkv7=12", "lstm=0"]`` -> ``{"rwkv7": 12, "lstm": 0}``; a malformed item is one sentence."""
    out = {}
    for item in items:
        run, eq, count = item.partition("=")
        try:
            number = int(count)
        except ValueError:
            number = -1
        if not eq or not run.strip() or number < 0:
            raise SeqlabError(
                f"--prior_points {item!r}: write RUN=N, the number of points a run was tuned with before "
                "this sweep (e.g. --prior_points rwkv7=12)."
            )
        out[run.strip()] = number
    return out


def tuning_budget(sweep_dir: Path, run: str, held_out: set[str]) -> int:
    """Point folders of ``run`` in the sweep folder, finished or not, minus its held-out test points.

    Folders the manifest lists for the run count, and so do unlisted ``<run>-...-seedN`` folders
    (points whose manifest entry was removed still cost tuning)."""
    path = sweep_dir / MANIFEST
    listed = json.loads(path.read_text())["points"] if path.is_file() else {}
    mine = {name for name, info in listed.items() if info["run"] == run and (sweep_dir / name).is_dir()}
    pattern = re.compile(re.escape(run) + r"-.*seed\d+")
    mine |= {p.name for p in sweep_dir.iterdir() if p.is_dir() and p.name not in listed and pattern.fullmatch(p.name)}
    return len(mine - held_out)


# ---------------------------------------------------------------------------- the report
def _fmt(mean: Optional[float], std: Optional[float], pct: bool) -> str:
    if mean is None:
        return "—"
    if pct:
        return f"{mean:.2%}" + (f" ± {std * 100:.2f}" if std is not None else "")
    return f"{mean:.4f}" + (f" ± {std:.4f}" if std is not None else "")


def _num(value: Optional[float], pct: bool) -> str:
    if value is None:
        return "—"
    return f"{value * 100:.2f}" if pct else f"{value:.4f}"


def _interval_text(iv: Optional[Interval], pct: bool) -> str:
    if iv is None or iv.lo is None:
        return "—"
    return f"[{_num(iv.lo, pct)}, {_num(iv.hi, pct)}]"


def _is_fraction(metric: str) -> bool:
    return metric.endswith("acc")


@dataclass
class ModelResult:
    """One run's winner: the seeds it was chosen on, the held-out seeds it is reported on."""

    run: str
    setting: Setting
    selection_seeds: list[int]
    held_out: list[int]
    tuning_points: int
    prior_points: int

    def test_values(self, metric: str) -> list[float]:
        """The test ``metric`` on the held-out seeds, else (none held out) on every seed."""
        scores = self.setting.test_scores(metric)
        seeds = self.held_out or sorted(scores)
        return [scores[s] for s in seeds if s in scores]

    def to_dict(self, metric: str, test_metrics: list[str]) -> dict:
        sel = set(self.selection_seeds) or None
        return {
            "run": self.run,
            "settings": self.setting.settings,
            "selection_seeds": self.selection_seeds,
            "val_selection_mean": {metric: self.setting.mean("val", metric, sel)},
            "test_seeds": self.held_out or sorted(self.setting.test_scores(metric)),
            "test_seeds_held_out": bool(self.held_out),
            "test": {m: _interval_dict(self.test_values(m)) for m in test_metrics},
            "test_on_selection_seeds": {
                m: _interval_dict([v for s, v in self.setting.scores("test", m).items() if sel is None or s in sel])
                for m in test_metrics
            },
            "tuning_budget": {
                "points_in_this_sweep": self.tuning_points,
                "prior_points": self.prior_points,
                "total": self.tuning_points + self.prior_points,
            },
        }


def _interval_dict(values: list[float]) -> Optional[dict]:
    iv = mean_interval(values)
    return None if iv is None else {**iv.to_dict(), "values": values}


def model_results(sweep_dir: Path, settings: list[Setting], metric: str, mode: str) -> dict[str, ModelResult]:
    """Each run's winner with its selection seeds, held-out seeds and tuning budget."""
    prior = read_prior_points(sweep_dir)
    out = {}
    for run, s in best_settings(settings, metric, mode).items():
        held = held_out_seeds(settings, s, metric)
        held_names = {p.run for seed, p in [*s.points, *s.held] if seed in held}
        chosen = selection_seeds(settings, run, metric)
        out[run] = ModelResult(
            run,
            s,
            sorted(chosen or s.scores("val", metric)),
            held,
            tuning_budget(sweep_dir, run, held_names),
            prior.get(run, 0),
        )
    return out


def comparisons(models: dict[str, ModelResult], metric: str) -> list[dict]:
    """Every pair of models on the test ``metric``: intervals, whether they overlap, Welch's test."""
    out = []
    names = list(models)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            va, vb = models[a].test_values(metric), models[b].test_values(metric)
            ia, ib = mean_interval(va), mean_interval(vb)
            w = welch_test(va, vb)
            out.append(
                {
                    "a": a,
                    "b": b,
                    "metric": metric,
                    "overlap": overlap(ia, ib) if ia and ib else None,
                    "welch": None if w is None else {"t": w.t, "df": w.df, "p": w.p},
                }
            )
    return out


def _comparison_line(c: dict, models: dict[str, ModelResult], pct: bool) -> str:
    a, b = models[c["a"]], models[c["b"]]
    ia, ib = mean_interval(a.test_values(c["metric"])), mean_interval(b.test_values(c["metric"]))
    if ia is None or ib is None:
        return f"- {c['a']} vs {c['b']}: no test values for one of them."
    head = (
        f"- **{c['a']} vs {c['b']}**: {_num(ia.mean, pct)} {_interval_text(ia, pct)} against "
        f"{_num(ib.mean, pct)} {_interval_text(ib, pct)}"
    )
    if c["overlap"] is None:
        verdict = "no interval for a model with one test seed, so no overlap to judge"
    else:
        verdict = "the 95% intervals overlap" if c["overlap"] else "the 95% intervals do not overlap"
    w = c["welch"]
    if w is None:
        test = "Welch's test is undefined (a model with fewer than 2 test seeds, or no spread in either)"
    else:
        test = f"Welch's t = {w['t']:.2f}, df = {w['df']:.1f}, two-sided p = {w['p']:.3g}"
        test += " (a difference at the 5% level)" if w["p"] < 0.05 else " (not a difference at the 5% level)"
    return f"{head}: {verdict}; {test}."


def write_sweep_report(sweep_dir: Path, metric: str, mode: str, note: str = "") -> list[Path]:
    """``report.md``, ``sweep.png`` (validation metric against each swept value) and ``results.json``
    (every figure the report prints, and the values they come from).

    The test columns are ``metric`` and the columns the task declares for its report. ``note``
    (e.g. why no held-out seeds were trained) goes under the best-setting table.
    """
    settings = load_settings(sweep_dir)
    if not any(s.points for s in settings):
        return []
    spec = next((p.report for s in settings for _, p in s.points if p.report is not None), None)
    test_metrics = [metric] + [c.key for c in (spec.columns if spec else []) if c.key != metric]
    manifest = json.loads((sweep_dir / MANIFEST).read_text())
    grids = manifest["grids"]
    models = model_results(sweep_dir, settings, metric, mode)
    best = {run: m.setting for run, m in models.items()}
    pct = _is_fraction(metric)
    unit = " (%)" if pct else ""
    generated = datetime.now(timezone.utc).replace(microsecond=0).isoformat()
    lines = [
        f"# Sweep: {sweep_dir.parent.name}",
        "",
        f"Generated {generated}. Each point is a run under `{sweep_dir.name}/`; selection is on the "
        f"last validation's `{metric}` ({'higher' if mode == 'max' else 'lower'} is better), averaged "
        "over the seeds that every setting of the model finished (its selection seeds), never on the test set.",
        "",
        "## Best setting per model",
        "",
        f"| model | best setting | tuning budget (points) | selection seeds | val {metric}, selection mean | "
        f"test seeds | test {metric}: mean{unit} | sample std | 95% interval (t) |"
        + "".join(f" test {m}: mean ± sample std |" for m in test_metrics[1:]),
        "|---|---|---:|---|---:|---|---:|---:|---:|" + "---:|" * len(test_metrics[1:]),
    ]
    for run, m in models.items():
        s = m.setting
        iv = mean_interval(m.test_values(metric))
        budget = str(m.tuning_points) + (f" + {m.prior_points} earlier" if m.prior_points else "")
        seeds = (
            _seeds_text(set(m.held_out)) + " (held out)"
            if m.held_out
            else _seeds_text(set(s.test_scores(metric))) + " (selection) *"
        )
        cells = [
            run,
            s_label(s),
            budget,
            _seeds_text(set(m.selection_seeds)),
            _fmt(s.mean("val", metric, set(m.selection_seeds) or None), None, pct),
            seeds,
            _num(iv.mean if iv else None, pct),
            _num(iv.std if iv else None, pct),
            _interval_text(iv, pct),
        ]
        for other in test_metrics[1:]:
            ov = mean_interval(m.test_values(other))
            cells.append(_fmt(ov.mean if ov else None, ov.std if ov else None, _is_fraction(other)))
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Test figures are over each winner's **held-out seeds**: seeds of the winning setting that took no "
        "part in the selection (`seqlab sweep --test_seeds K` trains K of them). A model marked * has none, "
        "so its test figures are over the seeds that chose it and lean towards it (the winner's luck on "
        "them is part of why it won). "
        f"Std is the sample standard deviation (n-1); the interval is the {INTERVAL_METHOD}; none with one seed.",
        "The tuning budget counts every point folder of the model in this sweep (finished or not, held-out "
        "test points excluded), plus the points `--prior_points` records for tuning done before it.",
    ]
    if note:
        lines.append(note)
    edge = {run: at_grid_edge(s, grids.get(run, {})) for run, s in best.items()}
    flagged = [f"{run} ({', '.join(keys)})" for run, keys in edge.items() if keys]
    lines.append(
        "Every winning value lies inside its grid."
        if not flagged
        else "**At the edge of the grid** (its optimum may lie beyond; widen the grid): " + ", ".join(flagged) + "."
    )
    pairs = comparisons(models, metric)
    if pairs:
        lines += ["", f"## Pairs of models (test {metric}, mean [95% interval], on the seeds above)", ""]
        lines += [_comparison_line(c, models, pct) for c in pairs]
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
        "Values here are mean ± sample std over every seed of the setting except the points trained "
        "by `--test_seeds` (those are in the first table only).",
        "",
        "## Every point",
        "",
        "| point | seed | role | val " + metric + " | test " + metric + " | steps | wall time (s) |",
        "|---|---:|---|---:|---:|---:|---:|",
    ]
    for s in settings:
        held = set(models[s.run].held_out) if best.get(s.run) is s else set()
        for seed, summary in sorted([*s.points, *s.held], key=lambda p: p[0]):
            lines.append(
                f"| {summary.run} | {seed} | {'held out' if seed in held else 'selection'} | "
                f"{_fmt(summary.val.get(metric), None, pct)} | "
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
            "wall_time_s": [p.wall_time_s for _, p in s.points],
            "steps": [p.steps for _, p in s.points],
            "held_out": {
                "seeds": [seed for seed, _ in s.held],
                "test": {m: Setting(s.run, s.settings, s.held).values("test", m) for m in test_metrics},
                "wall_time_s": [p.wall_time_s for _, p in s.held],
            },
        }
        for s in settings
    ]
    data = {
        "metric": metric,
        "mode": mode,
        "generated_at": generated,
        "interval_method": INTERVAL_METHOD,
        "std": "sample (n-1)",
        "prior_points": read_prior_points(sweep_dir),
        "models": [m.to_dict(metric, test_metrics) for m in models.values()],
        "comparisons": pairs,
        "settings": results,
    }
    atomic_write_text(sweep_dir / "results.json", json.dumps(data, indent=2) + "\n")
    return paths + [sweep_dir / "results.json"]


def held_out_request(
    sweep_dir: Path, metric: str, mode: str, bases: dict[str, int], seeds: int, test_seeds: int, failed: bool
) -> tuple[Optional[dict], str]:
    """What ``--test_seeds K`` trains once the selection has run: ``({"grid": [...], "runs": [...],
    "seed": base + seeds}, "")``, the winners at K seeds that no grid point used, or ``(None, why not)``.

    ``bases`` maps each selected run to its base seed; they must agree, since the held-out seeds
    are given as one ``--trainer.seed`` (base + ``seeds``, then +1, ...)."""
    if failed:
        return None, "No held-out seeds were trained: a selection point failed, so the selection is incomplete."
    if len(set(bases.values())) != 1:
        return None, (
            "No held-out seeds were trained: the runs have different base seeds "
            f"({', '.join(f'{r} {b}' for r, b in bases.items())}); sweep them one run at a time."
        )
    winners = best_settings(load_settings(sweep_dir), metric, mode)
    missing = [run for run in bases if run not in winners]
    if missing:
        return None, f"No held-out seeds were trained: {', '.join(missing)} has no finished point to select."
    base = next(iter(bases.values())) + seeds
    grid = [f"{run}:{key}={value}" for run in bases for key, value in winners[run].settings.items()]
    names = [
        Point(run, tuple(winners[run].settings.items()), base + i).name for run in bases for i in range(test_seeds)
    ]
    return {"grid": grid, "runs": list(bases), "seed": base, "points": names}, ""


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
