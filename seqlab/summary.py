"""The schema of ``metrics.json``: what a finished run reports, written by one callback, read by the report.

One dataclass, :class:`RunSummary`, is both the writer's and the reader's definition of the
file, so the two cannot drift apart. On disk the test metrics sit beside the run's facts at the
top level (``{"run": "rwkv7", "params": 30732, "masked_acc": 0.91, ...}``), so that
``jq .masked_acc`` and a pandas ``json_normalize`` read it without knowing the schema.

The file also records how the task asks its results to be shown (:class:`ReportSpec`, under
``report``): its primary metric and its direction, the table's columns and notes, the chart. The
report reads that, so it shows any task's metrics without importing the task.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, Optional

from seqlab.optim import UNIFORM_DESCRIPTION


@dataclass
class Column:
    """One metric column of the report's table.

    Attributes:
        key: the test metric's name in metrics.json (``masked_acc``).
        header: the column's header, as this run's task words it.
        format: ``percent`` (0.9123 -> 91.23%), ``float`` (``digits`` decimals) or ``int``.
        digits: decimals of a ``float`` cell.
        fallback_header: the header when the runs of one report word theirs differently
            (e.g. probes of different lengths); default ``header``.
        nan_note: a footnote for NaN values (shown as ``n/a ¹``); without one NaN shows as ``—``.
    """

    key: str
    header: str
    format: Literal["percent", "float", "int"] = "float"
    digits: int = 4
    fallback_header: Optional[str] = None
    nan_note: Optional[str] = None


@dataclass
class Chart:
    """The report's bar chart of test metrics, one group of bars per run.

    Attributes:
        name: the image's file stem (``accuracy`` -> ``accuracy.png``); not ``loss``, which is
            the training-loss plot.
        heading: the report section's heading (``Accuracy``).
        title: the title after the experiment's name, as this run's task words it.
        ylabel: the y axis's label.
        series: ``[key, legend label]`` per bar of a group (the first solid, the next hatched).
        percent: values are fractions shown as percentages on a 0..1 axis.
        fallback_title: the title when the runs word theirs differently.
    """

    name: str
    heading: str
    title: str
    ylabel: str
    series: list[list[str]]
    percent: bool = False
    fallback_title: Optional[str] = None


@dataclass
class ReportSpec:
    """How a task's results are shown: declared by the task, recorded in metrics.json.

    Attributes:
        primary_metric: the metric runs are ranked by (``masked_acc``, ``perplexity``).
        primary_mode: ``max`` when higher is better, ``min`` when lower is.
        primary_label: how the sentence "sorted by ..." names it.
        metrics: every test metric's name, in the order report.json lists them.
        columns: the table's metric columns, after the run's facts.
        description: what the metrics measure; ends the table's first note.
        metrics_noun: how that note names the test results ("Accuracies are the final test...").
        notes: more paragraphs under the table; one shows only if every run states it alike.
        samples_note: the sentence that opens the samples section.
        chart: the bar chart, if any.
    """

    primary_metric: str
    primary_mode: Literal["min", "max"]
    primary_label: str
    metrics: list[str]
    columns: list[Column]
    description: str = ""
    metrics_noun: str = "Test metrics"
    notes: list[str] = field(default_factory=list)
    samples_note: str = "Predictions of each tested model on held-out data."
    chart: Optional[Chart] = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReportSpec:
        """Inverse of :meth:`to_dict`; ``TypeError`` on a malformed entry.

        Keys this seqlab does not know (written by a newer one) are left out.
        """
        data = _known(cls, data)
        data["columns"] = [Column(**_known(Column, c)) for c in data.get("columns") or []]
        if data.get("chart") is not None:
            data["chart"] = Chart(**_known(Chart, data["chart"]))
        return cls(**data)


def _known(cls, data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise TypeError(f"{cls.__name__} entry is not a mapping")
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in data.items() if k in names}


#: The protocols a recipe may choose (``protocol:`` or ``--protocol``): which weights each run's
#: final test uses. ``best`` is the Trainer's default; a recipe declares what any other means for
#: its runs under ``protocols:`` (see :mod:`seqlab.recipe`).
PROTOCOLS = {
    "best": "every run is tested on its best checkpoint (by default the lowest 100-step moving "
    "average of the training loss), else on its last",
    "seed": "as in the seed: each run is tested on the weights the recipe's `protocols: seed` names for it "
    "(in recipes/reverse_digits.yaml the Transformer's best checkpoint, every other model's final weights)",
}
#: Every protocol a recipe may choose: the two above, which say which weights are tested, and
#: ``uniform``, which also gives every run the same optimizer rules (:func:`seqlab.recipe.uniform_rules`).
KNOWN_PROTOCOLS = {**PROTOCOLS, "uniform": UNIFORM_DESCRIPTION}


@dataclass
class RunSummary:
    """One finished run: its facts, and the test metrics of the checkpoint it was tested on.

    Attributes:
        run: the run's name (its folder under the experiment).
        experiment: the experiment (recipe) name.
        model: the model's registered name (or class name).
        params: trainable parameters.
        steps: optimizer steps completed.
        tokens_per_s: training tokens over time spent in training steps (validation excluded).
        train_time_s: time spent in training steps, over every session of a resumed run.
        wall_time_s: wall time of the run, over every session.
        tested_checkpoint: ``best`` or ``last``: the weights ``test`` was measured on.
        tested_step: the step those weights are from.
        precision: the precision that actually ran (``32-true`` on CPU whatever was asked).
        precision_requested: the ``precision`` setting, when it differs from what ran.
        skipped_steps: optimizer steps dropped for a non-finite loss or gradient.
        protocol: the recipe's rule for which weights the final test uses (``best``, ``seed``).
        state_size: floats of inference state per sequence (``Model.state_size``), if reported.
        best_step, best_value, best_monitor: the best checkpoint's rule and result, if tested.
        machine: where the run trained (:func:`seqlab.machine.describe`: CPU model, cores): the
            same run gives other last bits on another CPU, and its wall time is this machine's.
        val: the last validation's metrics, by bare name: what sweeps select on (never the test).
        report: how the task asks its metrics to be shown (:class:`ReportSpec`), if it says.
        test: the test metrics, by bare name (``masked_acc``, ``loss``, ...).
    """

    run: str
    experiment: str
    model: str
    params: int
    steps: int
    tested_checkpoint: str
    tested_step: int
    tokens_per_s: Optional[float] = None
    train_time_s: Optional[float] = None
    wall_time_s: Optional[float] = None
    precision: str = "32-true"
    precision_requested: Optional[str] = None
    skipped_steps: int = 0
    protocol: Optional[str] = None
    state_size: Optional[int] = None
    best_step: Optional[int] = None
    best_value: Optional[float] = None
    best_monitor: Optional[str] = None
    machine: Optional[str] = None
    val: dict[str, float] = field(default_factory=dict)
    report: Optional[ReportSpec] = None
    test: dict[str, float] = field(default_factory=dict)

    FILENAME = "metrics.json"

    # ------------------------------------------------------------------ reading
    def metric(self, key: str) -> Optional[float]:
        """A numeric value (test metric or fact) by name; None when absent or NaN."""
        value = self.test.get(key, getattr(self, key, None) if key in _FACT_NAMES else None)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        return None if math.isnan(value) else float(value)

    def is_nan(self, key: str) -> bool:
        value = self.test.get(key)
        return isinstance(value, float) and math.isnan(value)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunSummary:
        """Inverse of :meth:`to_dict`: known keys are facts, every other key a test metric.

        Raises ``ValueError`` when a required fact is missing (a file of another program).
        """
        facts = {k: data[k] for k in _FACT_NAMES if k in data and k != "test"}
        if not isinstance(facts.get("val", {}), dict):
            raise ValueError("'val' is not an object")
        missing = [f.name for f in fields(cls) if f.name not in facts and _required(f)]
        if missing:
            raise ValueError(f"missing {', '.join(missing)}")
        test = {k: v for k, v in data.items() if k not in _FACT_NAMES}
        if isinstance(facts.get("report"), dict):
            facts["report"] = ReportSpec.from_dict(facts["report"])
        elif "report" in facts:
            raise ValueError("'report' is not a mapping")
        return cls(**facts, test=test)

    @classmethod
    def read(cls, path: str | Path) -> RunSummary:
        """Read a ``metrics.json``; ``ValueError``/``OSError`` if it is missing or malformed."""
        data = json.loads(Path(path).read_text())  # Python's json reads the NaN the file may hold
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        return cls.from_dict(data)

    # ------------------------------------------------------------------ writing
    def to_dict(self) -> dict[str, Any]:
        """Facts then test metrics, flat; ``None`` facts are left out."""
        data = {k: v for k, v in asdict(self).items() if k != "test" and v is not None and v != {}}
        clash = sorted(set(self.test) & _FACT_NAMES)
        if clash:  # a task metric named like a fact would be read back as the fact
            raise ValueError(f"test metric name(s) {clash} collide with metrics.json's facts")
        data.update(self.test)
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"


_FACT_NAMES = frozenset(f.name for f in fields(RunSummary))


def _required(f) -> bool:
    from dataclasses import MISSING

    return f.default is MISSING and f.default_factory is MISSING
