"""seqlab export: each built-in model's graphs, loaded in Paddle Inference and onnxruntime,
give the trained model's logits, and greedy decoding through the exported step graph gives
``seqlab predict``'s tokens.

One tiny run per model is trained once for the module (4 steps). The exports are read back
here with the runtimes themselves (``paddle.inference``, ``onnxruntime``), independently of the
check the command runs before it writes; the reference logits come from the model as seqlab
trains and serves it (its default form: fused C++ ops where they build).
"""

from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import paddle
import pytest
import yaml
from tiny import LSTM, MLP, RWKV7, tiny_recipe

from seqlab.checkpoint import load_checkpoint
from seqlab.export.runtime import load_export
from seqlab.recipe import import_class

RUNS = {
    "rwkv7": RWKV7,
    "transformer": {"model": {"class_path": "transformer", "init_args": {"max_len": 40}}},
    "transformer_modern": {"model": {"class_path": "transformer_modern"}},
    "lstm": LSTM,
    "mlp": MLP,
}
RECIPE = tiny_recipe(RUNS, trainer={"max_steps": 4, "val_every": 0, "save_every": 4, "optimizer": {"lr": 3e-3}})
TOLERANCE = 1e-4  # the bound, float32
CLASS_PATHS = {
    "rwkv7": "seqlab.models.rwkv7.RWKV7",
    "transformer": "seqlab.models.transformer.Transformer",
    "transformer_modern": "seqlab.models.transformer_modern.TransformerModern",
    "lstm": "seqlab.models.lstm.LSTM",
    "mlp": "seqlab.models.mlp.MLP",
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    import os
    import subprocess

    from tiny import SEQLAB

    folder = tmp_path_factory.mktemp("export")
    recipe = folder / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(RECIPE, sort_keys=False))
    fit = subprocess.run(
        [*SEQLAB, "fit", "--recipe", str(recipe), "--trainer.root_dir", str(folder / "runs")],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, PYTHONWARNINGS="ignore"),
    )
    assert fit.returncode == 0, fit.stderr
    return recipe, folder / "runs"


class Exports:
    """Each (run, format) exported once for the module, by the first test that needs it (through
    that test's ``run_seqlab``): tracing RWKV-7's time loop takes seconds."""

    def __init__(self, folder):
        self.folder, self.done = folder, {}

    def get(self, run_seqlab, trained, run: str, fmt: str):
        if (run, fmt) not in self.done:
            recipe, root = trained
            out = self.folder / f"{run}-{fmt}"
            code, stdout, err = export(run_seqlab, recipe, root, run, fmt, out)
            assert code == 0, err
            assert stdout == "".join(
                f"== {run}: last.safetensors (step 4) -> {out} [{fmt}]: full (max |logit diff| {d:.1e}), step "
                f"(max |logit diff| {s:.1e})\n"
                for d, s in [[json.loads((out / "seqlab-export.json").read_text())["graphs"][g]["max_abs_diff"]
                              for g in ("full", "step")]]
            )  # fmt: skip
            self.done[run, fmt] = out
        return self.done[run, fmt]


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    return Exports(tmp_path_factory.mktemp("exports"))


def trained_model(root, run: str):
    """The run's model as seqlab builds it, with its last checkpoint's weights."""
    section = RUNS[run]["model"]
    init_args = section.get("init_args", {}) if isinstance(section, dict) else {}
    model = import_class(CLASS_PATHS[run])(**init_args)
    model.set_state_dict(load_checkpoint(root / f"tiny/{run}/checkpoints/last.safetensors")["model"])
    model.eval()
    return model


def tokens_to_check():
    """Rows of the task (digits, ',' and '#') and random rows: another batch size and length than
    the command's own check (2 x 24)."""
    from seqlab.tasks.reverse_digits import ReverseDigits

    task = ReverseDigits(**RECIPE["task"]["init_args"])
    task.setup(0)
    rows = task.train_batch(0).inputs.numpy()[:3]  # [3, 33]
    noise = np.random.default_rng(7).integers(0, 12, size=(2, rows.shape[1]), dtype=np.int64)
    return np.concatenate([rows, noise])


def export(run_seqlab, recipe, root, run, fmt, output, *extra):
    return run_seqlab(
        "export",
        "--recipe",
        recipe,
        "--runs",
        run,
        "--trainer.root_dir",
        root,
        "--format",
        fmt,
        "--output",
        output,
        *extra,
    )


def custom_ops(folder, fmt) -> set[str]:
    """Operators of the export that are not the runtime's own (a seqlab C++ op would be one)."""
    if fmt == "onnx":
        import onnx

        found = set()

        def walk(graph):
            for node in graph.node:
                if node.domain not in ("", "ai.onnx"):
                    found.add(f"{node.domain}::{node.op_type}")
                for attr in node.attribute:
                    if attr.g is not None:
                        walk(attr.g)

        for path in folder.glob("*.onnx"):
            walk(onnx.load(str(path)).graph)
        return found
    text = "".join(p.read_text() for p in folder.glob("*.json") if p.name != "seqlab-export.json")
    return {name for name in ("seqlab", "wkv7", "rwkv7_", "lstm_cpu", "custom_op") if name in text}


