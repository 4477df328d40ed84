"""The experiment report: one table, two plots and the tested models' samples.

``write_report(runs/<experiment>)`` reads what finished runs leave in their folders
(``metrics.json``, ``metrics.csv``, ``samples.txt``) and writes, into the same folder:

- ``report.md``: a table of every run (sorted by the task's primary metric), the two plots, and
  each run's sample predictions;
- ``loss.png``: training loss of every run, raw (thin) and smoothed (bold), one colour per run;
- ``<chart>.png``: the task's chart of test metrics per run, the values on the bars (digit
  reversal: ``accuracy.png``, masked and exact-match accuracy);
- ``report.json``: the table's numbers, for scripts.

It knows no task: what to rank by, which metric columns to show and in what words, the chart and
the notes come from the task's declaration that each run recorded in its metrics.json
(:class:`seqlab.summary.ReportSpec`). When runs word a text differently (say, probes of
different lengths), the report uses the declaration's fallback wording, or leaves a note out.
A folder of runs that recorded no declaration gets one column per test metric.

It needs no model, task or Paddle: only the files. A run folder without ``metrics.json`` is an
unfinished run; it is listed as such (and its loss curve drawn if it has one), never an error.

Plots are drawn on ``matplotlib.figure.Figure`` objects rendered by the Agg canvas, not through
``pyplot``: no backend is selected and no global matplotlib state is touched, so importing this
module in a notebook changes nothing there.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import re
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

from seqlab import text
from seqlab.io import atomic_write, atomic_write_text
from seqlab.summary import PROTOCOLS, Chart, Column, ReportSpec, RunSummary

log = logging.getLogger(__name__)

# The seed's colours for its three models; other runs take the next unused tab10 colour.
SEED_COLOURS = {"rwkv": "#1f77b4", "transformer": "#ff7f0e", "lstm": "#d62728"}
TAB10 = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]
SMOOTH_WINDOW = 100  # the seed's 100-step moving average (also its best-checkpoint rule)

# Files a run folder may hold; a folder with none of them is not a run.
_RUN_MARKERS = ("metrics.json", "metrics.csv", "config.yaml", "checkpoints")


@dataclass
class RunData:
    """What the report knows about one run folder."""

    name: str
    path: Path
    summary: Optional[RunSummary] = None  # None: not finished (no readable metrics.json)
    steps: list[int] = field(default_factory=list)  # from metrics.csv
    losses: list[float] = field(default_factory=list)
    samples: Optional[str] = None
    colour: str = "#7f7f7f"

    @property
    def finished(self) -> bool:
        return self.summary is not None

    def metric(self, key: str) -> Optional[float]:
        """A numeric metric or fact, or None when absent, not a number, or NaN."""
        return self.summary.metric(key) if self.summary is not None else None

    def is_nan(self, key: str) -> bool:
        return self.summary is not None and self.summary.is_nan(key)


# ---------------------------------------------------------------------------- reading
def _read_summary(path: Path) -> Optional[RunSummary]:
    try:
        return RunSummary.read(path)
    except (OSError, ValueError, TypeError) as exc:
        log.warning("report: cannot read %s (%s); the run is listed as not finished.", path, exc)
        return None


def _read_loss_curve(path: Path) -> tuple[list[int], list[float]]:
    """(steps, losses) from a run's metrics.csv; rows without a loss are skipped."""
    points: dict[int, float] = {}
    try:
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                try:
                    step, loss = int(float(row["step"])), float(row["loss"])
                except (KeyError, TypeError, ValueError):
                    continue  # validation-only rows, empty cells
                if math.isfinite(loss):
                    points[step] = loss  # a resumed run's repeated step: the later row wins
    except OSError as exc:
        log.warning("report: cannot read %s (%s); its loss curve is left out.", path, exc)
    steps = sorted(points)
    return steps, [points[s] for s in steps]


