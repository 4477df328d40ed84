"""The experiment report, built from hand-written run folders (the report reads files, not models)."""

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from seqlab.report import format_duration, smooth, smoothing_window, write_report
from seqlab.tasks.reverse_digits import ReverseDigits

ROOT = Path(__file__).resolve().parents[1]
BEFORE = Path(__file__).resolve().parent / "data" / "report_before"

CONFIG = """task:
  class_path: seqlab.tasks.reverse_digits.ReverseDigits
  init_args: {digit_max: 60, seq_len: 129, eval_samples: 100, probe_digit_min: 61, probe_digit_max: 80}
"""

# Three finished runs, deliberately not in name order of accuracy: lstm > rwkv7 > transformer.
RUNS = {
    "rwkv7": dict(
        model="rwkv7",
        params=30732,
        state_size=1088,
        tokens_per_s=12345.6,
        wall_time_s=452.2,
        tested_checkpoint="best",
        tested_step=1900,
        best_step=1800,
        best_value=1.12341,
        best_monitor="train/loss",
        masked_acc=0.9123,
        exact_acc=0.41,
        probe_masked_acc=0.5,
        probe_exact_acc=0.02,
    ),
    "transformer": dict(
        model="transformer",
        params=30380,
        state_size=16384,
        tokens_per_s=40039.7,
        wall_time_s=3725.0,
        tested_checkpoint="last",
        tested_step=2000,
        masked_acc=0.25,
        exact_acc=0.0,
        probe_masked_acc=float("nan"),
        probe_exact_acc=float("nan"),
    ),
    "lstm": dict(
        model="lstm",
        params=877452,
        tokens_per_s=999.4,
        wall_time_s=7.26,
        tested_checkpoint="best",
        tested_step=150,
        best_step=150,
        best_value=0.0123,
        best_monitor="train/loss",
        masked_acc=0.999,
        exact_acc=0.98,
        probe_masked_acc=0.75,
        probe_exact_acc=0.1,
    ),
}


def _write_run(root: Path, name: str, fields: dict, steps: int = 300, csv: bool = True, config: str = CONFIG) -> None:
    run = root / name
    run.mkdir(parents=True)
    # What SaveSummary records: the task's declaration of how its metrics are shown.
    spec = ReverseDigits(**yaml.safe_load(config)["task"]["init_args"]).report_spec()
    metrics = {
        "run": name,
        "experiment": "reverse_digits",
        "steps": steps,
        "train_time_s": 1.0,
        "loss": 0.5,
        **fields,
        "report": spec.to_dict(),
    }
    (run / "metrics.json").write_text(json.dumps(metrics, indent=2))  # NaN written as JSON NaN
    (run / "config.yaml").write_text(config)
    (run / "samples.txt").write_text(f"sample 1 of {name}\ninput : 123,\ngold  : 321#\n")
    if csv:
        lines = ["step,loss,lr,grad_norm,tokens_per_s,val_masked_acc,val_exact_acc,val_loss"]
        for step in range(1, steps + 1):
            # Decays towards a floor that is lower for a more accurate run, with some noise.
            floor = 2.0 * (1.0 - fields.get("masked_acc", 0.0))
            noise = 1.0 + 0.2 * (((step * 7919) % 13) / 13 - 0.5)
            loss = (2.5 * math.exp(-step / 60) + floor) * noise
            val = ",0.5,0.1,1.0" if step % 100 == 0 else ",,,"
            lines.append(f"{step},{loss:.6g},0.001,,1000{val}")
        lines.append(f"{steps},,,,,0.6,0.2,0.9")  # a validation-only row: no loss
        (run / "metrics.csv").write_text("\n".join(lines) + "\n")


@pytest.fixture
def experiment(tmp_path):
    root = tmp_path / "reverse_digits"
    for name, fields in RUNS.items():
        _write_run(root, name, fields)
    (root / "mlp").mkdir()  # started, never finished: a csv but no metrics.json
    (root / "mlp" / "metrics.csv").write_text("step,loss\n1,2.4\n2,2.3\n3,2.35\n")
    return root


