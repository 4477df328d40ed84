"""Checkpoints cannot run code: the safetensors format, crafted files, the old pickle format.

Crafted files go through the `seqlab` command as a user runs it (a subprocess): each must exit 2
with one line, no traceback, and leave every file as it was. The format itself (round trip, RNG
bit-exactness, atomic writes, conversion of the old format) is tested in-process.
"""

import hashlib
import json
import math
import os
import pickle
import random
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import safetensors
import safetensors.numpy
import yaml
from tiny import SEQLAB, tiny_recipe

import seqlab.io
from seqlab import Callback
from seqlab._paddle import import_paddle
from seqlab.checkpoint import (
    FORMAT_VERSION,
    METADATA_KEY,
    atomic_save,
    capture_rng_state,
    check_compatible,
    convert_legacy_checkpoint,
    load_checkpoint,
    restore_rng_state,
)
from seqlab.errors import SeqlabError
from seqlab.io import atomic_write_bytes
from seqlab.models.mlp import MLP
from seqlab.models.transformer import Transformer
from seqlab.optim import AdamW
from seqlab.rng import paddle_state_from_plain, paddle_state_to_plain
from seqlab.tasks.reverse_digits import ReverseDigits
from seqlab.trainer import Trainer, seed_everything

paddle = import_paddle()


RECIPE = tiny_recipe()


