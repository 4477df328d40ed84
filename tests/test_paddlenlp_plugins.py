"""The PaddleNLP plugins (pnlp_llama, pnlp_mamba) and the optional `paddlenlp` extra.

* Always run, with or without paddlenlp: both plugins are listed and refused with the install
  command when paddlenlp is missing (hidden from a subprocess, as test_cli hides paddle), and
  importing seqlab's registry never imports paddlenlp.
* With paddlenlp (``make test-nlp`` installs it into .venv-nlp and runs this file there): cached
  inference equals forward, the Mamba plugin's time-major scan equals PaddleNLP's own loop (logits
  and gradients), and a tiny recipe trains and tests both through the CLI. seqlab.testing's checks
  (shape, causality, one step, save/load) run on both in tests/test_models.py::test_model_contract.
"""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import paddle
import pytest
import yaml
from tiny import tiny_recipe

from seqlab import MODELS
from seqlab.testing import make_tokens

ROOT = Path(__file__).resolve().parents[1]
PLUGINS = ["pnlp_llama", "pnlp_mamba"]
HINT = "pip install 'seqlab[paddlenlp]'"
HIDE_PADDLENLP = "import sys; sys.modules['paddlenlp'] = None; "  # `import paddlenlp` now fails
INSTALLED = importlib.util.find_spec("paddlenlp") is not None
# Skip only when paddlenlp is absent; an installed paddlenlp that fails to import fails the tests.
needs_paddlenlp = pytest.mark.skipif(
    not INSTALLED,
    reason="paddlenlp is not installed; `make test-nlp` runs these in .venv-nlp "
    "(pip install -e '.[cpu,dev,paddlenlp]')",
)

TINY = tiny_recipe(
    {name: {"model": name} for name in PLUGINS},
    name="tiny_zoo",
    trainer={"max_steps": 4, "val_every": 2, "save_every": 2, "log_every": 2, "optimizer": {"lr": 3e-3}},
)


def python(code: str, cwd=None):
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


def seqlab(*args, hide_paddlenlp=False, cwd=None):
    hide = HIDE_PADDLENLP if hide_paddlenlp else ""
    return python(f"{hide}from seqlab.cli import main; raise SystemExit(main({[str(a) for a in args]!r}))", cwd=cwd)


def listing(result) -> dict[str, str]:
    assert result.returncode == 0, result.stderr
    return {ln.split()[0]: ln for ln in result.stdout.splitlines() if ln.strip()}


# ---------------------------------------------------------------- always run
def test_registry_does_not_import_paddlenlp():
    result = python(
        "import sys, seqlab; names = seqlab.MODELS.names(); print(','.join(names)); print('paddlenlp' in sys.modules)"
    )
    assert result.returncode == 0, result.stderr
    names, imported = result.stdout.split()
    assert set(PLUGINS) <= set(names.split(","))
    assert imported == "False"


def test_listing_without_paddlenlp_gives_the_install_command():
    lines = listing(seqlab("models", hide_paddlenlp=True))
    for name in PLUGINS:
        assert f"needs: {HINT}" in lines[name], lines[name]
    assert "30,732 params" in lines["rwkv7"]  # the other models are still built and counted


def test_listing_as_installed():
    lines = listing(seqlab("models"))
    if INSTALLED:
        assert "30,624 params" in lines["pnlp_llama"] and "30,272 params" in lines["pnlp_mamba"]
    else:
        assert all(f"needs: {HINT}" in lines[name] for name in PLUGINS)


@pytest.mark.parametrize("name", PLUGINS)
def test_choosing_a_plugin_without_paddlenlp_exits_2_with_the_install_command(name, tmp_path):
    root = tmp_path / "runs"
    result = seqlab(
        "fit",
        "--recipe",
        ROOT / "recipes/reverse_digits_zoo.yaml",
        "--runs",
        name,
        "--trainer.root_dir",
        root,
        hide_paddlenlp=True,
    )
    assert result.returncode == 2, result.stderr
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr  # no traceback
    assert lines[0].endswith(f"'{name}' needs paddlenlp, which is not installed; install it with: {HINT}.")
    assert not root.exists()


def test_a_broken_paddlenlp_is_named_with_its_error(tmp_path):
    # A paddlenlp that is installed but fails to import (as 2.8.1 does with today's aistudio-sdk)
    fake = tmp_path / "site" / "paddlenlp"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError(\"cannot import name 'download' from 'aistudio_sdk'\")\n")
    code = (
        f"import sys; sys.path.insert(0, {str(tmp_path / 'site')!r}); "
        "from seqlab.cli import main; "
        f"raise SystemExit(main(['fit', '--recipe', {str(ROOT / 'recipes/reverse_digits_zoo.yaml')!r}, "
        f"'--runs', 'pnlp_llama', '--trainer.root_dir', {str(tmp_path / 'runs')!r}]))"
    )
    result = python(code)
    assert result.returncode == 2, result.stderr
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, result.stderr
    assert "installed but does not import" in lines[0] and "aistudio_sdk" in lines[0] and HINT in lines[0]
    assert not (tmp_path / "runs").exists()


