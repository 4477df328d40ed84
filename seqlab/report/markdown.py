"""report.md: the table of runs, its notes and footnotes, the plots' sections and each run's samples."""

from __future__ import annotations

import re
from typing import Optional

from seqlab import text
from seqlab.report.runs import RunData
from seqlab.summary import KNOWN_PROTOCOLS, ReportSpec

_FACT_HEADERS = [
    "model",
    "parameters",
    "state size / sequence (floats)",
    "tokens/s",
    "wall time",
    "best moving-avg loss @ step",
]
_MARKERS = "¹²³⁴⁵⁶⁷⁸⁹"


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


def _cell(value: str) -> str:
    return value.replace("|", "\\|")


def _fence(block: str) -> str:
    """A code fence longer than any backtick run inside ``block``."""
    longest = max((len(m) for m in re.findall(r"`+", block)), default=0)
    return "`" * max(3, longest + 1)


def render_markdown(
    experiment: str,
    finished: list[RunData],
    unfinished: list[RunData],
    spec: ReportSpec,
    has_loss_png: bool,
    has_chart_png: bool,
    generated: str,
) -> str:
    """The text of report.md for ``finished`` runs (already in table order) and the ``unfinished`` ones."""
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
        notes.append("Tested weights, protocol " + "; ".join(f"`{p}`: {_protocol_text(p)}" for p in protocols) + ".")
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


def _protocol_text(name: str) -> str:
    """What a protocol means; ``uniform`` (the same optimizer rules for every run) is seqlab.optim's."""
    return KNOWN_PROTOCOLS.get(name, "unknown")