# Every model to Paddle Inference, and to ONNX the Transformer (its KV cache); the other ONNX
# exports run with the slow tests (CI runs them too): RWKV-7's takes ~12 s of CPU (tracing its
# time loop, then paddle2onnx in a child process), the others ~3-5 s.
SLOW = [pytest.mark.slow]
CASES = [pytest.param(run, "paddle", id=f"{run}-paddle") for run in RUNS] + [
    pytest.param(run, "onnx", id=f"{run}-onnx", marks=[] if run == "transformer" else SLOW) for run in RUNS
]


@pytest.mark.parametrize("run,fmt", CASES)
def test_export_gives_the_trained_models_logits_in_its_runtime(run_seqlab, trained, exports, run, fmt):
    recipe, root = trained
    out = exports.get(run_seqlab, trained, run, fmt)

    meta = json.loads((out / "seqlab-export.json").read_text())
    ckpt = root / f"tiny/{run}/checkpoints/last.safetensors"
    assert meta["checkpoint"]["sha256"] == hashlib.sha256(ckpt.read_bytes()).hexdigest()
    assert meta["model"]["name"] == run and meta["format"] == fmt
    assert meta["vocabulary"]["tokens"] == list("0123456789,#") and meta["vocabulary"]["stop_token"] == 11
    assert meta["versions"]["paddle"] == paddle.__version__
    assert set(meta["graphs"]) == {"full", "step"}
    listed = {f for g in meta["graphs"].values() for f in g["files"]}
    assert {p.name for p in out.iterdir()} == listed | {"seqlab-export.json"}
    assert custom_ops(out, fmt) == set()

    model = trained_model(root, run)
    tokens = tokens_to_check()
    with paddle.no_grad():
        expected = model(paddle.to_tensor(tokens)).numpy()
    exported = load_export(out)
    (full,) = exported.run("full", {"tokens": tokens})
    assert full.shape == expected.shape
    assert np.abs(full - expected).max() <= TOLERANCE
    (one,) = exported.run("full", {"tokens": tokens[:1, :1].copy()})  # the shortest input: one token
    assert one.shape == (1, 1, 12) and np.abs(one - expected[:1, :1]).max() <= TOLERANCE

    # The step graph, token by token from the zero state, gives the forward's logits at each position.
    feeds, worst = exported.start(len(tokens)), 0.0
    for t in range(tokens.shape[1]):
        logits, feeds = exported.step(tokens[:, t], feeds)
        worst = max(worst, float(np.abs(logits - expected[:, t]).max()))
    assert worst <= TOLERANCE
    # The logits are not all alike (a graph that ignored its input would fail above, unless the
    # model did too): a trained model's predictions change along a row.
    assert np.abs(np.diff(expected, axis=1)).max() > 1e-3


@pytest.mark.parametrize(
    "run,fmt",
    [
        ("rwkv7", "paddle"),
        pytest.param("rwkv7", "onnx", marks=SLOW),
        ("transformer", "paddle"),
        ("transformer", "onnx"),
    ],
)
def test_greedy_generation_through_the_exported_step_matches_seqlab_predict(run_seqlab, trained, exports, run, fmt):
    recipe, root = trained
    out = exports.get(run_seqlab, trained, run, fmt)
    prompts = ["12345,", "907,", "3141592,"]
    code, stdout, err = run_seqlab(
        "predict", "--recipe", recipe, "--runs", run, "--trainer.root_dir", root, "--max_new_tokens", 9,
        *[a for p in prompts for a in ("--prompt", p)],
    )  # fmt: skip
    assert code == 0, err
    lines = stdout.splitlines()[1:]
    exported = load_export(out)
    vocab = exported.meta["vocabulary"]
    ids = [[vocab["tokens"].index(c) for c in p] for p in prompts]
    new = exported.greedy(ids, max_new_tokens=9, stop_token=vocab["stop_token"])
    for line, prompt, tokens in zip(lines, prompts, new):
        text = "".join(vocab["tokens"][i] for i in tokens)
        assert len(tokens) >= 1
        # predict prints the prompt, its continuation, then the task's verdict after three spaces.
        assert line.split("   ")[0] == prompt + text, (line, text)


def test_step_graph_tokens_and_state_shapes_are_what_the_metadata_says(run_seqlab, trained, exports):
    out = exports.get(run_seqlab, trained, "rwkv7", "paddle")
    meta = json.loads((out / "seqlab-export.json").read_text())
    step = meta["graphs"]["step"]
    assert [i["name"] for i in step["inputs"]] == ["tokens", "state"]
    assert [o["name"] for o in step["outputs"]] == ["logits", "new_state"]
    assert step["inputs"][1]["shape"] == ["batch", 2, 2 * 32 + 2 * 16 * 16]
    exported = load_export(out)
    logits, feeds = exported.step(np.array([1, 2, 3], dtype=np.int64), exported.start(3))
    assert logits.shape == (3, 12) and feeds["state"].shape == (3, 2, 576)
    assert np.abs(feeds["state"]).max() > 0  # the state moved