def seqlab_cli(*args, cwd=None):
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.run([*SEQLAB, *map(str, args)], capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


def assert_user_error(result, *needles):
    assert result.returncode == 2, result.stderr
    lines = [ln for ln in result.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, result.stderr  # one sentence, no traceback
    assert lines[0].startswith("error: ") and "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def snapshot(folder: Path) -> dict[str, str]:
    """Every file and folder under ``folder`` with a hash of its content."""
    return {
        str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir")
        for p in sorted(folder.rglob("*"))
    }


class CreatesMarker:
    """Unpickling this opens (creates) a marker file: the harmless stand-in for any code."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished 6-step run of the tiny recipe: (recipe, root_dir, its last checkpoint)."""
    base = tmp_path_factory.mktemp("trained")
    recipe = base / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(RECIPE))
    result = seqlab_cli("fit", "--recipe", recipe, "--trainer.root_dir", base / "runs", "--no_report")
    assert result.returncode == 0, result.stderr
    return recipe, base / "runs", base / "runs/tiny/mlp/checkpoints/last.safetensors"


@pytest.fixture
def workspace(trained, tmp_path):
    """A copy of the trained run in ``tmp_path``: (recipe, root_dir, last checkpoint)."""
    recipe, root, last = trained
    shutil.copy(recipe, tmp_path / "tiny.yaml")
    shutil.copytree(root, tmp_path / "runs")
    return tmp_path / "tiny.yaml", tmp_path / "runs", tmp_path / "runs/tiny/mlp/checkpoints/last.safetensors"


def rewrite(ckpt_path: Path, dst: Path, change) -> Path:
    """A copy of a real checkpoint with ``change(ckpt_dict)`` applied, written by seqlab's writer."""
    ckpt = load_checkpoint(ckpt_path)
    change(ckpt)
    atomic_save(ckpt, dst)
    return dst


def header_length_lies(path: Path, dst: Path) -> Path:
    data = bytearray(path.read_bytes())
    data[:8] = struct.pack("<Q", len(data) + 100)  # more header bytes than the whole file has
    dst.write_bytes(bytes(data))
    return dst


def header_not_json(path: Path, dst: Path) -> Path:
    header = b"{this is not json}"
    dst.write_bytes(struct.pack("<Q", len(header)) + header)
    return dst


def wrong_version(path, dst):
    return rewrite(path, dst, lambda c: c.update(format_version=FORMAT_VERSION + 1))


def old_version(path, dst):
    return rewrite(path, dst, lambda c: c.update(format_version=1))


def missing_rng(path, dst):
    return rewrite(path, dst, lambda c: c.pop("rng"))


def wrong_weight_shape(path, dst):
    return rewrite(path, dst, lambda c: c["model"].update({"hidden.weight": np.zeros((5, 5), np.float32)}))


def wrong_moment_shape(path, dst):
    return rewrite(
        path,
        dst,
        lambda c: c["optimizer"]["accumulators"]["hidden.weight"].update({"_moment1_0": np.zeros((3,), np.float32)}),
    )


@pytest.mark.parametrize(
    "craft, needles",
    [
        (header_length_lies, ["header would be", "bytes long"]),
        (header_not_json, ["header is not a JSON object"]),
        (wrong_version, [f"format version {FORMAT_VERSION + 1}", "upgrade seqlab"]),
        (old_version, ["format version 1"]),
        (missing_rng, ["lacks 'rng'"]),
        (wrong_weight_shape, ["'hidden.weight' has shape [5, 5]", "[32, 16]"]),
        (wrong_moment_shape, ["optimizer state 'hidden.weight_moment1_0' has shape [3]"]),
    ],
)
def test_crafted_file_is_refused_by_fit_and_changes_nothing(workspace, craft, needles):
    recipe, root, last = workspace
    crafted = craft(last, root.parent / "crafted.safetensors")
    before = snapshot(root.parent)
    result = seqlab_cli(
        "fit", "--recipe", recipe, "--trainer.root_dir", root, "--trainer.max_steps", "9", "--ckpt_path", crafted
    )
    assert_user_error(result, str(crafted), *needles)
    assert snapshot(root.parent) == before


def write_pickle(path: Path, marker: Path) -> Path:
    with open(path, "wb") as f:
        pickle.dump({"format_version": 1, "step": 3, "payload": CreatesMarker(marker)}, f)
    return path


def write_paddle_save(path: Path, marker: Path) -> Path:
    """A format-1 checkpoint as paddle.save wrote it, with a payload among the callback states."""
    model = MLP(embed_dim=8, window=4, hidden_dim=16)
    paddle.save(
        {
            "format_version": 1,
            "step": 3,
            "model": model.state_dict(),
            "callbacks": {"Evil": {"x": CreatesMarker(marker)}},
        },
        str(path),
    )
    return path


@pytest.mark.parametrize(
    "write, loader",
    [
        (write_pickle, "import pickle, sys; pickle.load(open(sys.argv[1], 'rb'))"),
        (write_paddle_save, "import paddle, sys; paddle.load(sys.argv[1])"),
    ],
)
def test_pickle_that_would_run_code_is_refused_unread(workspace, write, loader):
    recipe, root, _ = workspace
    marker = root.parent / "MARKER"
    evil = write(root.parent / "evil.pdckpt", marker)
    # Control: the file really runs code when unpickled (the marker appears), so the test below
    # would notice seqlab loading it.
    subprocess.run([sys.executable, "-c", loader, str(evil)], capture_output=True, timeout=120)
    assert marker.exists()
    marker.unlink()
    before = snapshot(root.parent)
    for command in ("fit", "test"):
        result = seqlab_cli(command, "--recipe", recipe, "--trainer.root_dir", root, "--ckpt_path", evil)
        assert_user_error(
            result,
            "is a pickle",
            "can run any code",
            f"seqlab convert-checkpoint {evil} {evil.with_suffix('.safetensors')} --trust",
        )
        assert not marker.exists()
    assert snapshot(root.parent) == before


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_pickles_of_every_protocol_are_recognised(tmp_path, protocol):
    marker = tmp_path / "MARKER"
    path = tmp_path / "x.pdckpt"
    path.write_bytes(pickle.dumps({"format_version": 1, "x": CreatesMarker(marker)}, protocol=protocol))
    with pytest.raises(SeqlabError, match="is a pickle"):
        load_checkpoint(path)
    assert not marker.exists()


def save_raw(path: Path, tensors: dict, metadata: dict) -> Path:
    safetensors.numpy.save_file(tensors, str(path), metadata=metadata)
    return path


@pytest.mark.parametrize(
    "make, needle",
    [
        (lambda p: save_raw(p, {"w": np.zeros(2, np.float32)}, {}), "without seqlab's checkpoint metadata"),
        (lambda p: save_raw(p, {"w": np.zeros(2, np.float32)}, {METADATA_KEY: "{oops"}), "metadata that is not JSON"),
        (lambda p: save_raw(p, {}, {METADATA_KEY: "[1, 2]"}), "not a JSON object"),
        (
            lambda p: save_raw(p, {"/nowhere": np.zeros(2, np.float32)}, {METADATA_KEY: json.dumps({"a": None})}),
            "'/nowhere', which has no place",
        ),
        (
            lambda p: save_raw(p, {"/a": np.zeros(2, np.float32)}, {METADATA_KEY: json.dumps({"a": 5})}),
            "'/a', which has no place",
        ),
        (
            lambda p: save_raw(p, {"/a~2": np.zeros(2, np.float32)}, {METADATA_KEY: json.dumps({"a~2": None})}),
            "has no place",
        ),  # "~" must be written "~0": a second spelling of a key is refused
        (
            lambda p: save_raw(p, {"/a/\u00b2": np.zeros(2, np.float32)}, {METADATA_KEY: json.dumps({"a": [None]})}),
            "has no place",
        ),  # a list index is ASCII digits ("²" is a digit to str.isdigit)
        (
            lambda p: save_raw(p, {"/a/01": np.zeros(2, np.float32)}, {METADATA_KEY: json.dumps({"a": [None, None]})}),
            "has no place",
        ),  # one spelling per index: no leading zeros
        (lambda p: save_raw(p, {}, {METADATA_KEY: json.dumps({"format_version": "2"})}), "format version '2'"),
    ],
)
def test_malformed_safetensors_files_are_refused(tmp_path, make, needle):
    with pytest.raises(SeqlabError) as info:
        load_checkpoint(make(tmp_path / "x.safetensors"))
    assert needle in str(info.value)


def test_truncated_and_tampered_checkpoints_are_refused(trained, tmp_path):
    _, _, last = trained
    data = last.read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(data[:-100])  # the header is intact, the tensor data is not
    with pytest.raises(SeqlabError, match="tensor data that does not match its header"):
        load_checkpoint(cut)
    bad_rng = rewrite(
        last, tmp_path / "rng.safetensors", lambda c: c["rng"]["python"].update(state=np.zeros(10, np.uint32))
    )
    with pytest.raises(SeqlabError, match="malformed RNG state"):
        load_checkpoint(bad_rng)
    bad_engine = rewrite(
        last, tmp_path / "engine.safetensors", lambda c: c["rng"]["paddle"][0]["engine"].__setitem__(-1, 10_000)
    )
    with pytest.raises(SeqlabError, match="malformed RNG state"):
        load_checkpoint(bad_engine)
    bad_step = rewrite(last, tmp_path / "step.safetensors", lambda c: c.update(step=-1))
    with pytest.raises(SeqlabError, match="step -1"):
        load_checkpoint(bad_step)
    foreign_owner = rewrite(
        last,
        tmp_path / "owner.safetensors",
        lambda c: c["optimizer"]["accumulators"].update({"no.such.param": {"_moment1_0": np.zeros(2, np.float32)}}),
    )
    model = MLP(embed_dim=8, window=4, hidden_dim=16)
    with pytest.raises(SeqlabError, match="optimizer state for 'no.such.param'"):
        check_compatible(load_checkpoint(foreign_owner), foreign_owner, "mlp", "reverse_digits", model.state_dict())


# ---------------------------------------------------------------- the format


def test_nested_checkpoint_round_trips(tmp_path):
    weight = paddle.to_tensor(np.arange(6, dtype=np.float32).reshape(2, 3))
    param = paddle.create_parameter([3], dtype="float32")
    ckpt = {
        "format_version": FORMAT_VERSION,
        "step": 7,
        "model": {"blocks.0.w": weight, "param": param, "alias.of.w": weight},  # one tensor, two names
        "optimizer": {"accumulators": {}, "other": {"LR_Scheduler": {"last_epoch": 3, "last_lr": 0.1}}},
        "rng": capture_rng_state(),
        "values": [1.5, float("nan"), float("inf"), -0.0, None, True, "s", [np.arange(3), [None, 2]]],
        "arrays": {
            "u8": np.array([1, 255], np.uint8),
            "i64": np.array([[-1]], np.int64),
            "bool": np.array([True, False]),
            "scalar": np.array(2.5),
            "empty": np.zeros((0, 4)),
            "strided": np.arange(10.0)[::2],
            "f16": np.array([0.5], np.float16),
        },
        "odd keys": {"a/b": np.ones(1), "c~d": np.ones(2), "": 1, "ünï": "ok", "0": np.ones(3)},
        "numpy scalars": {"f": np.float32(0.25), "i": np.int64(3)},
        "tuple": (1, 2),
        "meta": {},
    }
    path = atomic_save(ckpt, tmp_path / "x.safetensors")
    loaded = load_checkpoint(path)
    with safetensors.safe_open(str(path), framework="numpy") as f:
        names = set(f.keys())
    # Tensor names are JSON Pointers into the dict; a shared tensor is stored once.
    assert {"/model/blocks.0.w", "/odd keys/a~1b", "/odd keys/c~0d", "/values/7/0", "/rng/python/state"} <= names
    assert "/model/alias.of.w" not in names
    assert loaded["model"]["alias.of.w"] is loaded["model"]["blocks.0.w"]
    np.testing.assert_array_equal(loaded["model"]["blocks.0.w"], weight.numpy())
    np.testing.assert_array_equal(loaded["model"]["param"], param.numpy())
    values = loaded["values"]
    assert values[0] == 1.5 and math.isnan(values[1]) and values[2] == math.inf
    assert values[3] == 0.0 and math.copysign(1.0, values[3]) == -1.0
    assert values[4:7] == [None, True, "s"]
    np.testing.assert_array_equal(values[7][0], np.arange(3))
    assert values[7][1] == [None, 2]
    for key, array in ckpt["arrays"].items():
        got = loaded["arrays"][key]
        assert got.dtype == array.dtype and got.shape == array.shape, key
        np.testing.assert_array_equal(got, array)
        assert got.flags.writeable and got.flags.c_contiguous
    assert loaded["odd keys"][""] == 1 and loaded["odd keys"]["ünï"] == "ok"
    np.testing.assert_array_equal(loaded["odd keys"]["a/b"], np.ones(1))
    np.testing.assert_array_equal(loaded["odd keys"]["0"], np.ones(3))
    assert loaded["numpy scalars"] == {"f": 0.25, "i": 3} and loaded["tuple"] == [1, 2]
    assert loaded["optimizer"] == ckpt["optimizer"] and loaded["step"] == 7


def test_unstorable_values_are_a_clear_error_and_write_nothing(tmp_path):
    path = tmp_path / "x.safetensors"
    with pytest.raises(TypeError, match="'/callbacks/cb/fn' is a function"):
        atomic_save({"callbacks": {"cb": {"fn": lambda: 0}}}, path)
    with pytest.raises(TypeError, match="not a string"):
        atomic_save({"callbacks": {1: 2}}, path)
    assert list(tmp_path.iterdir()) == []


def test_bfloat16_tensors_come_back_as_paddle_reads_them(tmp_path):
    value = paddle.to_tensor([1.5, -2.25, 3e-3], dtype="float32").astype("bfloat16")
    path = atomic_save({"w": value}, tmp_path / "bf16.safetensors")
    with safetensors.safe_open(str(path), framework="numpy") as f:
        stored = f.get_tensor("/w")
    assert stored.dtype == np.uint16  # Paddle's own numpy form of bfloat16
    back = paddle.to_tensor(stored)
    assert back.dtype == paddle.bfloat16
    np.testing.assert_array_equal(back.astype("float32").numpy(), value.astype("float32").numpy())


def draws():
    """Numbers from every generator a training step may use, dropout included."""
    return (
        random.random(),
        random.gauss(0, 1),
        np.random.rand(3).tolist(),
        float(np.random.standard_normal()),
        paddle.rand([4]).numpy().tolist(),
        paddle.randn([3]).numpy().tolist(),
        paddle.nn.functional.dropout(paddle.ones([32]), 0.5).numpy().tolist(),
    )


def test_rng_states_round_trip_bit_exactly(tmp_path):
    seed_everything(3)
    draws()  # leaves Python's and numpy's cached Gaussians set: they are part of the state
    state = capture_rng_state()
    assert state["python"]["gauss_next"] is not None and state["numpy"]["has_gauss"] == 1
    expected = draws()
    path = atomic_save(
        {"format_version": FORMAT_VERSION, "step": 0, "model": {}, "optimizer": {}, "rng": state},
        tmp_path / "rng.safetensors",
    )
    assert draws() != expected  # the generators moved on
    seed_everything(99)
    restore_rng_state(load_checkpoint(path)["rng"])
    assert draws() == expected


def test_paddle_generator_state_survives_as_plain_values():
    paddle.seed(11)
    paddle.rand([5])
    original = paddle.get_rng_state()[0]
    plain = paddle_state_to_plain(original)
    assert plain["engine"].dtype == np.uint64 and plain["engine"].shape == (313,)
    # The rebuilt state is the same C++ state: same tuple, same engine text byte for byte.
    assert paddle_state_from_plain(plain).__getstate__() == original.__getstate__()


def test_loading_and_restoring_use_no_pickle(trained, monkeypatch):
    _, _, last = trained

    def refuse(*args, **kwargs):
        raise AssertionError("pickle used")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, refuse)
    ckpt = load_checkpoint(last)
    restore_rng_state(ckpt["rng"])