def _table_rows(md: str) -> list[list[str]]:
    rows = [ln for ln in md.splitlines() if ln.startswith("| ")]
    return [[c.strip() for c in ln.strip("|").split("|")] for ln in rows]


def _check_png(path: Path, min_w: int = 400, min_h: int = 300) -> None:
    import matplotlib.image

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] >= min_h and image.shape[1] >= min_w
    assert image[..., :3].std() > 0.01  # not a blank canvas


def test_report_table_plots_and_json(experiment):
    paths = write_report(experiment)
    assert [p.name for p in paths] == ["report.md", "loss.png", "accuracy.png", "report.json"]
    assert all(p.parent == experiment and p.is_file() for p in paths)
    md = paths[0].read_text()

    assert md.startswith("# reverse_digits")
    header, *rows = _table_rows(md)
    assert header[0] == "model" and "parameters" in header and header[-1].startswith("probe masked acc")
    assert [r[0] for r in rows] == ["lstm", "rwkv7", "transformer"]  # masked accuracy, descending
    lstm, rwkv, transformer = rows
    assert lstm == ["lstm", "877,452", "—", "999", "7.3s", "0.0123 @ 150", "99.90%", "98.00%", "75.00%"]
    assert rwkv == ["rwkv7", "30,732", "1,088", "12,346", "7m32s", "1.1234 @ 1,800", "91.23%", "41.00%", "50.00%"]
    assert transformer == ["transformer", "30,380", "16,384", "40,040", "1h02m", "— (last)", "25.00%", "0.00%", "n/a ¹"]
    assert "61–80 digits" in header[-1]
    footnote = [ln for ln in md.splitlines() if ln.startswith("¹")]
    assert len(footnote) == 1 and "longer rows" in footnote[0] and "position" in footnote[0]
    assert "Not finished (no metrics.json): `mlp`." in md
    assert md.index("![loss](loss.png)") < md.index("![accuracy](accuracy.png)") < md.index("## Samples")
    for name in RUNS:  # each run's samples, verbatim, in a code block
        block = f"### {name}"
        assert block in md
        assert f"```\nsample 1 of {name}\ninput : 123,\ngold  : 321#\n```" in md.split(block, 1)[1]

    report = json.loads(paths[-1].read_text())  # strict JSON: NaN became null
    assert report["experiment"] == "reverse_digits" and report["generated_at"]
    assert report["unfinished"] == ["mlp"]
    assert [r["run"] for r in report["runs"]] == ["lstm", "rwkv7", "transformer"]
    by_run = {r["run"]: r for r in report["runs"]}
    assert by_run["rwkv7"]["params"] == 30732 and by_run["rwkv7"]["best_step"] == 1800
    assert by_run["rwkv7"]["masked_acc"] == pytest.approx(0.9123)
    assert by_run["lstm"]["state_size"] is None
    assert by_run["transformer"]["probe_masked_acc"] is None
    assert by_run["transformer"]["tested_checkpoint"] == "last"

    _check_png(experiment / "loss.png")
    _check_png(experiment / "accuracy.png")


def _same_as_before(path: Path, name: str) -> None:
    """report.md equals what seqlab wrote for these run folders before tasks declared their
    metrics (report.py of commit 70641ee, kept in tests/data/report_before/), bar the timestamp."""
    text = re.sub(r"Generated [0-9T:+-]+\.", "Generated GENERATED.", path.read_text())
    assert text == (BEFORE / f"{name}.md").read_text()


def test_digit_reversal_report_is_unchanged(experiment, tmp_path):
    _same_as_before(write_report(experiment)[0], "three_runs")
    # Runs whose probes differ: the header falls back to "longer numbers", the probe note goes.
    mixed = tmp_path / "mixed"
    for name, fields in RUNS.items():
        config = CONFIG.replace("probe_digit_max: 80", "probe_digit_max: 90") if name == "lstm" else CONFIG
        _write_run(
            mixed,
            name,
            fields,
            config=config.replace("eval_samples: 100", "eval_samples: 50") if name == "lstm" else config,
        )
    _same_as_before(write_report(mixed)[0], "mixed_probes")