def load_runs(root: Path) -> list[RunData]:
    """Every run folder under ``root`` (finished or not), in name order."""
    runs = []
    for path in sorted(p for p in Path(root).iterdir() if p.is_dir() and not p.name.startswith(".")):
        if not any((path / marker).exists() for marker in _RUN_MARKERS):
            continue
        run = RunData(name=path.name, path=path)
        if (path / RunSummary.FILENAME).is_file():
            run.summary = _read_summary(path / RunSummary.FILENAME)
        if (path / "metrics.csv").is_file():
            run.steps, run.losses = _read_loss_curve(path / "metrics.csv")
        if (path / "samples.txt").is_file():
            run.samples = (path / "samples.txt").read_text().rstrip("\n")
        runs.append(run)
    _assign_colours(runs)
    return runs


def _assign_colours(runs: list[RunData]) -> None:
    """Seed colours for RWKV, Transformer and LSTM; tab10's next free colour for the others.

    Two runs of one model (e.g. two learning rates) must still be told apart, so a seed colour
    goes to the first such run only.
    """
    used: set[str] = set()
    rest = []
    for run in runs:
        name = str((run.summary.model if run.summary else None) or run.name).lower()
        colour = next((c for key, c in SEED_COLOURS.items() if key in name), None)
        if colour is not None and colour not in used:
            run.colour = colour
            used.add(colour)
        else:
            rest.append(run)
    free = [c for c in TAB10 if c not in used and c not in SEED_COLOURS.values()]
    free += [c for c in SEED_COLOURS.values() if c not in used]
    for i, run in enumerate(rest):
        run.colour = free[i] if i < len(free) else TAB10[i % len(TAB10)]


# ---------------------------------------------------------------------------- what to show
def experiment_spec(finished: list[RunData]) -> ReportSpec:
    """The declaration the whole report follows: the runs' own, with the texts they agree on.

    The first run (in name order) that recorded one sets the metric, columns and chart. A
    column header, the chart's title or a note that another run words differently gives way to
    the declared fallback (a note is left out). Runs that recorded none get a generic table.
    """
    specs = [r.summary.report for r in finished if r.summary is not None and r.summary.report is not None]
    if not specs:
        return _generic_spec(finished)
    base = specs[0]

    def agreed(values: list, fallback):
        return values[0] if all(v == values[0] for v in values) else fallback

    columns = []
    for column in base.columns:
        headers = [next((c.header for c in s.columns if c.key == column.key), None) for s in specs]
        columns.append(replace(column, header=agreed(headers, column.fallback_header or column.header)))
    chart = base.chart
    if chart is not None:
        titles = [s.chart.title if s.chart is not None else None for s in specs]
        chart = replace(chart, title=agreed(titles, chart.fallback_title or chart.title))
    notes = [note for note in base.notes if all(note in s.notes for s in specs)]
    return replace(base, columns=columns, chart=chart, notes=notes)


def _generic_spec(finished: list[RunData]) -> ReportSpec:
    """Runs that declared nothing (older seqlab, a task of another program): every test metric."""
    keys = sorted(
        {
            k
            for r in finished
            for k, v in r.summary.test.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)
        }
    )
    primary = "loss" if "loss" in keys else ""  # no loss: ranked by name alone
    return ReportSpec(
        primary_metric=primary,
        primary_mode="min",
        primary_label=primary or "name",
        metrics=keys,
        columns=[Column(k, k) for k in keys],
    )


def _sort_key(run: RunData, spec: ReportSpec) -> tuple:
    value = run.metric(spec.primary_metric)
    better_first = -value if value is not None and spec.primary_mode == "max" else value
    return (value is None, better_first or 0.0, run.name)


# ---------------------------------------------------------------------------- formatting
def format_duration(seconds: Optional[float]) -> str:
    """7.3 -> '7.3s', 452 -> '7m32s', 3725 -> '1h02m' (a decimal under 10 s: short runs)."""
    return text.format_duration(seconds, tenths_below=10.0)


def _pct(value: Optional[float]) -> str:
    return "—" if value is None else f"{value:.2%}"


def _int(value: Optional[float]) -> str:
    return "—" if value is None else f"{int(round(value)):,}"