def test_resume_with_dropout_is_bit_exact(tmp_path, monkeypatch):
    """Paddle's generator drives dropout: a resumed run repeats the uninterrupted one exactly,
    and only because its state is restored (without it the losses differ)."""

    def run(name, max_steps, ckpt_path=None):
        seed_everything(0)
        losses = {}

        class Record(Callback):
            def on_train_batch_end(self, trainer, task, model, metrics):
                losses[trainer.global_step] = metrics["train/loss"]

        trainer = Trainer(
            max_steps=max_steps,
            val_every=0,
            save_every=4,
            seed=5,
            root_dir=str(tmp_path),
            experiment="exp",
            run_name=name,
            optimizer=AdamW(lr=3e-3),
            callbacks=[Record()],
            default_callbacks=False,
        )
        task = ReverseDigits(
            digit_max=8,
            seq_len=33,
            batch_size=8,
            eval_samples=8,
            probe_digit_min=9,
            probe_digit_max=12,
            probe_samples=8,
        )
        trainer.fit(task, Transformer(n_embd=16, max_len=33, dropout=0.3), ckpt_path=ckpt_path)
        return losses

    full = run("full", 8)
    first = run("resumed", 4)
    resumed = {**first, **run("resumed", 8, ckpt_path="last")}
    assert resumed == full
    run("skipped", 4)
    monkeypatch.setattr("seqlab.checkpoint.state.restore_rng_state", lambda state: None)
    skipped = {**first, **run("skipped", 8, ckpt_path="last")}
    assert skipped != full


