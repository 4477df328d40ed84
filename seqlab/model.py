"""The model contract: tokens in, logits out.

A seqlab model is a ``paddle.nn.Layer`` subclass of :class:`Model`. Its typed ``__init__``
arguments, with defaults and a docstring, *are* its configuration: the CLI reads the signature,
so ``--model.init_args.n_layer 4`` works for any model without extra code.
"""

from __future__ import annotations

from typing import Any

import paddle

from seqlab._init_args import record_init_args
from seqlab.text import one_line_summary

nn = paddle.nn


class Model(nn.Layer):
    """Base class of every seqlab model.

    Subclasses implement ``forward(tokens: int64[B, T]) -> float32[B, T, vocab_size]`` and must be
    causal: the logits at position t depend only on tokens 0..t.

    Optional extensions:
      * ``param_groups()``: choose which parameters get weight decay (default: the seed's rule).
      * ``init_state(batch_size)`` / ``step(tokens, state)``: RNN mode for constant-memory decoding.
      * ``state_size(seq_len)``: floats an inference state or cache needs per sequence.
    """

    #: One line shown by ``seqlab models``; defaults to the first line of the class docstring.
    description: str = ""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        record_init_args(cls)  # so a run driven from Python can write its config.yaml

    def param_groups(self) -> dict[str, list[Any]]:
        """Split trainable parameters into ``{"decay": [...], "no_decay": [...]}``.

        The seed's rule: weight decay on the ``weight`` matrices of Linear and Embedding layers,
        none on norms, biases and free-standing vectors (token-shift mixes, decay offsets, LoRA
        factors created with ``create_parameter``). It is decided by layer type, not by name, so
        it does not depend on how a plugin names its attributes.
        """
        decay_ids = set()
        for layer in self.sublayers(include_self=True):
            if isinstance(layer, (nn.Linear, nn.Embedding)) and layer.weight is not None:
                decay_ids.add(id(layer.weight))
        groups: dict[str, list[Any]] = {"decay": [], "no_decay": []}
        for param in self.parameters():
            if param.stop_gradient:
                continue
            groups["decay" if id(param) in decay_ids else "no_decay"].append(param)
        return groups

    def num_parameters(self) -> int:
        """Number of trainable parameters (the figure the seed reports)."""
        return int(sum(int(p.numel()) for p in self.parameters() if not p.stop_gradient))

    def state_size(self, seq_len: int) -> int | None:
        """Floats of inference state (or KV cache) one sequence of ``seq_len`` tokens needs.

        ``None`` means "not reported". Recurrent models return a constant; attention models grow
        with ``seq_len``. The comparison report prints it beside accuracy, as Zoology does.
        """
        return None

    @classmethod
    def summary(cls) -> str:
        """The one-line description used by ``seqlab models``."""
        return one_line_summary(cls)
