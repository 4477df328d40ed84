"""The token_file task (seed 001's get_batch) and `seqlab tokenize`: determinism, the held-out
split, memory-mapped reading, metrics, and every bad file a user can pass (exit 2, one line)."""

import math
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

import seqlab  # noqa: F401  (imports paddle quietly)
from seqlab.errors import SeqlabError
from seqlab.model import nn, paddle
from seqlab.tasks.token_file import TokenFile
from seqlab.tokenize import tokenize_file

ROOT = Path(__file__).resolve().parents[1]
TEXT = ROOT / "examples/data/dhammapada.txt"
BIN = ROOT / "examples/data/dhammapada.bin"


def write_tokens(path: Path, ids, dtype=np.uint16) -> Path:
    np.asarray(ids, dtype=dtype).tofile(path)
    return path


@pytest.fixture
def counting_file(tmp_path):
    """A file whose token at position i is i % 50000: a window's content tells where it came from."""
    return write_tokens(tmp_path / "count.bin", np.arange(20_000) % 50_000)


def task_on(path, **kwargs):
    args = dict(vocab_size=50_000, seq_len=16, batch_size=8, val_fraction=0.1, eval_windows=1000)
    task = TokenFile(path=str(path), **{**args, **kwargs})
    task.setup(kwargs.pop("seed", 3))
    return task


# ---------------------------------------------------------------------------- batches
def test_windows_are_slices_of_the_file_shifted_by_one(counting_file):
    task = task_on(counting_file)
    batch = task.train_batch(0)
    x, y = batch.inputs.numpy(), batch.targets.numpy()
    assert x.shape == (8, 16) and y.shape == (8, 16) and batch.inputs.dtype == paddle.int64
    assert (np.diff(x, axis=1) == 1).all() and (y == x + 1).all()  # consecutive tokens, targets shifted
    assert (x[:, 0] == task.window_starts(0)).all()


def test_batches_are_deterministic_in_seed_and_step(counting_file):
    a, b = task_on(counting_file), task_on(counting_file)
    np.random.seed(0)
    first = a.train_batch(5).inputs.numpy()
    np.random.seed(99)  # the global RNG plays no part
    assert (b.train_batch(5).inputs.numpy() == first).all()
    assert (a.train_batch(5).inputs.numpy() == first).all()  # nor does call order
    assert not (a.train_batch(6).inputs.numpy() == first).all()
    b.setup(4)
    assert not (b.train_batch(5).inputs.numpy() == first).all()


def test_no_training_window_crosses_into_the_held_out_part(counting_file):
    task = task_on(counting_file, seq_len=64, batch_size=64)
    assert task.split == 18_000
    ends = np.concatenate([task.window_starts(step) for step in range(300)]) + 64 + 1
    assert ends.max() <= task.split  # the last token a window reads is before the split
    assert ends.max() > task.split - 40  # and windows do reach up to it (19,200 draws)
    starts = task.eval_starts()
    assert starts.min() == task.split and starts.max() + 64 + 1 <= 20_000
    assert (np.diff(starts) == 64).all()  # consecutive: every held-out target predicted once
    held_out = np.concatenate([b.targets.ravel() for b in task.val_batches()])
    assert len(np.unique(held_out)) == len(held_out) and held_out.min() > task.split - 1


def test_eval_windows_are_spread_when_capped(counting_file):
    task = task_on(counting_file, seq_len=16, eval_windows=10)
    starts = task.eval_starts()
    assert len(starts) == 10 and starts[0] == task.split and starts[-1] == task.split + 16 * 123
    assert sum(len(b.inputs) for b in task.val_batches()) == 10


def test_npy_and_uint32_files(tmp_path):
    ids = np.arange(5000) % 70_000 + 60_000  # ids beyond uint16
    np.save(tmp_path / "t.npy", ids.astype(np.uint32))
    write_tokens(tmp_path / "t.bin", ids, np.uint32)
    for path, dtype in ((tmp_path / "t.npy", "uint16"), (tmp_path / "t.bin", "uint32")):  # .npy keeps its own
        task = task_on(path, dtype=dtype, vocab_size=200_000)
        assert (task.train_batch(1).inputs.numpy() >= 60_000).all()


# ---------------------------------------------------------------------------- memory map
def _resident_kib(path: Path) -> int:
    """KiB of ``path``'s pages mapped into this process (its mappings' Rss in /proc/self/smaps)."""
    total, inside = 0, False
    with open("/proc/self/smaps") as f:
        for line in f:
            if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
                inside = line.rstrip().endswith(str(path))
            elif inside and line.startswith("Rss:"):
                total += int(line.split()[1])
    return total


