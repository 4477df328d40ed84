"""The shared model test suite: the checks every seqlab model plugin should pass.

Use it from any test runner (plain ``assert`` inside, no pytest dependency)::

    from seqlab.testing import run_model_checks
    from my_plugin import GRU

    def test_gru():
        run_model_checks(GRU)                # defaults: also checks documented_params
        run_model_checks(GRU, n_layer=1)     # any init args (parameter count not checked)

Or pick single checks: :func:`assert_output_shape`, :func:`assert_causal`,
:func:`assert_param_count`, :func:`assert_one_step_lowers_loss`,
:func:`assert_save_load_roundtrip`, and for models with RNN mode (``init_state``/``step``)
:func:`assert_step_matches_forward`. Each builds its model with ``paddle.seed(seed)`` and uses a
small batch (B = 2, T = 24; the step check T = 256), so the whole suite takes a second or two
per model.
"""

from __future__ import annotations

import os
import tempfile

import numpy as np
import paddle

from seqlab.generate import has_rnn_mode, init_state_for
from seqlab.registry import MODELS

F = paddle.nn.functional

BATCH_SIZE = 2
SEQ_LEN = 24
STEP_SEQ_LEN = 256  # tokens fed one at a time by assert_step_matches_forward


def _check(condition, message: str) -> None:
    # Not `assert`: plugin authors run these checks, and `python -O` would strip asserts.
    if not condition:
        raise AssertionError(message)


def _name(model_cls) -> str:
    return MODELS.name_of(model_cls) or model_cls.__name__


def _build(model_cls, seed: int, init_args: dict):
    paddle.seed(seed)
    model = model_cls(**init_args)
    model.eval()  # no dropout: the checks compare outputs exactly
    return model


def _vocab_size(model) -> int:
    return int(getattr(model, "vocab_size", 12))


def make_tokens(vocab_size: int, batch_size: int = BATCH_SIZE, seq_len: int = SEQ_LEN, seed: int = 0):
    """A fixed int64 ``[batch_size, seq_len]`` batch of token ids, independent of Paddle's RNG."""
    rng = np.random.default_rng(seed)
    return paddle.to_tensor(rng.integers(0, vocab_size, size=(batch_size, seq_len)), dtype="int64")


def _perturb(model, seed: int, scale: float = 0.1):
    """Add small noise to every parameter so zero-initialised projections cannot hide a leak.

    RWKV-7 starts with zero output and FFN value weights, so at init position t sees only token t
    and a causality check would pass vacuously.
    """
    rng = np.random.default_rng(seed)
    with paddle.no_grad():
        for p in model.parameters():
            noise = rng.standard_normal(p.shape).astype(np.float32) * scale
            p.set_value(p.numpy() + noise)


def assert_output_shape(model_cls, seed: int = 0, **init_args):
    """``forward(int64[B, T])`` returns float32 ``[B, T, vocab_size]``."""
    model = _build(model_cls, seed, init_args)
    V = _vocab_size(model)
    logits = model(make_tokens(V))
    expected = [BATCH_SIZE, SEQ_LEN, V]
    _check(
        list(logits.shape) == expected,
        f"{_name(model_cls)}: forward(int64{[BATCH_SIZE, SEQ_LEN]}) returned shape "
        f"{list(logits.shape)}, expected {expected} ([batch, time, vocab_size]).",
    )
    _check(logits.dtype == paddle.float32, f"{_name(model_cls)}: logits have dtype {logits.dtype}, expected float32.")
    _check(bool(paddle.isfinite(logits).all()), f"{_name(model_cls)}: logits contain inf or nan.")


