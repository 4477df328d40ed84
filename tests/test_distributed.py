"""Real two-process data-parallel training through `paddle.distributed.launch` (gloo on CPU)."""

import os
import subprocess
import sys
import textwrap

import numpy as np

from seqlab.checkpoint import load_checkpoint

SCRIPT = textwrap.dedent("""
    import sys
    from seqlab import Trainer
    from seqlab.callbacks import MovingAverageCheckpoint
    from seqlab.models.mlp import MLP
    from seqlab.optim import AdamW
    from seqlab.tasks.reverse_digits import ReverseDigits
    from seqlab.trainer import seed_everything

    root, run_name = sys.argv[1], sys.argv[2]
    seed_everything(0)
    model = MLP(embed_dim=8, window=4, hidden_dim=16)
    task = ReverseDigits(digit_max=8, seq_len=33, batch_size=8, eval_samples=8,
                         probe_digit_min=9, probe_digit_max=10, probe_samples=4)
    # All default callbacks, and a moving-average window that fills: best checkpoints are saved
    # at steps where every rank must take part.
    Trainer(max_steps=5, val_every=0, save_every=5, seed=3, root_dir=root, experiment="dist",
            run_name=run_name, optimizer=AdamW(lr=1e-2),
            callbacks=[MovingAverageCheckpoint(window=2)]).fit(task, model)
""")


def test_two_processes_match_one(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    single = subprocess.run([sys.executable, script, tmp_path, "single"], env=env,
                            capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stderr[-2000:]
    launch = subprocess.run(
        [sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", "2",
         "--log_dir", str(tmp_path / "logs"), str(script), str(tmp_path), "ddp"],
        env=env, capture_output=True, text=True, timeout=300)
    logs = "".join(p.read_text() for p in (tmp_path / "logs").glob("workerlog.*"))
    assert launch.returncode == 0, (launch.stdout + launch.stderr + logs)[-3000:]
    a = load_checkpoint(tmp_path / "dist/single/checkpoints/last.safetensors")["model"]
    b = load_checkpoint(tmp_path / "dist/ddp/checkpoints/last.safetensors")["model"]
    assert set(a) == set(b)
    moved = False
    for key in a:
        # Each rank trains on half the rows and gradients are averaged: the same update as one
        # process on the whole batch, up to float rounding of the all-reduce.
        np.testing.assert_allclose(a[key], b[key], rtol=1e-4, atol=1e-6, err_msg=key)
        moved = moved or not np.allclose(a[key], 0)
    assert moved
    best = load_checkpoint(tmp_path / "dist/ddp/checkpoints/best.safetensors")
    assert best["step"] == load_checkpoint(tmp_path / "dist/single/checkpoints/best.safetensors")["step"]