# ---------------------------------------------------------------- need paddlenlp
def _perturbed(name, seed=0, **init_args):
    """A model whose weights are all moved off their init, so no zero weight hides a mismatch."""
    paddle.seed(seed)
    model = MODELS.get(name)(**init_args)
    model.eval()
    rng = np.random.default_rng(seed)
    with paddle.no_grad():
        for p in model.parameters():
            p.set_value(p.numpy() + 0.1 * rng.standard_normal(p.shape).astype(np.float32))
    return model


def _stepwise(model, tokens, state=None):
    state = model.init_state(tokens.shape[0]) if state is None else state
    logits = []
    for t in range(tokens.shape[1]):
        step_logits, state = model.step(tokens[:, t], state)
        logits.append(step_logits.numpy())
    return np.stack(logits, axis=1), state


@needs_paddlenlp
@pytest.mark.parametrize("name", PLUGINS)
def test_step_gives_the_forward_logits(name):
    model = _perturbed(name)
    tokens = make_tokens(model.vocab_size, batch_size=3, seq_len=64)
    with paddle.no_grad():
        expected = model(tokens).numpy()
        got, _ = _stepwise(model, tokens)
    assert got.shape == expected.shape == (3, 64, model.vocab_size)
    assert np.abs(got - expected).max() <= 1e-5, np.abs(got - expected).max()


@needs_paddlenlp
@pytest.mark.parametrize("name", PLUGINS)
def test_step_leaves_the_given_state_usable(name):
    # Generation may branch from one state (e.g. two continuations of one prompt).
    model = _perturbed(name)
    tokens = make_tokens(model.vocab_size, batch_size=2, seq_len=9)
    with paddle.no_grad():
        _, state = _stepwise(model, tokens[:, :8])
        first, _ = model.step(tokens[:, 8], state)
        again, _ = model.step(tokens[:, 8], state)
    np.testing.assert_array_equal(first.numpy(), again.numpy())


@needs_paddlenlp
def test_mamba_time_major_scan_matches_paddlenlp_loop():
    tokens = make_tokens(12, batch_size=2, seq_len=40)
    results = []
    for fast_scan in (True, False):
        model = _perturbed("pnlp_mamba", fast_scan=fast_scan)
        model.train()
        logits = model(tokens)
        (logits * logits).mean().backward()
        grads = {n: p.grad.numpy() for n, p in model.named_parameters()}
        results.append((logits.numpy(), grads))
    (fast, fast_grads), (loop, loop_grads) = results
    assert np.abs(fast - loop).max() <= 1e-5
    assert fast_grads.keys() == loop_grads.keys()
    for name, grad in loop_grads.items():
        scale = np.abs(grad).max() + 1e-12
        assert np.abs(fast_grads[name] - grad).max() / scale <= 1e-4, name


@needs_paddlenlp
def test_llama_details():
    model = MODELS.get("pnlp_llama")()
    decay = {id(p) for p in model.param_groups()["decay"]}
    assert id(model.lm.lm_head.weight) in decay  # PaddleNLP's head is not an nn.Linear
    assert model.state_size(100) == 2 * 2 * 100 * 32  # keys and values, 2 layers, C = 32
    with pytest.raises(ValueError, match="max_len=16"):
        MODELS.get("pnlp_llama")(max_len=16)(make_tokens(12, seq_len=17))


@needs_paddlenlp
def test_mamba_state_is_constant():
    model = MODELS.get("pnlp_mamba")()
    assert model.state_size(100) == model.state_size(10_000) == 3 * 64 * (4 + 16)


@needs_paddlenlp
def test_fit_and_test_both_plugins_from_a_recipe(tmp_path):
    recipe = tmp_path / "tiny_zoo.yaml"
    recipe.write_text(yaml.safe_dump(TINY))
    root = tmp_path / "runs"
    fit = seqlab("fit", "--recipe", recipe, "--trainer.root_dir", root)
    assert fit.returncode == 0, fit.stderr[-2000:]
    metrics = {name: json.loads((root / "tiny_zoo" / name / "metrics.json").read_text()) for name in PLUGINS}
    assert metrics["pnlp_llama"]["params"] == 30_624 and metrics["pnlp_mamba"]["params"] == 30_272
    assert all(name in (root / "tiny_zoo/report.md").read_text() for name in PLUGINS)
    # Re-testing the saved checkpoint in a new process reproduces fit's own final test.
    test = seqlab("test", "--recipe", recipe, "--trainer.root_dir", root)
    assert test.returncode == 0, test.stderr[-2000:]
    for name, result in json.loads(test.stdout).items():
        assert result["masked_acc"] == pytest.approx(metrics[name]["masked_acc"], abs=1e-6), name
