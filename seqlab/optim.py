"""Optimizer configuration: AdamW over the model's parameter groups, and the uniform protocol's rules."""

from __future__ import annotations

from dataclasses import dataclass

import paddle

from seqlab.errors import SeqlabError


@dataclass
class AdamW:
    """AdamW settings. Weight decay applies to the model's ``decay`` group only (the seed's rule).

    Args:
        lr: Peak learning rate. LR-schedule callbacks scale from it.
        weight_decay: Decoupled weight decay of the ``decay`` parameter group.
        betas: Adam's (beta1, beta2).
        eps: Adam's epsilon (the seed: 1e-8).
        decay_all: Apply ``weight_decay`` to every parameter, ignoring the model's groups, as
            ``paddle.optimizer.AdamW(parameters=model.parameters())`` does (the seed's
            Transformer and LSTM notebooks, with Paddle's default decay of 0.01).
        decay_matrices: Apply ``weight_decay`` to exactly the matrices, ignoring the model's
            groups: the parameters with at least two dimensions larger than 1 (Linear and
            embedding weights, the LSTM's gate matrices, RWKV-7's low-rank factors); none to
            vectors (biases, norm scales, RWKV-7's ``[1, 1, C]`` mixing and offset vectors).
            It is the same rule for any model, which is what ``protocol: uniform`` needs.
    """

    lr: float = 1e-3
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    decay_all: bool = False
    decay_matrices: bool = False

    def __post_init__(self) -> None:
        beta1, beta2 = self.betas
        problems = [
            (self.lr > 0, "lr", "must be > 0"),
            (self.weight_decay >= 0, "weight_decay", "must be >= 0"),
            (0 <= beta1 < 1 and 0 <= beta2 < 1, "betas", "must both be in [0, 1)"),
            (self.eps > 0, "eps", "must be > 0"),
        ]
        if self.decay_all and self.decay_matrices:
            raise SeqlabError(
                "decay_all and decay_matrices are both true; choose one rule in trainer.optimizer "
                "(decay_all: every parameter; decay_matrices: the matrices only)."
            )
        for ok, name, rule in problems:
            if not ok:
                raise SeqlabError(
                    f"{name} {rule}, got {getattr(self, name)}; fix trainer.optimizer.{name} "
                    "in the recipe or on the command line."
                )

    def build(self, model) -> paddle.optimizer.AdamW:
        groups = model.param_groups()
        if self.decay_all:
            groups = {"decay": groups["decay"] + groups["no_decay"], "no_decay": []}
        elif self.decay_matrices:
            every = groups["decay"] + groups["no_decay"]
            groups = {
                "decay": [p for p in every if is_matrix(p)],
                "no_decay": [p for p in every if not is_matrix(p)],
            }
        param_groups = [
            {"params": groups["decay"], "weight_decay": self.weight_decay},
            {"params": groups["no_decay"], "weight_decay": 0.0},
        ]
        param_groups = [g for g in param_groups if g["params"]]
        return paddle.optimizer.AdamW(
            learning_rate=self.lr,
            parameters=param_groups,
            beta1=self.betas[0],
            beta2=self.betas[1],
            epsilon=self.eps,
            weight_decay=self.weight_decay,
        )


def is_matrix(param) -> bool:
    """At least two dimensions larger than 1: a weight matrix (or a stack of them), not a vector
    stored as ``[1, 1, C]``."""
    return sum(int(d) > 1 for d in param.shape) >= 2


#: ``protocol: uniform``: the same optimizer rules for every run (each keeps its own ``lr``): AdamW
#: with these settings, global-norm clipping at ``UNIFORM_CLIP``, and a cosine schedule after a
#: linear warmup over ``UNIFORM_WARMUP`` of the steps, down to ``UNIFORM_MIN_LR``. The
#: Transformer's and the LSTM's seed rules (Paddle's decay 0.01 on every parameter, no clipping,
#: a constant rate) give way to these; seqlab.recipe applies them.
UNIFORM_OPTIMIZER = {
    "weight_decay": 0.1,
    "decay_all": False,
    "decay_matrices": True,
    "betas": [0.9, 0.999],
    "eps": 1e-8,
}
UNIFORM_CLIP = 1.0
UNIFORM_WARMUP = 0.05
UNIFORM_MIN_LR = 1e-6
UNIFORM_DESCRIPTION = (
    "every run under the same optimizer rules, each at its own lr: AdamW (betas 0.9, 0.999), decay 0.1 "
    "on the matrices only (parameters with two or more dimensions larger than 1), global-norm "
    f"clipping at {UNIFORM_CLIP}, linear warmup over {UNIFORM_WARMUP:.0%} of the steps then cosine to "
    f"{UNIFORM_MIN_LR:g}; tested on its best checkpoint"
)