def _best_loss(run: RunData) -> str:
    if run.summary is None or run.summary.tested_checkpoint != "best":
        return "— (last)"
    value, step = run.metric("best_value"), run.metric("best_step")
    if value is None:
        return f"— @ {_int(step)}"
    monitor = str(run.summary.best_monitor or "train/loss")
    suffix = "" if monitor == "train/loss" else f" ({monitor})"
    return f"{value:.4f} @ {_int(step)}{suffix}"


def _number(value: Optional[float], fmt: str, digits: int = 4) -> str:
    if value is None:
        return "—"
    if fmt == "percent":
        return _pct(value)
    if fmt == "int":
        return _int(value)
    return f"{value:,.{digits}f}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _fence(text: str) -> str:
    """A code fence longer than any backtick run inside ``text``."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    return "`" * max(3, longest + 1)


_FACT_KEYS = [
    "model",
    "params",
    "state_size",
    "steps",
    "tokens_per_s",
    "train_time_s",
    "wall_time_s",
    "tested_checkpoint",
    "tested_step",
    "best_step",
    "best_value",
    "best_monitor",
]


def run_summary(run: RunData, metrics: Optional[list[str]] = None) -> dict[str, Any]:
    """One run's row of report.json: its facts and ``metrics``, unformatted (NaN becomes null)."""
    m = run.summary.to_dict() if run.summary is not None else {}
    metrics = metrics if metrics is not None else sorted(run.summary.test if run.summary else [])
    row: dict[str, Any] = {"run": run.name}
    for key in _FACT_KEYS + list(metrics):
        value = m.get(key)
        if isinstance(value, float) and not math.isfinite(value):
            value = None
        row[key] = value
    return row


# ---------------------------------------------------------------------------- plots
def smooth(values: list[float], span: int) -> list[float]:
    """Exponential moving average over about ``span`` points, bias-corrected at the start.

    A trailing window mean would have to average fewer points at the start and then jump where
    the window fills; the debiased EMA (as TensorBoard draws it) follows the curve from step one.
    """
    beta = 1.0 - 2.0 / (span + 1)
    out, ema, weight = [], 0.0, 0.0
    for v in values:
        ema = beta * ema + (1.0 - beta) * v
        weight = beta * weight + (1.0 - beta)
        out.append(ema / weight)
    return out