# ---------------------------------------------------------------------------------- bad input


def test_an_unknown_format_is_one_sentence_and_writes_nothing(run_seqlab, trained, tmp_path):
    recipe, root = trained
    out = tmp_path / "export"
    code, stdout, err = export(run_seqlab, recipe, root, "mlp", "tflite", out)
    assert code == 2 and stdout == ""
    assert err == ["error: --format 'tflite' is not an export format; use one of paddle, onnx."]
    assert not out.exists()


def test_an_existing_output_folder_needs_overwrite(run_seqlab, trained, tmp_path):
    recipe, root = trained
    out = tmp_path / "export"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    code, _, err = export(run_seqlab, recipe, root, "mlp", "paddle", out)
    assert code == 2 and len(err) == 1 and "already exists; pass --overwrite" in err[0]
    # --overwrite replaces only an earlier export, never a folder of something else.
    code, _, err = export(run_seqlab, recipe, root, "mlp", "paddle", out, "--overwrite")
    assert code == 2 and len(err) == 1 and "is not a seqlab export" in err[0]
    assert [p.name for p in out.iterdir()] == ["keep.txt"] and (out / "keep.txt").read_text() == "mine"


def test_overwrite_replaces_an_earlier_export(run_seqlab, trained, exports, tmp_path):
    recipe, root = trained
    out = tmp_path / "export"
    shutil.copytree(exports.get(run_seqlab, trained, "transformer", "onnx"), out)
    assert export(run_seqlab, recipe, root, "mlp", "paddle", out, "--overwrite")[0] == 0
    assert json.loads((out / "seqlab-export.json").read_text())["format"] == "paddle"
    assert not list(out.glob("*.onnx"))
    assert [p.name for p in tmp_path.iterdir()] == ["export"]  # no work folder left beside it


def test_a_checkpoint_of_another_model_is_refused_and_nothing_is_written(run_seqlab, trained, tmp_path):
    recipe, root = trained
    out = tmp_path / "export"
    other = root / "tiny/lstm/checkpoints/last.safetensors"
    code, stdout, err = export(run_seqlab, recipe, root, "mlp", "paddle", out, "--ckpt_path", other)
    assert code == 2 and stdout == ""
    assert err == [
        f"error: checkpoint '{other}' was written for model 'lstm', but this run's model is 'mlp'; "
        "pass a checkpoint of this run or change --model."
    ]
    assert list(tmp_path.iterdir()) == []


def test_several_runs_need_one_chosen(run_seqlab, trained, tmp_path):
    recipe, root = trained
    code, _, err = run_seqlab(
        "export", "--recipe", recipe, "--trainer.root_dir", root, "--format", "paddle", "--output", tmp_path / "x"
    )
    assert code == 2 and err == [
        "error: seqlab export writes one run; pass --runs NAME with one of: rwkv7, transformer, "
        "transformer_modern, lstm, mlp."
    ]
    assert list(tmp_path.iterdir()) == []


def test_a_model_without_export_graphs_is_refused_in_one_sentence(tmp_path):
    from seqlab.errors import SeqlabError
    from seqlab.export import export_model
    from seqlab.models.transformer import Transformer

    class Wider(Transformer):  # a model class seqlab has no static graphs for (as a plugin's)
        pass

    with pytest.raises(SeqlabError, match=r"^seqlab export knows no static graphs for model Wider; "):
        export_model(Wider(), tmp_path / "x", "paddle")
    assert list(tmp_path.iterdir()) == []


def test_a_graph_paddle2onnx_cannot_convert_is_one_sentence_and_writes_nothing(tmp_path, monkeypatch):
    """paddle2onnx aborts its process on an operator it does not know (QR here); seqlab converts
    in a child process, so it can say so and write nothing."""
    from seqlab.errors import SeqlabError
    from seqlab.export import export_model
    from seqlab.export.graphs import BUILDERS, TOKENS, Graph, Tensor
    from seqlab.model import Model

    class QRModel(Model):
        def __init__(self):
            super().__init__()
            self.emb = paddle.nn.Embedding(4, 4)

        def forward(self, tokens):
            return paddle.linalg.qr(self.emb(tokens))[0]  # [B, T, 4] for T >= 4

    class Full(paddle.nn.Layer):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, tokens):
            return self.model(tokens)

    logits = Tensor("logits", ["batch", "time", 4], "float32")
    monkeypatch.setitem(BUILDERS, QRModel, lambda model, _: [Graph("full", Full(model), [TOKENS], [logits])])
    with pytest.raises(SeqlabError) as info:
        export_model(QRModel(), tmp_path / "new" / "x", "onnx")  # a folder it would have to make too
    assert str(info.value) == (
        "the full graph of this model cannot go to ONNX with paddle2onnx 2.1.0: it has operators "
        "paddle2onnx does not support; export it with --format paddle instead."
    )
    assert list(tmp_path.iterdir()) == []
    # The same model goes to Paddle Inference.
    assert export_model(QRModel(), tmp_path / "x", "paddle")["graphs"]["full"]["max_abs_diff"] <= TOLERANCE
