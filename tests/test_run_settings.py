"""The run settings (SEQLAB_WKV7, SEQLAB_FUSED, SEQLAB_NUM_THREADS, SEQLAB_STRIDE_KERNEL): checked in
one place, recorded in config.yaml and every checkpoint, and a resume under other ones warns."""

import os

import pytest
import yaml
from tiny import RWKV7, tiny_recipe

from seqlab.checkpoint import load_checkpoint
from seqlab.ops.settings import run_settings, setting

RECIPE = tiny_recipe(
    {"rwkv7": RWKV7}, trainer={"max_steps": 4, "val_every": 0, "save_every": 2, "optimizer": {"lr": 3e-3}}
)


@pytest.fixture
def run(run_seqlab, monkeypatch):
    """``seqlab ARGS`` in this process (conftest's ``run_seqlab``) under the given settings:
    ``(exit code, stderr text)``. The settings are read when a command runs, not at import."""

    def run(*args, **env):
        with monkeypatch.context() as m:
            for name, value in env.items():
                m.setenv(name, value)
            code, _, err = run_seqlab(*args)
        return code, "\n".join(err)

    return run


def test_settings_are_normalised_and_checked(monkeypatch):
    monkeypatch.setenv("SEQLAB_FUSED", "OFF")
    monkeypatch.setenv("SEQLAB_WKV7", "Chunked")
    monkeypatch.delenv("SEQLAB_NUM_THREADS", raising=False)
    assert setting("SEQLAB_FUSED") == "paddle" and setting("SEQLAB_WKV7") == "chunked"
    assert run_settings()["SEQLAB_NUM_THREADS"] is None
    monkeypatch.setenv("SEQLAB_NUM_THREADS", "two")
    with pytest.raises(ValueError, match="SEQLAB_NUM_THREADS='two' must be a positive integer"):
        run_settings()


@pytest.mark.parametrize(
    "name, value, needle",
    [
        ("SEQLAB_WKV7", "cudaa", "SEQLAB_WKV7='cudaa' is not a WKV7 back end"),
        ("SEQLAB_FUSED", "fast", "SEQLAB_FUSED='fast' is not understood"),
        ("SEQLAB_NUM_THREADS", "0", "SEQLAB_NUM_THREADS='0' must be a positive integer"),
        ("SEQLAB_STRIDE_KERNEL", "yes", "SEQLAB_STRIDE_KERNEL='yes' must be 0 or 1"),
    ],
)
def test_a_bad_setting_is_one_line_and_exit_2(run, name, value, needle):
    code, stderr = run("models", **{name: value})
    lines = stderr.splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: " + needle), stderr


def test_settings_are_recorded_and_a_changed_one_warns_on_resume(run, tmp_path):
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(RECIPE))
    root = tmp_path / "runs"
    code, stderr = run(
        "fit",
        "--recipe",
        recipe,
        "--trainer.root_dir",
        root,
        "--trainer.max_steps",
        2,
        SEQLAB_NUM_THREADS="1",
        SEQLAB_FUSED="cpp",
    )
    assert code == 0, stderr
    run_dir = root / "tiny/rwkv7"
    recorded = yaml.safe_load((run_dir / "config.yaml").read_text())["settings"]
    assert recorded["SEQLAB_NUM_THREADS"] == "1" and recorded["SEQLAB_FUSED"] == "cpp"
    assert load_checkpoint(run_dir / "checkpoints/last.safetensors")["settings"] == recorded
    # The saved config.yaml is still a recipe (its settings are a record, not an option).
    code, stderr = run(
        "fit",
        "--recipe",
        run_dir / "config.yaml",
        "--ckpt_path",
        "last",
        "--trainer.max_steps",
        3,
        SEQLAB_NUM_THREADS="1",
        SEQLAB_FUSED="cpp",
    )
    assert code == 0, stderr
    assert "other run settings" not in stderr
    code, stderr = run(
        "fit",
        "--recipe",
        recipe,
        "--trainer.root_dir",
        root,
        "--ckpt_path",
        "last",
        SEQLAB_NUM_THREADS="2",
        SEQLAB_FUSED="cpp",
    )
    assert code == 0, stderr
    assert "resuming with other run settings than the checkpoint's (SEQLAB_NUM_THREADS=1->2)" in stderr


def test_the_in_process_command_leaves_the_process_as_it_found_it(run_seqlab, tmp_path, monkeypatch):
    """conftest's ``run_seqlab`` undoes what ``seqlab.cli.main`` changes in the test process: the
    signal handlers it installs, the folders it puts on ``sys.path``, the environment."""
    import signal
    import sys

    monkeypatch.chdir(tmp_path)  # main() puts the working folder on sys.path
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    path, environ = list(sys.path), dict(os.environ)
    code, out, _ = run_seqlab("tasks")
    assert code == 0 and "reverse_digits" in out
    assert {sig: signal.getsignal(sig) for sig in handlers} == handlers
    assert sys.path == path and str(tmp_path) not in sys.path
    assert dict(os.environ) == environ
