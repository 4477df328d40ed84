"""Reading run folders: what a finished (or unfinished) run left behind, and its colour in the plots."""

from __future__ import annotations

import csv
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from seqlab.summary import RunSummary

log = logging.getLogger(__name__)

# The seed's colours for its three models; other runs take the next unused tab10 colour.
SEED_COLOURS = {"rwkv": "#1f77b4", "transformer": "#ff7f0e", "lstm": "#d62728"}
TAB10 = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]

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
        """Whether the run left a readable metrics.json."""
        return self.summary is not None

    def metric(self, key: str) -> Optional[float]:
        """A numeric metric or fact, or None when absent, not a number, or NaN."""
        return self.summary.metric(key) if self.summary is not None else None

    def is_nan(self, key: str) -> bool:
        """Whether the run recorded ``key`` as NaN (a metric it could not compute)."""
        return self.summary is not None and self.summary.is_nan(key)


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


# The facts of a run that report.json carries ahead of its metrics, in this order.
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
