"""The experiment report: one table, two plots and the tested models' samples.

``write_report(runs/<experiment>)`` reads what finished runs leave in their folders
(``metrics.json``, ``metrics.csv``, ``samples.txt``, ``config.yaml``) and writes, into the same
folder:

- ``report.md``: a table of every run (sorted by masked accuracy), the two plots, and each run's
  sample predictions;
- ``loss.png``: training loss of every run, raw (thin) and smoothed (bold), one colour per run;
- ``accuracy.png``: masked and exact-match test accuracy per run, the values on the bars;
- ``report.json``: the table's numbers, for scripts.

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
import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

from seqlab.summary import PROTOCOLS, RunSummary

log = logging.getLogger(__name__)

# The seed's colours for its three models; other runs take the next unused tab10 colour.
SEED_COLOURS = {"rwkv": "#1f77b4", "transformer": "#ff7f0e", "lstm": "#d62728"}
TAB10 = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
         "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]
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
    config: Optional[dict[str, Any]] = None
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


def _read_config(path: Path) -> Optional[dict[str, Any]]:
    try:
        import yaml

        data = yaml.safe_load(path.read_text())
    except Exception:  # noqa: BLE001  (a config we cannot read only loses the probe's description)
        return None
    return data if isinstance(data, dict) else None


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
        if (path / "config.yaml").is_file():
            run.config = _read_config(path / "config.yaml")
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


def _sort_key(run: RunData) -> tuple:
    acc = run.metric("masked_acc")
    return (acc is None, -(acc or 0.0), run.name)


# ---------------------------------------------------------------------------- formatting
def format_duration(seconds: Optional[float]) -> str:
    """7.3 -> '7.3s', 452 -> '7m32s', 3725 -> '1h02m'."""
    if seconds is None:
        return "—"
    if seconds < 10:
        return f"{seconds:.1f}s"
    total = int(round(seconds))
    if total < 60:
        return f"{total}s"
    if total < 3600:
        return f"{total // 60}m{total % 60:02d}s"
    return f"{total // 3600}h{total % 3600 // 60:02d}m"


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


def _probe_range(runs: list[RunData]) -> Optional[str]:
    """'61–80 digits' when every run's config agrees on the probe's numbers."""
    ranges = set()
    for run in runs:
        args = ((run.config or {}).get("task") or {}).get("init_args") or {}
        if "probe_digit_min" not in args or "probe_digit_max" not in args:
            return None
        ranges.add((args["probe_digit_min"], args["probe_digit_max"], args.get("digit_max")))
    if len(ranges) != 1:
        return None
    low, high, train_max = ranges.pop()
    probe = f"{low}–{high} digits" if low != high else f"{low} digits"
    return probe + (f"; training: up to {train_max}" if train_max is not None else "")


def _eval_rows(runs: list[RunData]) -> Optional[int]:
    values = {(((r.config or {}).get("task") or {}).get("init_args") or {}).get("eval_samples") for r in runs}
    values.discard(None)
    return int(values.pop()) if len(values) == 1 else None


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _fence(text: str) -> str:
    """A code fence longer than any backtick run inside ``text``."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    return "`" * max(3, longest + 1)


def run_summary(run: RunData) -> dict[str, Any]:
    """One run's row of report.json: the table's numbers, unformatted (NaN becomes null)."""
    m = run.summary.to_dict() if run.summary is not None else {}
    keys = ["model", "params", "state_size", "steps", "tokens_per_s", "train_time_s", "wall_time_s",
            "tested_checkpoint", "tested_step", "best_step", "best_value", "best_monitor",
            "masked_acc", "exact_acc", "loss", "probe_masked_acc", "probe_exact_acc"]
    row: dict[str, Any] = {"run": run.name}
    for key in keys:
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


def _save(fig, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    tmp = path.with_name(path.name + ".tmp")
    fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    os.replace(tmp, path)


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
    _save(fig, path)
    return True


def plot_accuracy(runs: list[RunData], path: Path, experiment: str, eval_rows: Optional[int]) -> bool:
    """Masked (solid) and exact-match (hatched) test accuracy per finished run, values on bars."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    finished = [r for r in runs if r.finished]
    if not finished:
        return False
    has_exact = any(r.metric("exact_acc") is not None for r in finished)
    fig = Figure(figsize=(max(7.0, 1.9 * len(finished) + 3), 6))
    ax = fig.add_subplot()
    width = 0.38 if has_exact else 0.6
    offset = width / 2 if has_exact else 0.0
    xs = list(range(len(finished)))
    groups = [("masked_acc", -offset, {"alpha": 0.85})]
    if has_exact:
        groups.append(("exact_acc", offset, {"alpha": 0.45, "hatch": "//"}))
    for key, shift, style in groups:
        values = [r.metric(key) for r in finished]
        bars = ax.bar([x + shift for x in xs], [v or 0.0 for v in values], width=width,
                      color=[r.colour for r in finished], edgecolor="black", **style)
        for bar, value in zip(bars, values):
            ax.text(bar.get_x() + bar.get_width() / 2, bar.get_height() + 0.01,
                    "n/a" if value is None else f"{value:.2%}",
                    ha="center", va="bottom", fontsize=11, fontweight="bold")
    ax.set_xticks(xs)
    ax.set_xticklabels([r.name for r in finished], fontsize=12)
    ax.set_ylim(0, 1.15)
    ax.set_ylabel("accuracy", fontsize=12)
    rows = f"{eval_rows} held-out rows" if eval_rows else "held-out rows"
    ax.set_title(f"{experiment}: test accuracy ({rows})", fontsize=13)
    ax.grid(axis="y", linestyle="--", alpha=0.5)
    ax.set_axisbelow(True)
    if has_exact:
        ax.legend(handles=[Patch(facecolor="#bbbbbb", edgecolor="black", label="masked (per digit)"),
                           Patch(facecolor="#eeeeee", edgecolor="black", hatch="//",
                                 label="exact match (whole number)")],
                  loc="upper right", fontsize=10)
    _save(fig, path)
    return True


# ---------------------------------------------------------------------------- the report
def _markdown(experiment: str, finished: list[RunData], unfinished: list[RunData],
              probe: Optional[str], has_loss_png: bool, has_acc_png: bool, generated: str) -> str:
    probe_header = f"probe masked acc ({probe.split(';')[0]})" if probe else "probe masked acc (longer numbers)"
    header = ["model", "parameters", "state size / sequence (floats)", "tokens/s", "wall time",
              "best moving-avg loss @ step", "masked acc", "exact-match acc", probe_header]
    lines = [f"# {experiment}: report", "",
             f"{len(finished)} finished run(s), sorted by masked accuracy. Generated {generated}.", "",
             "| " + " | ".join(header) + " |",
             "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    any_nan_probe = False
    for run in finished:
        if run.is_nan("probe_masked_acc"):
            probe_cell, any_nan_probe = "n/a ¹", True
        else:
            probe_cell = _pct(run.metric("probe_masked_acc"))
        model = str(run.summary.model or "")
        label = run.name if not model or model.lower() == run.name.lower() else f"{run.name} ({model})"
        cells = [label, _int(run.metric("params")), _int(run.metric("state_size")),
                 _int(run.metric("tokens_per_s")), format_duration(run.metric("wall_time_s")),
                 _best_loss(run), _pct(run.metric("masked_acc")), _pct(run.metric("exact_acc")),
                 probe_cell]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    lines.append("")
    notes = [
        "Parameters: trainable weights. State size: floats a model keeps per sequence at inference "
        "(recurrent state, input window, or KV cache for a whole row). tokens/s: training throughput. "
        "Accuracies are the final test of the tested checkpoint: the best one (by default the lowest "
        "100-step moving average of the training loss) when the run saved one, else the last step "
        "(\"— (last)\"). "
        "Masked accuracy scores the reversed digits and the closing `#`; exact match counts whole "
        "numbers reversed without a mistake."
    ]
    protocols = sorted({r.summary.protocol for r in finished if r.summary.protocol})
    if protocols:
        notes.append("Tested weights, protocol " + "; ".join(
            f"`{p}`: {PROTOCOLS.get(p, 'unknown')}" for p in protocols) + ".")
    if probe:
        notes.append(f"The probe uses numbers longer than any in training ({probe}).")
    if any_nan_probe:
        notes.append("¹ n/a: the model could not read the probe's longer rows, so the probe was "
                     "skipped. A model with a fixed context (learned position embeddings sized to "
                     "the training rows) has no positions for them.")
    for note in notes:
        lines += [note, ""]
    if unfinished:
        names = ", ".join(f"`{r.name}`" for r in unfinished)
        lines += [f"Not finished (no metrics.json): {names}.", ""]
    if has_loss_png:
        lines += ["## Training loss", "", "![loss](loss.png)", ""]
    if has_acc_png:
        lines += ["## Accuracy", "", "![accuracy](accuracy.png)", ""]
    lines += ["## Samples", "",
              "Predictions of each tested model on held-out numbers (`^` marks a wrong token).", ""]
    for run in finished:
        tested = f"{run.summary.tested_checkpoint} checkpoint, step {run.summary.tested_step:,}"
        lines += [f"### {run.name}", "", f"Tested weights: {tested}.", ""]
        if run.samples:
            fence = _fence(run.samples)
            lines += [fence, run.samples, fence, ""]
        else:
            lines += ["(no samples.txt)", ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_report(root: Path) -> list[Path]:
    """Write report.md, loss.png, accuracy.png and report.json into ``root`` (runs/<experiment>).

    Returns the written paths, report.md first, or ``[]`` (nothing written) when no run under
    ``root`` has finished.
    """
    root = Path(root)
    if not root.is_dir():
        return []
    runs = load_runs(root)
    finished = sorted((r for r in runs if r.finished), key=_sort_key)
    unfinished = [r for r in runs if not r.finished]
    if not finished:
        log.info("report: no finished runs under %s; nothing written.", root)
        return []
    experiment = next((r.summary.experiment for r in finished if r.summary.experiment), root.name)
    generated = datetime.now(timezone.utc).replace(microsecond=0).isoformat()

    # Plots list runs in table order, so a colour and a position mean the same run in both.
    loss_png, acc_png = root / "loss.png", root / "accuracy.png"
    has_loss = plot_loss(finished + unfinished, loss_png, experiment)
    if not has_loss:
        log.info("report: no run has a metrics.csv with losses; loss.png not written.")
    has_acc = plot_accuracy(finished, acc_png, experiment, _eval_rows(finished))
    probe = _probe_range(finished)

    report_md = root / "report.md"
    _write_text(report_md, _markdown(experiment, finished, unfinished, probe, has_loss, has_acc, generated))
    summary = {
        "experiment": experiment,
        "generated_at": generated,
        "runs": [run_summary(r) for r in finished],
        "unfinished": [r.name for r in unfinished],
    }
    report_json = root / "report.json"
    _write_text(report_json, json.dumps(summary, indent=2, allow_nan=False) + "\n")
    paths = [report_md] + [p for p, ok in ((loss_png, has_loss), (acc_png, has_acc)) if ok] + [report_json]
    log.debug("report: wrote %s", ", ".join(p.name for p in paths))
    return paths
