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

The package is split by job: :mod:`~seqlab.report.runs` reads the run folders,
:mod:`~seqlab.report.spec` decides what to show and in which order, :mod:`~seqlab.report.markdown`
writes report.md's text and :mod:`~seqlab.report.plots` draws the PNGs (Agg canvas, no ``pyplot``,
so importing the report in a notebook changes nothing there). This module ties them together.
:mod:`~seqlab.report.stats` holds the small-sample statistics the sweep report uses (Student t
intervals, Welch's test; pure Python, no SciPy).
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from pathlib import Path

from seqlab.io import atomic_write_text
from seqlab.report.markdown import format_duration, render_markdown
from seqlab.report.plots import SMOOTH_WINDOW, plot_chart, plot_loss, save_figure, smooth, smoothing_window
from seqlab.report.runs import SEED_COLOURS, TAB10, RunData, load_runs, run_summary
from seqlab.report.spec import experiment_spec, sort_key

__all__ = [
    "SEED_COLOURS",
    "SMOOTH_WINDOW",
    "TAB10",
    "RunData",
    "experiment_spec",
    "format_duration",
    "load_runs",
    "plot_chart",
    "plot_loss",
    "render_markdown",
    "run_summary",
    "save_figure",
    "smooth",
    "smoothing_window",
    "write_report",
]

log = logging.getLogger(__name__)


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
    finished.sort(key=lambda r: sort_key(r, spec))
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
    atomic_write_text(
        report_md, render_markdown(experiment, finished, unfinished, spec, has_loss, has_chart, generated)
    )
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