def assert_causal(model_cls, positions=None, atol: float = 1e-6, seed: int = 0, seq_len: int = SEQ_LEN, **init_args):
    """Changing token t never changes the logits at positions < t.

    Checked at ``positions`` (default: first, middle and last) after perturbing the weights (see
    :func:`_perturb`). Also checks the change is visible at some position >= t, so the check
    cannot pass because the model ignores its input. ``seq_len`` sets the batch's length.
    """
    model = _build(model_cls, seed, init_args)
    _perturb(model, seed)
    V = _vocab_size(model)
    tokens = make_tokens(V, seq_len=seq_len)
    base = model(tokens).numpy()
    T = tokens.shape[1]
    for t in positions if positions is not None else (0, 1, T // 2, T - 1):
        changed = tokens.numpy().copy()
        changed[:, t] = (changed[:, t] + 1) % V
        out = model(paddle.to_tensor(changed)).numpy()
        leak = float(np.abs(out[:, :t] - base[:, :t]).max()) if t > 0 else 0.0
        _check(
            leak <= atol,
            f"{_name(model_cls)} is not causal: changing the token at position {t} changed the "
            f"logits at earlier positions by up to {leak:.3g} (tolerance {atol}).",
        )
        effect = float(np.abs(out[:, t:] - base[:, t:]).max())
        _check(
            effect > atol,
            f"{_name(model_cls)}: changing the token at position {t} changed no logits at "
            f"positions >= {t}; the model seems to ignore its input.",
        )


def assert_param_count(model_cls, **init_args):
    """At default settings the parameter count equals the class's ``documented_params``."""
    documented = getattr(model_cls, "documented_params", None)
    _check(
        documented is not None,
        f"{_name(model_cls)} has no `documented_params` class attribute; add "
        f"`documented_params: int = <count at default settings>`.",
    )
    model = _build(model_cls, 0, init_args)
    count = model.num_parameters()
    _check(
        count == documented,
        f"{_name(model_cls)} has {count:,} parameters at these settings but documents "
        f"{documented:,} (documented_params).",
    )


def _next_token_loss(model, tokens):
    logits = model(tokens[:, :-1])
    V = logits.shape[-1]
    return F.cross_entropy(logits.reshape([-1, V]), tokens[:, 1:].reshape([-1]))


def assert_one_step_lowers_loss(model_cls, lr: float = 3e-3, seed: int = 0, **init_args):
    """One AdamW step on a fixed batch lowers the next-token loss on that batch.

    ``lr`` 3e-3: Adam's first step moves every parameter by about ``lr``, small enough to be a
    descent step for every in-tree model (up to the 877k-parameter LSTM), large enough to show.
    """
    model = _build(model_cls, seed, init_args)
    model.train()
    tokens = make_tokens(_vocab_size(model), seq_len=SEQ_LEN + 1)
    params = [p for p in model.parameters() if not p.stop_gradient]
    opt = paddle.optimizer.AdamW(learning_rate=lr, parameters=params, weight_decay=0.0)
    before = _next_token_loss(model, tokens)
    _check(bool(paddle.isfinite(before)), f"{_name(model_cls)}: initial loss is {before.item()}.")
    before.backward()
    n_grads = sum(1 for p in params if p.grad is not None)
    _check(n_grads > 0, f"{_name(model_cls)}: backward produced no parameter gradients.")
    opt.step()
    opt.clear_grad()
    with paddle.no_grad():
        after = _next_token_loss(model, tokens)
    _check(
        after.item() < before.item(),
        f"{_name(model_cls)}: one AdamW step (lr={lr}) on a fixed batch did not lower its loss "
        f"({before.item():.5f} -> {after.item():.5f}).",
    )


def assert_save_load_roundtrip(model_cls, seed: int = 0, **init_args):
    """The model's weights through a seqlab checkpoint file (safetensors, as ``fit`` writes and
    ``test`` reads it) into a fresh instance give identical logits."""
    from seqlab.checkpoint import atomic_save, load_checkpoint, weights_checkpoint

    model = _build(model_cls, seed, init_args)
    _perturb(model, seed)  # so a fresh instance's own init cannot match by accident
    tokens = make_tokens(_vocab_size(model))
    expected = model(tokens).numpy()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.safetensors")
        atomic_save(weights_checkpoint(model), path)
        fresh = _build(model_cls, seed + 1, init_args)
        result = fresh.set_state_dict(load_checkpoint(path)["model"])
    if isinstance(result, tuple) and len(result) == 2:
        missing, unexpected = result
        _check(
            not missing and not unexpected,
            f"{_name(model_cls)}: loading its own state dict reported missing keys {missing} "
            f"and unexpected keys {unexpected}.",
        )
    got = fresh(tokens).numpy()
    diff = float(np.abs(got - expected).max())
    _check(
        diff == 0.0,
        f"{_name(model_cls)}: logits after a save/load round trip differ by up to {diff:.3g}; "
        f"some state is not in state_dict() (or is not restored by set_state_dict).",
    )


def _state_tensors(state, seen: set[int] | None = None):
    """The tensors in a state: nested lists, tuples, dicts, and the attributes of objects such as
    PaddleNLP's ``MambaCache`` (each object once)."""
    seen = set() if seen is None else seen
    if isinstance(state, paddle.Tensor):
        yield state
        return
    if id(state) in seen:
        return
    seen.add(id(state))
    if isinstance(state, (list, tuple)):
        parts = state
    elif isinstance(state, dict):
        parts = state.values()
    else:
        parts = vars(state).values() if hasattr(state, "__dict__") else ()
    for part in parts:
        yield from _state_tensors(part, seen)


def state_floats_per_sequence(state, batch_size: int) -> int:
    """Floats an RNN-mode state holds per sequence: its own ``floats_per_sequence()`` (a KV
    cache), else the floating tensors in it (nested lists, tuples, dicts) divided by the batch."""
    own = getattr(state, "floats_per_sequence", None)
    if callable(own):
        return int(own())
    total = sum(int(t.numel()) for t in _state_tensors(state) if t.is_floating_point())
    return total // batch_size


def assert_step_matches_forward(
    model_cls, seq_len: int | None = None, atol: float = 1e-5, seed: int = 0, batch_size: int = BATCH_SIZE, **init_args
) -> float:
    """Feeding a sequence token by token through ``step`` gives ``forward``'s logits.

    ``init_state`` (with ``max_len=seq_len`` where the model takes it), then ``step`` on each of
    ``seq_len`` tokens (default 256, or the model's ``max_len`` if smaller), under ``no_grad``,
    after perturbing the weights (see :func:`_perturb`). Every step's ``[B, V]`` logits must be
    within ``atol`` of ``forward``'s at that position, relative to the logits' scale when it
    exceeds 1. The final state must hold ``state_size(seq_len)`` floats per sequence, when the
    model reports one. Returns the largest difference seen.
    """
    model = _build(model_cls, seed, init_args)
    _perturb(model, seed)
    name = _name(model_cls)
    _check(has_rnn_mode(model), f"{name} has no RNN mode (init_state and step).")
    T = seq_len or min(STEP_SEQ_LEN, int(getattr(model, "max_len", STEP_SEQ_LEN)))
    V = _vocab_size(model)
    tokens = make_tokens(V, batch_size=batch_size, seq_len=T, seed=seed)
    worst = 0.0
    with paddle.no_grad():
        full = model(tokens).numpy()
        scale = max(1.0, float(np.abs(full).max()))
        state = init_state_for(model, batch_size, T)
        for t in range(T):
            logits, state = model.step(tokens[:, t], state)
            _check(
                list(logits.shape) == [batch_size, V],
                f"{name}.step returned logits of shape "
                f"{list(logits.shape)}, expected {[batch_size, V]} ([batch, vocab_size]).",
            )
            err = float(np.abs(logits.numpy() - full[:, t]).max())
            worst = max(worst, err)
            _check(
                err <= atol * scale,
                f"{name}: step() at position {t} gives logits {err:.3g} away "
                f"from forward()'s (tolerance {atol * scale:.3g}); RNN mode and forward disagree.",
            )
    expected = model.state_size(T) if callable(getattr(model, "state_size", None)) else None
    if expected is not None:
        held = state_floats_per_sequence(state, batch_size)
        _check(
            held == expected,
            f"{name}: after {T} steps its state holds {held:,} floats per "
            f"sequence but state_size({T}) reports {expected:,}.",
        )
    return worst


def run_model_checks(model_cls, **init_args):
    """Run every check on ``model_cls(**init_args)``; the parameter count only at defaults, the
    step check only for models with RNN mode."""
    assert_output_shape(model_cls, **init_args)
    assert_causal(model_cls, **init_args)
    if not init_args:
        assert_param_count(model_cls)
    assert_one_step_lowers_loss(model_cls, **init_args)
    assert_save_load_roundtrip(model_cls, **init_args)
    if has_rnn_mode(model_cls):
        assert_step_matches_forward(model_cls, **init_args)


#: Alias: ``check_model(MyModel)`` reads well in a plugin's own tests.
check_model = run_model_checks

__all__ = [
    "assert_causal",
    "assert_one_step_lowers_loss",
    "assert_output_shape",
    "assert_param_count",
    "assert_save_load_roundtrip",
    "assert_step_matches_forward",
    "check_model",
    "has_rnn_mode",
    "init_state_for",
    "make_tokens",
    "run_model_checks",
    "state_floats_per_sequence",
]
