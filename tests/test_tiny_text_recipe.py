"""CI runs the byte-level language-modelling recipe end to end, as the README shows it:
`seqlab fit --recipe recipes/tiny_text.yaml --trainer.max_steps 20` (about a minute on 2 cores)."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # several processes or a whole recipe: `make test-slow` (CI runs it)
def test_tiny_text_recipe_trains_both_models_and_reports_perplexity(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "seqlab.cli",
            "fit",
            "--recipe",
            "recipes/tiny_text.yaml",
            "--trainer.max_steps",
            "20",
            "--trainer.root_dir",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONWARNINGS="ignore"),
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    root = tmp_path / "tiny_text"
    values = {}
    for run in ("transformer_modern", "rwkv7"):
        metrics = json.loads((root / run / "metrics.json").read_text())
        assert metrics["steps"] == 20 and metrics["report"]["primary_metric"] == "perplexity"
        assert metrics["perplexity"] == math.exp(metrics["loss"])
        assert metrics["bits_per_byte"] == metrics["loss"] / math.log(2)
        assert metrics["loss"] < math.log(256) - 1.0  # 20 steps already beat uniform bytes by a nat
        values[run] = metrics["perplexity"]
        samples = (root / run / "samples.txt").read_text()
        assert samples.count("generated: ") == 2 and "text : " in samples
    report = (root / "report.md").read_text()
    header = next(line for line in report.splitlines() if line.startswith("| model"))
    assert header.endswith("| loss | perplexity | bits/byte |")
    rows = [line.split("|")[1].strip() for line in report.splitlines() if line.startswith("| ") and "---" not in line][
        1:
    ]
    assert rows == sorted(values, key=values.get)  # lowest perplexity first
    assert "sorted by perplexity" in report and "![perplexity](perplexity.png)" in report
    assert (root / "perplexity.png").is_file() and not (root / "accuracy.png").exists()
    assert "digit" not in report and "masked" not in report
