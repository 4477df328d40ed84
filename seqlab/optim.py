"""Optimizer configuration: AdamW over the model's parameter groups."""

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
    """

    lr: float = 1e-3
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    decay_all: bool = False

    def __post_init__(self) -> None:
        beta1, beta2 = self.betas
        problems = [
            (self.lr > 0, "lr", "must be > 0"),
            (self.weight_decay >= 0, "weight_decay", "must be >= 0"),
            (0 <= beta1 < 1 and 0 <= beta2 < 1, "betas", "must both be in [0, 1)"),
            (self.eps > 0, "eps", "must be > 0"),
        ]
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