def smoothing_window(num_points: int) -> int:
    """The seed's 100 steps, shrunk for short runs so the bold line still shows a trend."""
    return max(1, min(SMOOTH_WINDOW, num_points // 10))


def save_figure(fig, path: Path) -> None:
    """Render a matplotlib Figure to ``path`` as PNG, atomically (Agg canvas, no pyplot)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight"))


def plot_loss(runs: list[RunData], path: Path, experiment: str) -> bool:
    """Overlaid training-loss curves; False (nothing written) when no run has a curve."""
    from matplotlib.figure import Figure

    curves = [r for r in runs if r.steps]
    if not curves:
        return False
    fig = Figure(figsize=(11, 6.5))
    ax = fig.add_subplot()
    low, high = math.inf, 0.0
    # One span for every run, so equal smoothing makes the curves comparable.
    span = smoothing_window(max(len(r.losses) for r in curves))
    for run in curves:
        smoothed = smooth(run.losses, span)
        label = run.name if run.finished else f"{run.name} (not finished)"
        ax.plot(run.steps, run.losses, color=run.colour, alpha=0.25, linewidth=0.8)
        ax.plot(run.steps, smoothed, color=run.colour, linewidth=2.2, label=label)
        positive = [v for v in smoothed if v > 0]
        if positive:
            low, high = min(low, min(positive)), max(high, max(positive))
    # Converged losses differ by orders of magnitude (0.3 vs 0.003); a linear axis flattens them.
    log_y = high > 0 and low < math.inf and high / low > 30
    if log_y:
        from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("step", fontsize=12)
    ax.set_ylabel("training loss (cross-entropy" + (", log scale)" if log_y else ")"), fontsize=12)
    what = "" if span == 1 else f" (thin: per step; bold: moving average over ~{span} steps, EMA)"
    ax.set_title(f"{experiment}: training loss{what}", fontsize=13)
    ax.grid(True, linestyle="--", alpha=0.5)
    ax.legend(fontsize=11)
    ax.set_xlim(left=0)
    save_figure(fig, path)
    return True


_BAR_STYLES = [
    ({"alpha": 0.85}, "#bbbbbb"),
    ({"alpha": 0.45, "hatch": "//"}, "#eeeeee"),
    ({"alpha": 0.3, "hatch": ".."}, "#ffffff"),
    ({"alpha": 0.3, "hatch": "xx"}, "#ffffff"),
]


def plot_chart(runs: list[RunData], path: Path, experiment: str, chart: Chart) -> bool:
    """The task's chart: one group of bars per finished run, one bar per series, values on bars.

    A series no run has a value for is left out (except the first); a legend names the series
    when there are several.
    """
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    finished = [r for r in runs if r.finished]
    if not finished:
        return False
    series = [
        s
        for i, s in enumerate(chart.series[: len(_BAR_STYLES)])
        if i == 0 or any(r.metric(s[0]) is not None for r in finished)
    ]
    fig = Figure(figsize=(max(7.0, 1.9 * len(finished) + 3), 6))
    ax = fig.add_subplot()
    width = 0.76 / len(series) if len(series) > 1 else 0.6
    xs = list(range(len(finished)))
    values = {key: [r.metric(key) for r in finished] for key, _ in series}
    top = max([v for vs in values.values() for v in vs if v is not None], default=0.0)
    ymax = 1.15 if chart.percent else (top * 1.15 or 1.0)
    for i, (key, _) in enumerate(series):
        style, _ = _BAR_STYLES[i]
        shift = (i - (len(series) - 1) / 2) * width
        bars = ax.bar(
            [x + shift for x in xs],
            [v or 0.0 for v in values[key]],
            width=width,
            color=[r.colour for r in finished],
            edgecolor="black",
            **style,
        )
        for bar, value in zip(bars, values[key]):
            text = "n/a" if value is None else (f"{value:.2%}" if chart.percent else f"{value:.4g}")
            ax.text(
                bar.get_x() + bar.get_width() / 2,
                bar.get_height() + ymax / 115,
                text,
                ha="center",
                va="bottom",
                fontsize=11,
                fontweight="bold",
            )
    ax.set_xticks(xs)
    ax.set_xticklabels([r.name for r in finished], fontsize=12)
    ax.set_ylim(0, ymax)
    ax.set_ylabel(chart.ylabel, fontsize=12)
    ax.set_title(f"{experiment}: {chart.title}", fontsize=13)
    ax.grid(axis="y", linestyle="--", alpha=0.5)
    ax.set_axisbelow(True)
    if len(series) > 1:
        handles = []
        for (style, face), (_, label) in zip(_BAR_STYLES, series):
            handles.append(Patch(facecolor=face, edgecolor="black", hatch=style.get("hatch"), label=label))
        ax.legend(handles=handles, loc="upper right", fontsize=10)
    save_figure(fig, path)
    return True


# ---------------------------------------------------------------------------- the report
_FACT_HEADERS = [
    "model",
    "parameters",
    "state size / sequence (floats)",
    "tokens/s",
    "wall time",
    "best moving-avg loss @ step",
]
_MARKERS = "¹²³⁴⁵⁶⁷⁸⁹"


def _markdown(
    experiment: str,
    finished: list[RunData],
    unfinished: list[RunData],
    spec: ReportSpec,
    has_loss_png: bool,
    has_chart_png: bool,
    generated: str,
) -> str:
    header = _FACT_HEADERS + [c.header for c in spec.columns]
    lines = [
        f"# {experiment}: report",
        "",
        f"{len(finished)} finished run(s), sorted by {spec.primary_label}. Generated {generated}.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|",
    ]
    footnotes: dict[str, str] = {}  # column key -> marker, in order of first use
    for run in finished:
        model = str(run.summary.model or "")
        label = run.name if not model or model.lower() == run.name.lower() else f"{run.name} ({model})"
        cells = [
            label,
            _int(run.metric("params")),
            _int(run.metric("state_size")),
            _int(run.metric("tokens_per_s")),
            format_duration(run.metric("wall_time_s")),
            _best_loss(run),
        ]
        for column in spec.columns:
            if column.nan_note and run.is_nan(column.key):
                marker = footnotes.setdefault(column.key, _MARKERS[len(footnotes) % len(_MARKERS)])
                cells.append(f"n/a {marker}")
            else:
                cells.append(_number(run.metric(column.key), column.format, column.digits))
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    lines.append("")
    first = (
        "Parameters: trainable weights. State size: floats a model keeps per sequence at inference "
        "(recurrent state, input window, or KV cache for a whole row). tokens/s: training throughput. "
        f"{spec.metrics_noun} are the final test of the tested checkpoint: the best one (by default the "
        "lowest 100-step moving average of the training loss) when the run saved one, else the last "
        'step ("— (last)").'
    )
    notes = [first + (f" {spec.description}" if spec.description else "")] + list(spec.notes)
    notes += [f"{footnotes[c.key]} {c.nan_note}" for c in spec.columns if c.key in footnotes]
    protocols = sorted({r.summary.protocol for r in finished if r.summary.protocol})
    if protocols:
        notes.append(
            "Tested weights, protocol " + "; ".join(f"`{p}`: {PROTOCOLS.get(p, 'unknown')}" for p in protocols) + "."
        )
    for note in notes:
        lines += [note, ""]
    if unfinished:
        names = ", ".join(f"`{r.name}`" for r in unfinished)
        lines += [f"Not finished (no metrics.json): {names}.", ""]
    if has_loss_png:
        lines += ["## Training loss", "", "![loss](loss.png)", ""]
    if has_chart_png:
        lines += [f"## {spec.chart.heading}", "", f"![{spec.chart.name}]({spec.chart.name}.png)", ""]
    lines += ["## Samples", "", spec.samples_note, ""]
    for run in finished:
        tested = f"{run.summary.tested_checkpoint} checkpoint, step {run.summary.tested_step:,}"
        lines += [f"### {run.name}", "", f"Tested weights: {tested}.", ""]
        if run.samples:
            fence = _fence(run.samples)
            lines += [fence, run.samples, fence, ""]
        else:
            lines += ["(no samples.txt)", ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def write_report(root: Path) -> list[Path]:
    """Write report.md, loss.png, the task's chart and report.json into ``root`` (runs/<experiment>).

    Returns the written paths, report.md first, or ``[]`` (nothing written) when no run under
    ``root`` has finished.
    """
    root = Path(root)
    if not root.is_dir():
        return []
    runs = load_runs(root)
    finished = [r for r in runs if r.finished]
    unfinished = [r for r in runs if not r.finished]
    if not finished:
        log.info("report: no finished runs under %s; nothing written.", root)
        return []
    spec = experiment_spec(finished)
    finished.sort(key=lambda r: _sort_key(r, spec))
    experiment = next((r.summary.experiment for r in finished if r.summary.experiment), root.name)
    generated = datetime.now(timezone.utc).replace(microsecond=0).isoformat()

    # Plots list runs in table order, so a colour and a position mean the same run in both.
    loss_png = root / "loss.png"
    has_loss = plot_loss(finished + unfinished, loss_png, experiment)
    if not has_loss:
        log.info("report: no run has a metrics.csv with losses; loss.png not written.")
    chart_png = root / f"{spec.chart.name}.png" if spec.chart is not None else None
    has_chart = chart_png is not None and plot_chart(finished, chart_png, experiment, spec.chart)

    report_md = root / "report.md"
    atomic_write_text(report_md, _markdown(experiment, finished, unfinished, spec, has_loss, has_chart, generated))
    summary = {
        "experiment": experiment,
        "generated_at": generated,
        "primary_metric": spec.primary_metric,
        "primary_mode": spec.primary_mode,
        "runs": [run_summary(r, spec.metrics) for r in finished],
        "unfinished": [r.name for r in unfinished],
    }
    report_json = root / "report.json"
    atomic_write_text(report_json, json.dumps(summary, indent=2, allow_nan=False) + "\n")
    paths = [report_md] + [p for p, ok in ((loss_png, has_loss), (chart_png, has_chart)) if ok] + [report_json]
    log.debug("report: wrote %s", ", ".join(p.name for p in paths))
    return paths
