"""Every mistake a user can make on the command line: exit 2, one sentence, nothing written.

In a multi-run recipe every run is built and checked (callbacks set up, one forward pass)
before any run trains, so a mistake in the last run leaves no trace of the first.
"""

import copy
import os
import subprocess
from pathlib import Path

import pytest
import yaml
from tiny import MLP, RWKV7, SEQLAB, tiny_recipe

RECIPE = tiny_recipe(
    {"mlp": MLP, "rwkv7": RWKV7},
    name="bad",
    trainer={
        "max_steps": 10,
        "val_every": 5,
        "optimizer": {"lr": 3e-3},
        "callbacks": [{"class_path": "CosineWarmupLR", "init_args": {"warmup_steps": 2}}],
    },
)


def _recipe(tmp_path: Path, edit=None) -> Path:
    data = copy.deepcopy(RECIPE)
    if edit:
        edit(data)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _newer_checkpoint(tmp_path: Path) -> Path:
    """A real checkpoint whose format version is from the future."""
    from seqlab.checkpoint import FORMAT_VERSION, atomic_save, load_checkpoint

    ok = subprocess.run(
        [
            *SEQLAB,
            "fit",
            "--recipe",
            _recipe(tmp_path),
            "--runs",
            "mlp",
            "--trainer.max_steps",
            "4",
            "--trainer.root_dir",
            tmp_path / "made",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ok.returncode == 0, ok.stderr
    ckpt = load_checkpoint(tmp_path / "made/bad/mlp/checkpoints/last.safetensors")
    ckpt["format_version"] = FORMAT_VERSION + 1
    return atomic_save(ckpt, tmp_path / "future.safetensors")


def _second_run_warmup(data):
    data["runs"]["rwkv7"]["trainer"] = {
        "callbacks": [{"class_path": "CosineWarmupLR", "init_args": {"warmup_steps": 50}}]
    }


CASES = {
    # id: (recipe edit, extra args, expected message (the whole line after "error: "))
    "typo'd option": (
        None,
        ["--trainer.max_step", "5"],
        "recipe '{recipe}', run 'mlp': unknown option --trainer.max_step; run `seqlab fit --help` for the valid options.",
    ),
    "wrong type": (
        None,
        ["--trainer.max_steps", "abc"],
        "recipe '{recipe}', run 'mlp': trainer.max_steps expects int, got 'abc'; fix its value.",
    ),
    "unknown model": (
        lambda d: d["runs"]["rwkv7"].update(model="lstn"),
        [],
        "unknown model 'lstn'. Did you mean 'lstm'? Known models: ",
    ),
    "root_dir cannot be created": (
        None,
        ["--trainer.root_dir", "/proc/seqlab-runs"],
        "trainer.root_dir '/proc/seqlab-runs' cannot be created: '/proc' is not writable",
    ),
    "negative lr": (
        None,
        ["--trainer.optimizer.lr", "-1"],
        "run 'mlp', trainer.optimizer: lr must be > 0, got -1.0; fix trainer.optimizer.lr in the recipe or on the command line.",
    ),
    "warmup >= max_steps in the second run": (
        _second_run_warmup,
        [],
        "run 'rwkv7': CosineWarmupLR: warmup_steps (50) must be smaller than max_steps (10); lower warmup_steps or raise max_steps.",
    ),
    "seq_len 1": (
        None,
        ["--task.init_args.seq_len", "1"],
        "run 'mlp', task: reverse_digits: seq_len=1 cannot hold one example of digit_max=8 digits; set seq_len to at least 18.",
    ),
    "n_embd not a multiple of head_size": (
        None,
        ["--runs", "rwkv7", "--model.init_args.n_embd", "33"],
        "run 'rwkv7', model: RWKV7 rejected its settings: n_embd (33) must be a multiple of head_size (16); fix its init_args.",
    ),
    "batch_size 0": (
        None,
        ["--task.init_args.batch_size", "0"],
        "run 'mlp', task: reverse_digits: batch_size must be at least 1, got 0; fix the task's init_args.",
    ),
    "vocabulary smaller than the task's": (
        None,
        ["--runs", "rwkv7", "--model.init_args.vocab_size", "5"],
        "run 'rwkv7': the model's vocabulary (5) is smaller than the task's (12); set model.init_args.vocab_size to 12, or leave it unset to take the task's.",
    ),
    "unknown key in a recipe": (
        lambda d: d.update(trainr={"max_steps": 3}),
        [],
        "recipe '{recipe}', run 'mlp': unknown key 'trainr' (did you mean 'trainer'?); a run has task, model, trainer and ckpt_path.",
    ),
    "run without a model": (
        lambda d: d["runs"]["rwkv7"].pop("model"),
        [],
        "recipe '{recipe}', run 'rwkv7': run 'rwkv7' needs both a task and a model.",
    ),
    "unknown precision": (
        None,
        ["--trainer.precision", "fp8"],
        "recipe '{recipe}', run 'mlp': trainer.precision expects one of '32-true', 'bf16-mixed', '16-mixed', got 'fp8'; fix its value.",
    ),
    "unknown nonfinite policy": (
        None,
        ["--trainer.nonfinite", "ignore"],
        "recipe '{recipe}', run 'mlp': trainer.nonfinite expects one of 'stop', 'skip', got 'ignore'; fix its value.",
    ),
    "accumulate 0": (
        None,
        ["--trainer.accumulate_grad_batches", "0"],
        "run 'mlp': trainer.accumulate_grad_batches must be at least 1, got 0.",
    ),
    "checkpoint of a newer format": (
        None,
        ["--runs", "mlp", "--ckpt_path", "{future}"],
        "checkpoint '{future}' has format ",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_sentence_exit_2_and_writes_nothing(tmp_path, case):
    edit, args, expected = CASES[case]
    recipe = _recipe(tmp_path, edit)
    future = _newer_checkpoint(tmp_path) if "{future}" in " ".join(args) else None
    args = [a.replace("{future}", str(future)) for a in args]
    root = tmp_path / "runs"
    if "--trainer.root_dir" not in args:
        args += ["--trainer.root_dir", str(root)]
    before = sorted(p for p in tmp_path.rglob("*"))
    result = subprocess.run(
        [*SEQLAB, "fit", "--recipe", recipe, *args],
        capture_output=True,
        text=True,
        timeout=180,
        env=dict(os.environ, PYTHONWARNINGS="ignore"),
    )
    assert result.returncode == 2, result.stderr
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    message = expected.format(recipe=recipe, future=future)
    assert lines[0].startswith("error: " + message), lines[0]
    assert sorted(p for p in tmp_path.rglob("*")) == before  # no file written, no folder made
    assert not root.exists()