def _bytes_read() -> int:
    """Bytes this process read through read() calls so far (rchar in /proc/self/io)."""
    with open("/proc/self/io") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("rchar:"))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self")
def test_the_file_is_memory_mapped_and_never_read_whole(tmp_path):
    """What this proves: opening a 1 GiB token file, drawing 20 training batches and reading the
    held-out windows reads under 1 MiB through read() calls, and maps under 1/16 of the file's
    pages into memory. A file read whole would show in one of the two meters; the control at the
    end shows each meter moving when the file is read that way. (The file is sparse: it costs no
    disk, and the kernel's page cache outside this process is not measured.)"""
    path = tmp_path / "big.bin"
    size = 1 << 30
    with open(path, "wb") as f:
        f.truncate(size)  # 2^29 zero tokens
    before = _bytes_read()
    task = task_on(path, seq_len=64, batch_size=8, val_fraction=0.01, eval_windows=16)
    for step in range(20):
        task.train_batch(step)
    assert sum(len(b.inputs) for b in task.val_batches()) == 16
    assert _bytes_read() - before < 1 << 20
    mapped = _resident_kib(path) * 1024
    assert 0 < mapped < size // 16
    # Control: the meters see a whole read, by read() or through the map.
    np.fromfile(path, dtype=np.uint16, count=1 << 24)
    assert _bytes_read() - before >= 1 << 25
    np.asarray(task.tokens[: 1 << 24]).sum()
    assert _resident_kib(path) * 1024 >= mapped + (1 << 24)


# ---------------------------------------------------------------------------- metrics and samples
class Uniform(nn.Layer):
    def forward(self, tokens):
        return paddle.zeros(list(tokens.shape) + [256])


class Echo(nn.Layer):
    """Predicts that the next byte repeats the current one."""

    def forward(self, tokens):
        return paddle.nn.functional.one_hot(tokens, 256) * 5.0


def test_metrics_on_a_byte_file():
    task = TokenFile(path=str(BIN), seq_len=128, val_fraction=0.1, eval_windows=64)
    task.setup(0)
    assert task.split == int(66_357 * 0.9) and len(task.eval_starts()) == 51
    uniform = task.evaluate(Uniform())
    assert uniform == pytest.approx({"loss": math.log(256), "perplexity": 256.0, "bits_per_byte": 8.0})
    echo = task.test(Echo())
    assert echo["perplexity"] == pytest.approx(math.exp(echo["loss"]))
    assert echo["bits_per_byte"] == pytest.approx(echo["loss"] / math.log(2))
    text = task.describe(Echo(), num_samples=2)
    assert text.count("sample ") == 2 and "generated: " in text
    raw = TEXT.read_bytes().decode().replace("\n", "↵")
    assert f"text : {raw[task.split + 1 : task.split + 65]}" in text  # the targets of the first window
    assert f"pred : {raw[task.split : task.split + 64]}" in text  # echo: each byte predicted to repeat


def test_report_spec_of_a_byte_file():
    spec = TokenFile(path=str(BIN)).report_spec()
    assert (spec.primary_metric, spec.primary_mode) == ("perplexity", "min")
    assert [c.key for c in spec.columns] == ["loss", "perplexity", "bits_per_byte"]
    assert spec.chart.name == "perplexity" and "6,528 held-out tokens" in spec.description


# ---------------------------------------------------------------------------- tokenize
def test_tokenize_writes_bytes_as_uint16_and_the_shipped_bin_is_the_text(tmp_path):
    src = tmp_path / "in.txt"
    src.write_bytes("héllo\n".encode())
    assert tokenize_file(src, tmp_path / "out.bin") == 7
    assert np.fromfile(tmp_path / "out.bin", dtype="<u2").tolist() == list("héllo\n".encode())
    assert tokenize_file(TEXT, tmp_path / "d.bin") == 66_357
    assert (tmp_path / "d.bin").read_bytes() == BIN.read_bytes()  # the committed .bin is this text


def test_tokenize_command(tmp_path, run_seqlab):
    src = tmp_path / "in.txt"
    src.write_text("abc")
    code, out, err = run_seqlab("tokenize", "--input", src, "--output", tmp_path / "o.bin")
    assert code == 0 and out == f"wrote 3 tokens (byte-level, vocabulary 256, uint16) to {tmp_path / 'o.bin'}\n"
    (tmp_path / "empty.txt").write_text("")
    for args, message in [
        (["--input", tmp_path / "nope.txt", "--output", tmp_path / "x.bin"], "does not exist"),
        (["--input", tmp_path / "empty.txt", "--output", tmp_path / "x.bin"], "is empty"),
        (["--input", src, "--output", tmp_path / "no/such/x.bin"], "does not exist; create it first"),
        (["--input", src], "the following arguments are required: --output"),
    ]:
        code, out, err = run_seqlab("tokenize", *args)
        assert code == 2 and len(err) == 1 and message in err[0], err
    assert not (tmp_path / "x.bin").exists() and not list(tmp_path.glob("*.tmp"))


