"""The optimizer's state in a checkpoint, keyed by the model's structural parameter names.

Paddle keys an optimizer's accumulators by auto-generated parameter names, which differ between
the process that saved a checkpoint and the one that resumes it; this module translates.
"""

from __future__ import annotations

import warnings
from typing import Any


def optimizer_state(optimizer, model) -> dict[str, Any]:
    """The optimizer's state keyed by the model's structural names (``e.weight``).

    Paddle keys accumulators by auto-generated parameter names (``embedding_2.w_0_moment1_0``)
    that depend on how many layers the process created before, so they differ between the
    process that saved and the one that resumes. Paddle requires the LR scheduler's state
    (``LR_Scheduler``) beside them, so it is kept as is.
    """
    by_name = {p.name: key for key, p in model.state_dict().items()}
    names = sorted(by_name, key=len, reverse=True)  # longest first: no prefix ambiguity
    state: dict[str, Any] = {"accumulators": {}, "other": {}}
    for key, value in optimizer.state_dict().items():
        owner = next((n for n in names if key.startswith(n + "_")), None)
        if owner is None:
            state["other"][key] = value
        else:
            state["accumulators"].setdefault(by_name[owner], {})[key[len(owner) :]] = value
    return state


def load_optimizer_state(optimizer, model, state: dict[str, Any]) -> None:
    """Inverse of :func:`optimizer_state` for this process's parameter names.

    Values may be Paddle tensors or numpy arrays (as :func:`seqlab.checkpoint.format.load_checkpoint` returns them).
    """
    params = model.state_dict()
    restored = dict(state.get("other", {}))
    for structural, accumulators in state.get("accumulators", {}).items():
        name = params[structural].name
        for suffix, value in accumulators.items():
            restored[name + suffix] = value
    with warnings.catch_warnings():
        # LinearWarmup keeps its inner scheduler's state under an extra key, which Paddle's base
        # scheduler reports as "unused" before LinearWarmup reads it.
        warnings.filterwarnings("ignore", message="There are some unused values")
        optimizer.set_state_dict(restored)


def expected_accumulators(optimizer) -> set[str] | None:
    """The accumulators Paddle's Adam/AdamW keeps per parameter (``moment1``, ``moment2``,
    ``beta1_pow_acc``, ``beta2_pow_acc``, and ``moment2_max`` with amsgrad), without the ``_N``
    index Paddle appends; None for an optimizer that does not declare them."""
    attrs = ("_moment1_acc_str", "_moment2_acc_str", "_beta1_pow_acc_str", "_beta2_pow_acc_str")
    names = [getattr(optimizer, attr, None) for attr in attrs]
    if not all(isinstance(name, str) for name in names):
        return None
    if getattr(optimizer, "_amsgrad", False) and isinstance(getattr(optimizer, "_moment2_acc_max_str", None), str):
        names.append(optimizer._moment2_acc_max_str)
    return set(names)


def accumulator_name(suffix: str) -> str:
    """``_moment1_0`` -> ``moment1``: a saved suffix without its leading ``_`` and Paddle's ``_N`` index."""
    head, _, index = suffix[1:].rpartition("_")
    return head if index.isdigit() and head else suffix[1:]