# ---------------------------------------------------------------- atomic writes


@pytest.mark.parametrize("fail_at", ["write", "fsync", "replace"])
def test_a_failed_write_leaves_the_previous_file_intact(tmp_path, monkeypatch, fail_at):
    path = tmp_path / "last.safetensors"
    atomic_save({"step": 1, "w": np.zeros(1000, np.float32)}, path)
    before = path.read_bytes()

    def half_then_fail(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"\0" * 100)  # a torn, partial file
        raise OSError("disk full")

    def fail(*args, **kwargs):
        raise OSError("injected")

    if fail_at == "write":
        monkeypatch.setattr(safetensors.numpy, "save_file", half_then_fail)
    else:
        monkeypatch.setattr(seqlab.io.os, fail_at, fail)
    with pytest.raises(OSError):
        atomic_save({"step": 2, "w": np.ones(1000, np.float32)}, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.safetensors"]  # no .tmp left


def test_atomic_write_text_and_bytes(tmp_path):
    path = seqlab.io.atomic_write_text(tmp_path / "sub/config.yaml", "a: 1\n")
    assert path.read_text() == "a: 1\n"
    atomic_write_bytes(path, b"b: 2\n")
    assert path.read_bytes() == b"b: 2\n" and sorted(p.name for p in path.parent.iterdir()) == ["config.yaml"]


# ---------------------------------------------------------------- the old format


def write_format_1(ckpt_path: Path, dst: Path) -> tuple[Path, tuple]:
    """A format-1 file as seqlab wrote it (paddle.save, RNG states in one pickled array), built
    from a real checkpoint, and the draws its RNG state gives."""
    new = load_checkpoint(ckpt_path)
    seed_everything(21)
    draws()
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "paddle": paddle.get_rng_state()}
    expected = draws()
    old = dict(
        new,
        format_version=1,
        model={k: paddle.to_tensor(v) for k, v in new["model"].items()},
        rng=np.frombuffer(pickle.dumps(state), dtype=np.uint8).copy(),
    )
    old["optimizer"]["accumulators"] = {
        p: {s: paddle.to_tensor(v) for s, v in a.items()} for p, a in new["optimizer"]["accumulators"].items()
    }
    paddle.save(old, str(dst))
    return dst, expected


