"""What the report shows: the experiment's declaration (:class:`seqlab.summary.ReportSpec`) and the ranking.

The report knows no task. What to rank by, which metric columns to show and in what words, the
chart and the notes come from the declaration that each run recorded in its metrics.json.
"""

from __future__ import annotations

from dataclasses import replace

from seqlab.report.runs import RunData
from seqlab.summary import Column, ReportSpec


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


def sort_key(run: RunData, spec: ReportSpec) -> tuple:
    """The table's order: best primary metric first, runs without it last, ties by name."""
    value = run.metric(spec.primary_metric)
    better_first = -value if value is not None and spec.primary_mode == "max" else value
    return (value is None, better_first or 0.0, run.name)
