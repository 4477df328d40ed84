"""The report's plots: overlaid loss curves and the task's bar chart, as PNGs.

Plots are drawn on ``matplotlib.figure.Figure`` objects rendered by the Agg canvas, not through
``pyplot``: no backend is selected and no global matplotlib state is touched, so importing the
report in a notebook changes nothing there. matplotlib itself is imported only when a plot is drawn.
"""

from __future__ import annotations

import math
from pathlib import Path

from seqlab.io import atomic_write
from seqlab.report.runs import RunData
from seqlab.summary import Chart

SMOOTH_WINDOW = 100  # the seed's 100-step moving average (also its best-checkpoint rule)


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
