"""Generation: continue token prompts with a trained model, greedily or by sampling.

::

    from seqlab.generate import generate
    generate(model, [1, 2, 3, 4, 5, 10], max_new_tokens=6, stop_token=11)   # -> [5, 4, 3, 2, 1, 11]

Models with RNN mode (``init_state`` / ``step``: every built-in model) decode one token at a
time in constant work per token for recurrent models, against a preallocated KV cache for
Transformers. Other models fall back to running ``forward`` on the growing context, which
costs a whole forward pass per new token. Both give the same tokens (the step check of
``seqlab.testing`` holds ``step`` to ``forward``'s logits).

Several prompts are decoded together, in lockstep: at step ``t`` every sequence feeds its own
``t``-th token (a prompt token, or one it generated), so prompts of different lengths need no
padding. Sequences whose prompt is shorter start generating earlier.

Sampling draws from a numpy generator seeded by ``seed`` (logits in float64), so a seed gives
the same tokens on every run and platform, whatever Paddle's own random state is.

This module imports no trainer, callbacks or CLI; :func:`generate_text` uses only a task's
``encode`` / ``decode``.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator, Sequence

import numpy as np
import paddle

from seqlab.errors import SeqlabError
from seqlab.evaluation import inference_mode

__all__ = [
    "generate",
    "generate_stream",
    "generate_text",
    "has_rnn_mode",
    "init_state_for",
    "sample_next",
]


def has_rnn_mode(model_or_cls) -> bool:
    """Whether a model has RNN mode: ``init_state(batch_size)`` and ``step(tokens, state)``."""
    return all(callable(getattr(model_or_cls, name, None)) for name in ("init_state", "step"))


def init_state_for(model, batch_size: int, max_len: int):
    """``model.init_state(batch_size)``, passing ``max_len`` too where the model takes it (a KV
    cache sized for the tokens to come)."""
    if "max_len" in inspect.signature(model.init_state).parameters:
        return model.init_state(batch_size, max_len=max_len)
    return model.init_state(batch_size)


def generate_stream(
    model,
    prompts: Sequence[int] | Sequence[Sequence[int]],
    max_new_tokens: int,
    temperature: float = 0.0,
    top_k: int | None = None,
    seed: int | None = None,
    stop_token: int | None = None,
    use_step: bool | None = None,
) -> Iterator[tuple[int, int]]:
    """Yield ``(sequence_index, token_id)`` for each new token, as soon as it is chosen.

    Args:
        model: A seqlab model (``forward(int64[B, T]) -> [B, T, V]``).
        prompts: One prompt (a list of token ids) or several (a list of lists). Each needs at
            least one token.
        max_new_tokens: Most new tokens per sequence.
        temperature: 0 picks the most likely token (greedy, the default); above 0 samples from
            ``softmax(logits / temperature)``.
        top_k: When sampling, only from the ``top_k`` most likely tokens (None: all).
        seed: Seed of the sampler (None: a fresh, unseeded one).
        stop_token: A sequence stops after producing this token (it is yielded).
        use_step: True: RNN mode (fails if the model has none); False: re-run ``forward`` on
            the growing context; None (default): RNN mode when the model has it.

    Tokens of different sequences interleave in the order they are produced. The model runs in
    eval mode without gradients, and is put back in its previous mode afterwards.
    """
    batch = _as_batch(prompts)
    _check_args(model, batch, max_new_tokens, temperature, top_k)
    if use_step is None:
        use_step = has_rnn_mode(model)
    elif use_step and not has_rnn_mode(model):
        raise SeqlabError(
            f"{type(model).__name__} has no RNN mode (init_state and step); "
            f"pass use_step=None or False to generate with forward()."
        )
    if max_new_tokens == 0:
        return
    rng = np.random.default_rng(seed)
    lengths = [len(p) for p in batch]
    total = max(lengths) + max_new_tokens - 1  # tokens the model reads, for the longest sequence
    # tokens[i, t]: what sequence i feeds at step t (its prompt, then what it generated).
    tokens = np.zeros((len(batch), total), dtype=np.int64)
    for i, prompt in enumerate(batch):
        tokens[i, : len(prompt)] = prompt
    produced = [0] * len(batch)
    done = [False] * len(batch)
    with inference_mode(model):  # eval mode, no gradients, the model's mode back after
        if use_step:
            state = init_state_for(model, len(batch), total)
        # forward() sees the whole context, so it can skip the steps where every sequence
        # is still reading its prompt; RNN mode must read every token.
        first = 0 if use_step else min(lengths) - 1
        for t in range(first, total):
            if use_step:
                logits, state = model.step(paddle.to_tensor(tokens[:, t]), state)
            else:
                logits = model(paddle.to_tensor(tokens[:, : t + 1]))[:, t]
            logits = logits.numpy().astype(np.float64)
            for i in range(len(batch)):
                if done[i] or t < lengths[i] - 1:
                    continue  # finished, or still reading its prompt
                token = sample_next(logits[i], temperature, top_k, rng)
                produced[i] += 1
                if t + 1 < total:
                    tokens[i, t + 1] = token
                done[i] = produced[i] == max_new_tokens or token == stop_token
                yield i, token
            if all(done):
                return


def generate(
    model,
    prompts: Sequence[int] | Sequence[Sequence[int]],
    max_new_tokens: int,
    temperature: float = 0.0,
    top_k: int | None = None,
    seed: int | None = None,
    stop_token: int | None = None,
    use_step: bool | None = None,
) -> list[int] | list[list[int]]:
    """The new tokens of each prompt: a list for one prompt, a list of lists for several.

    Same arguments as :func:`generate_stream`, which it collects.
    """
    single = _is_single(prompts)
    outs: list[list[int]] = [[] for _ in _as_batch(prompts)]
    for i, token in generate_stream(model, prompts, max_new_tokens, temperature, top_k, seed, stop_token, use_step):
        outs[i].append(token)
    return outs[0] if single else outs


def generate_text(
    model,
    task,
    prompts: str | Sequence[str],
    max_new_tokens: int,
    temperature: float = 0.0,
    top_k: int | None = None,
    seed: int | None = None,
    stop_token: int | None = None,
) -> str | list[str]:
    """:func:`generate` on text, through ``task.encode`` / ``task.decode``.

    ``stop_token`` defaults to the task's ``stop_token`` attribute, if it has one (digit
    reversal: ``#``). Returns the continuation of each prompt, as text.
    """
    for method in ("encode", "decode"):
        if not callable(getattr(task, method, None)):
            raise SeqlabError(
                f"task {type(task).__name__} cannot render text (it has no "
                f"{method}()); generate from token ids with seqlab.generate.generate."
            )
    single = isinstance(prompts, str)
    texts = [prompts] if single else list(prompts)
    if stop_token is None:
        stop_token = getattr(task, "stop_token", None)
    outs = generate(model, [task.encode(t) for t in texts], max_new_tokens, temperature, top_k, seed, stop_token)
    decoded = [task.decode(ids) for ids in outs]
    return decoded[0] if single else decoded


def sample_next(
    logits: np.ndarray, temperature: float = 0.0, top_k: int | None = None, rng: np.random.Generator | None = None
) -> int:
    """One token id from ``logits`` ``[V]``: the argmax at temperature 0, else a draw from
    ``softmax(logits / temperature)`` restricted to the ``top_k`` largest (ties: lowest ids)."""
    if temperature == 0:
        return int(np.argmax(logits))
    z = np.asarray(logits, dtype=np.float64) / temperature
    if top_k is not None and top_k < z.size:
        keep = np.argsort(-z, kind="stable")[:top_k]
        masked = np.full_like(z, -np.inf)
        masked[keep] = z[keep]
        z = masked
    p = np.exp(z - z.max())
    p /= p.sum()
    rng = rng if rng is not None else np.random.default_rng()
    return int(rng.choice(z.size, p=p))


def _is_single(prompts) -> bool:
    return len(prompts) > 0 and not isinstance(prompts[0], (list, tuple, np.ndarray))


def _as_batch(prompts) -> list[list[int]]:
    if isinstance(prompts, (str, bytes)):
        raise SeqlabError(
            "generate takes token ids; encode text first (task.encode) or use seqlab.generate.generate_text."
        )
    if len(prompts) == 0:
        raise SeqlabError("generate needs at least one prompt.")
    batch = [list(prompts)] if _is_single(prompts) else [list(p) for p in prompts]
    for i, prompt in enumerate(batch):
        if not prompt:
            raise SeqlabError(f"prompt {i} is empty; every prompt needs at least one token.")
    return [[int(t) for t in prompt] for prompt in batch]


def _check_args(model, batch, max_new_tokens, temperature, top_k) -> None:
    if max_new_tokens < 0:
        raise SeqlabError(f"max_new_tokens must be at least 0, got {max_new_tokens}.")
    if temperature < 0:
        raise SeqlabError(f"temperature must be 0 (greedy) or positive, got {temperature}.")
    if top_k is not None and top_k < 1:
        raise SeqlabError(f"top_k must be at least 1 (or None for all tokens), got {top_k}.")
    vocab = getattr(model, "vocab_size", None)
    if vocab is not None:
        for i, prompt in enumerate(batch):
            bad = [t for t in prompt if not 0 <= t < vocab]
            if bad:
                raise SeqlabError(f"prompt {i} has token id {bad[0]}, outside the model's vocabulary 0..{vocab - 1}.")