# ---------------------------------------------------------------------------- bad files, via the CLI
def _recipe(tmp_path, task_args, model_args=None):
    recipe = {
        "name": "bad",
        "task": {"class_path": "token_file", "init_args": {"seq_len": 16, "batch_size": 4, **task_args}},
        "trainer": {"max_steps": 2, "val_every": 0, "root_dir": str(tmp_path / "runs")},
        "runs": {
            "mlp": {
                "model": {
                    "class_path": "mlp",
                    "init_args": {"embed_dim": 8, "window": 4, "hidden_dim": 16, **(model_args or {})},
                }
            }
        },
    }
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def _files(folder: Path):
    return sorted(p for p in folder.rglob("*"))


BAD_FILES = {
    # id: (file content or None (missing), task args, model args, what the one line must say)
    "missing": (None, {}, None, "token file '{path}' does not exist; pass a .bin or .npy file"),
    "empty": (b"", {}, None, "token file '{path}' is empty"),
    "too short": (
        np.arange(30, dtype=np.uint16).tobytes(),
        {},
        None,
        "token file '{path}' is too short: 30 tokens leave its held-out part with fewer than a window "
        "of seq_len + 1 = 17 tokens",
    ),
    "size not a multiple of the dtype": (
        b"\x01\x00" * 999,
        {"dtype": "uint32"},
        None,
        "token file '{path}' has 1,998 bytes, not a whole number of uint32 items",
    ),
    "uint16 file read as uint32": (
        np.arange(1000, dtype=np.uint16).tobytes(),
        {"dtype": "uint32"},
        None,
        "token file '{path}' (its first tokens, read as uint32) holds token id 65471462, "
        "outside the vocabulary of 256 (ids 0..255); set the task's vocab_size above "
        "the largest id, or fix its dtype",
    ),
    "ids beyond the declared vocabulary": (
        (np.arange(1000) % 300).astype(np.uint16).tobytes(),
        {},
        None,
        "holds token id 299, outside the vocabulary of 256",
    ),
    "model vocabulary smaller than the task's": (
        (np.arange(1000) % 256).astype(np.uint16).tobytes(),
        {"vocab_size": 1000},
        {"vocab_size": 256},
        "run 'mlp': the model's vocabulary (256) is smaller than the task's (1000)",
    ),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_token_files_are_one_sentence_exit_2_and_write_nothing(tmp_path, run_seqlab, case):
    content, task_args, model_args, expected = BAD_FILES[case]
    path = tmp_path / "data.bin"
    if content is not None:
        path.write_bytes(content)
    recipe = _recipe(tmp_path, {"path": str(path), **task_args}, model_args)
    before = _files(tmp_path)
    code, out, err = run_seqlab("fit", "--recipe", recipe)
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("error: ") and expected.format(path=path) in err[0], err[0]
    assert _files(tmp_path) == before and not (tmp_path / "runs").exists()


def test_an_id_beyond_the_models_vocabulary_stops_at_the_first_batch(tmp_path, run_seqlab, monkeypatch):
    path = write_tokens(tmp_path / "data.bin", np.arange(1000) % 300)
    # A user's task that says vocabulary 256 but checks nothing: its rows hold ids up to 299.
    (tmp_path / "lying_task.py").write_text(
        "from seqlab.tasks.token_file import TokenFile\n\n\n"
        "class LyingTask(TokenFile):\n    def _check(self, ids, what):\n        pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    recipe = _recipe(tmp_path, {"path": str(path)})
    data = yaml.safe_load(recipe.read_text())
    data["task"]["class_path"] = "lying_task.LyingTask"
    recipe.write_text(yaml.safe_dump(data))
    before = _files(tmp_path)
    code, out, err = run_seqlab("fit", "--recipe", recipe)
    assert code == 2 and len(err) == 1, err
    assert re.match(
        r"error: run 'mlp': the task's first batch holds token id 2\d\d, but the model's vocabulary "
        r"has 256 ids \(0..255\); raise model.init_args.vocab_size",
        err[0],
    ), err[0]
    assert _files(tmp_path) == before


def test_bad_settings():
    with pytest.raises(SeqlabError, match="val_fraction must be between 0 and 1"):
        TokenFile(path=str(BIN), val_fraction=1.0)
    with pytest.raises(SeqlabError, match="seq_len must be at least 1"):
        TokenFile(path=str(BIN), seq_len=0)