def test_old_checkpoints_convert_only_with_trust(workspace):
    recipe, root, last = workspace
    checkpoints = last.parent
    legacy, expected = write_format_1(last, checkpoints / "last.pdckpt")
    original = load_checkpoint(last)
    last.unlink()
    (checkpoints / "best.safetensors").unlink(missing_ok=True)

    # --ckpt_path last finds only the old file: refused, naming the command that converts it.
    before = snapshot(root.parent)
    assert_user_error(
        seqlab_cli(
            "fit", "--recipe", recipe, "--trainer.root_dir", root, "--trainer.max_steps", "9", "--ckpt_path", "last"
        ),
        f"seqlab convert-checkpoint {legacy} {last} --trust",
    )
    # Without --trust the conversion refuses, saying why.
    assert_user_error(seqlab_cli("convert-checkpoint", legacy, last), "runs any code", "--trust")
    assert snapshot(root.parent) == before

    converted = seqlab_cli("convert-checkpoint", legacy, last, "--trust")
    assert converted.returncode == 0, converted.stderr
    assert f"wrote {last}" in converted.stdout
    ckpt = load_checkpoint(last)
    assert ckpt["format_version"] == FORMAT_VERSION and ckpt["step"] == original["step"] == 6
    for key, value in original["model"].items():
        np.testing.assert_array_equal(ckpt["model"][key], value)
    assert ckpt["callbacks"] == original["callbacks"] and ckpt["config"] == original["config"]
    seed_everything(0)
    restore_rng_state(ckpt["rng"])
    assert draws() == expected  # the old pickled RNG blob became the same state, pickle-free
    assert_user_error(seqlab_cli("convert-checkpoint", legacy, last, "--trust"), "already exists")

    resumed = seqlab_cli(
        "fit",
        "--recipe",
        recipe,
        "--trainer.root_dir",
        root,
        "--trainer.max_steps",
        "9",
        "--ckpt_path",
        "last",
        "--no_report",
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed mlp" in resumed.stderr and "at step 6" in resumed.stderr


def test_conversion_refuses_what_it_cannot_convert(trained, tmp_path):
    _, _, last = trained
    with pytest.raises(SeqlabError, match="already a safetensors file"):
        convert_legacy_checkpoint(last, tmp_path / "x.safetensors", trust=True)
    other = tmp_path / "other.pdckpt"
    paddle.save({"weights": paddle.ones([2])}, str(other))
    with pytest.raises(SeqlabError, match="not a format-1 seqlab checkpoint"):
        convert_legacy_checkpoint(other, tmp_path / "y.safetensors", trust=True)
    assert not (tmp_path / "y.safetensors").exists()