def test_single_run_without_csv_or_samples(tmp_path):
    root = tmp_path / "one"
    _write_run(
        root,
        "gru_small",
        dict(model="gru", params=1234, masked_acc=float("nan"), tested_checkpoint="last", tested_step=5),
        steps=5,
        csv=False,
    )
    (root / "gru_small" / "samples.txt").unlink()
    paths = write_report(root)
    assert [p.name for p in paths] == ["report.md", "accuracy.png", "report.json"]  # no curve
    md = paths[0].read_text()
    assert "![loss]" not in md and "(no samples.txt)" in md
    [_, row] = _table_rows(md)
    assert row[:2] == ["gru_small (gru)", "1,234"] and row[6] == "—"  # run name (model)
    _check_png(root / "accuracy.png", min_w=300)
    _same_as_before(paths[0], "one_run")


def test_no_finished_runs_writes_nothing(tmp_path):
    assert write_report(tmp_path) == []
    (tmp_path / "lstm").mkdir()
    (tmp_path / "lstm" / "metrics.csv").write_text("step,loss\n1,2.0\n")
    (tmp_path / "lstm" / "metrics.json").write_text("{not json")  # unreadable = not finished
    assert write_report(tmp_path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lstm"]
    assert write_report(tmp_path / "missing") == []


def test_helpers():
    assert [format_duration(s) for s in (2.44, 42.4, 452.2, 3725)] == ["2.4s", "42s", "7m32s", "1h02m"]
    assert smooth([2.0, 2.0, 2.0], 5) == pytest.approx([2.0, 2.0, 2.0])  # debiased: no start-up dip
    assert smooth([1.0, 3.0, 5.0], 1) == [1.0, 3.0, 5.0]
    ramp = smooth([float(i) for i in range(100)], 9)
    assert ramp[0] == 0.0 and 90 < ramp[-1] < 99  # lags a rising curve, never overshoots it
    assert smoothing_window(40) == 4 and smoothing_window(5000) == 100 and smoothing_window(3) == 1


def _seqlab(*args):
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.run(
        [sys.executable, "-m", "seqlab.cli", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=300,
    )


def test_compare_command(experiment, tmp_path):
    result = _seqlab("compare", experiment)
    assert result.returncode == 0, result.stderr
    printed = result.stdout.split()
    assert printed == [str(experiment / n) for n in ("report.md", "loss.png", "accuracy.png", "report.json")]

    result = _seqlab("compare", "/nonexistent")
    assert result.returncode == 2
    assert result.stdout == "" and len(result.stderr.strip().splitlines()) == 1
    assert "/nonexistent" in result.stderr and "Traceback" not in result.stderr

    empty = tmp_path / "empty"
    empty.mkdir()
    result = _seqlab("compare", empty)
    assert result.returncode == 2 and "no finished runs" in result.stderr


def test_token_file_report_ranks_by_perplexity_and_shows_its_columns(tmp_path):
    from seqlab.tasks.token_file import TokenFile

    spec = TokenFile(path=str(ROOT / "examples/data/dhammapada.bin")).report_spec().to_dict()
    root = tmp_path / "tiny_text"
    for name, loss in (("rwkv7", 1.9), ("transformer_modern", 1.6), ("mlp", 2.4)):
        run = root / name
        run.mkdir(parents=True)
        metrics = {
            "run": name,
            "experiment": "tiny_text",
            "model": name,
            "params": 1000,
            "steps": 300,
            "tested_checkpoint": "last",
            "tested_step": 300,
            "loss": loss,
            "perplexity": math.exp(loss),
            "bits_per_byte": loss / math.log(2),
            "report": spec,
        }
        (run / "metrics.json").write_text(json.dumps(metrics))
        (run / "samples.txt").write_text(f"text : the {name}\npred : tha {name}\n")
    paths = write_report(root)
    assert [p.name for p in paths] == ["report.md", "perplexity.png", "report.json"]
    md = paths[0].read_text()
    header, *rows = _table_rows(md)
    assert header[-3:] == ["loss", "perplexity", "bits/byte"]
    assert [r[0] for r in rows] == ["transformer_modern", "rwkv7", "mlp"]  # perplexity, lowest first
    assert rows[0][-3:] == ["1.6000", "4.95", f"{1.6 / math.log(2):.3f}"]
    assert "sorted by perplexity" in md and "## Perplexity" in md and "held-out tokens of `dhammapada.bin`" in md
    assert "```\ntext : the rwkv7\npred : tha rwkv7\n```" in md
    assert "masked" not in md and "digit" not in md and "probe" not in md
    report = json.loads(paths[-1].read_text())
    assert report["primary_metric"] == "perplexity" and report["primary_mode"] == "min"
    assert list(report["runs"][0])[-3:] == ["loss", "perplexity", "bits_per_byte"]
    _check_png(root / "perplexity.png", min_w=300)


def test_runs_that_declared_nothing_get_a_column_per_metric(tmp_path):
    root = tmp_path / "old"
    for name, loss in (("a", 2.0), ("b", 1.0)):
        (root / name).mkdir(parents=True)
        (root / name / "metrics.json").write_text(
            json.dumps(
                {
                    "run": name,
                    "experiment": "old",
                    "model": "mlp",
                    "params": 10,
                    "steps": 5,
                    "tested_checkpoint": "last",
                    "tested_step": 5,
                    "loss": loss,
                    "acc": 0.5,
                }
            )
        )
    md = write_report(root)[0].read_text()
    header, *rows = _table_rows(md)
    assert header[-2:] == ["acc", "loss"] and [r[0] for r in rows] == ["b (mlp)", "a (mlp)"]
    assert rows[0][-2:] == ["0.5000", "1.0000"] and "sorted by loss" in md


def test_committed_cpu_report_is_reproduced(tmp_path):
    """docs/results/reverse_digits_cpu, rebuilt from its own report.json and samples, comes out the same.

    The run folders are not committed, so they are written back from what the report shows: a
    change to the report's layout or wording that would make the committed one stale fails here.
    """
    committed = ROOT / "docs" / "results" / "reverse_digits_cpu"
    md, summary = (committed / "report.md").read_text(), json.loads((committed / "report.json").read_text())
    config = yaml.safe_load((ROOT / "recipes" / "reverse_digits_cpu.yaml").read_text())["task"]["init_args"]
    spec = ReverseDigits(**config).report_spec().to_dict()
    root = tmp_path / summary["experiment"]
    for row in summary["runs"]:
        run = root / row["run"]
        run.mkdir(parents=True)
        # report.json writes NaN as null; metrics.json keeps it (that is what "n/a ¹" shows).
        metrics = {k: float("nan") if v is None and k in spec["metrics"] else v for k, v in row.items()}
        metrics.update(experiment=summary["experiment"], report=spec, protocol="best")
        (run / "metrics.json").write_text(json.dumps({k: v for k, v in metrics.items() if v is not None}))
        samples = md.split(f"### {row['run']}\n", 1)[1].split("\n```\n")[1]
        (run / "samples.txt").write_text(samples + "\n")
        (run / "metrics.csv").write_text("step,loss\n1,2.4\n2,2.3\n")  # loss.png itself is not compared
    paths = write_report(root)

    def undated(text: str) -> str:
        return re.sub(r"Generated [0-9T:+-]+\.", "Generated GENERATED.", text)

    assert undated(paths[0].read_text()) == undated(md)
    rebuilt = json.loads((root / "report.json").read_text())
    assert {**rebuilt, "generated_at": None} == {**summary, "generated_at": None}
    _check_png(root / "accuracy.png")  # its bytes depend on matplotlib's version, so not compared
