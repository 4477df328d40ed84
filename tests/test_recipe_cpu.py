"""Opt-in (`make test-slow`, ~10 min): the CPU budget recipe's RWKV-7 run learns the task.

Issue 6's bar: RWKV-7 reaches >= 90% masked accuracy within recipes/reverse_digits_cpu.yaml's
budget (1,300 steps of 32 rows). The full four-model recipe is what `make demo` runs.
"""

import json
import os
import subprocess
from pathlib import Path

import pytest
from tiny import SEQLAB

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_rwkv7_learns_digit_reversal_in_the_cpu_budget(tmp_path):
    result = subprocess.run(
        [
            *SEQLAB,
            "fit",
            "--recipe",
            ROOT / "recipes/reverse_digits_cpu.yaml",
            "--runs",
            "rwkv7",
            "--trainer.root_dir",
            tmp_path,
        ],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONWARNINGS="ignore"),
        timeout=1800,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "reverse_digits_cpu/rwkv7/metrics.json").read_text())
    assert metrics["steps"] == 1300 and metrics["tested_checkpoint"] == "best"
    assert metrics["masked_acc"] >= 0.90, metrics
