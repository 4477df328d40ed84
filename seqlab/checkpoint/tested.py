"""The one way a run's weights are loaded for evaluation: resolve, read, check, set.

``Trainer._test_best`` (the final test of a fit), ``Trainer.validate``/``Trainer.test`` and
``seqlab predict`` all load weights through :func:`load_tested_weights`, so every path refuses a
checkpoint made for another model, task or architecture in the same words.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seqlab.checkpoint.format import LEGACY_SUFFIX, load_checkpoint
from seqlab.checkpoint.run_dir import ALIASES, BEST, resolve_ckpt_path, tested_weights
from seqlab.checkpoint.state import check_compatible
from seqlab.errors import SeqlabError
from seqlab.registry import MODELS, TASKS


@dataclass(frozen=True)
class TestedWeights:
    """The checkpoint whose weights a model now holds.

    Attributes:
        path: the checkpoint file.
        alias: ``best`` or ``last`` when the file was chosen by alias or rule; None for a path.
        step: the optimizer step it was saved at.
        meta: what its writer recorded beside it (e.g. the best checkpoint's monitored value).
    """

    __test__ = False  # not a pytest test class, despite its name

    path: Path
    alias: str | None
    step: int
    meta: dict[str, Any] = field(default_factory=dict)


def load_tested_weights(
    checkpoint_dir: str | os.PathLike,
    task,
    model,
    ckpt_path: str | None = None,
    rule: str = BEST,
    config: dict[str, Any] | None = None,
) -> TestedWeights:
    """Load a checkpoint of a run into ``model`` after checking that it fits; writes nothing.

    ``ckpt_path`` is ``last``, ``best`` (files in ``checkpoint_dir``) or a path. None (or empty) means the
    weights a finished fit is tested on, by the run's ``test_checkpoint`` ``rule``: ``best`` (the
    best checkpoint, else the last) or ``last``. The checkpoint must have been written for this
    model, task and architecture (and, given ``config``, the same model and task ``init_args``);
    otherwise :class:`SeqlabError` names the mismatch and the model is left unchanged.
    """
    checkpoint_dir = Path(checkpoint_dir)
    alias: str | None
    if not ckpt_path:
        path, alias = tested_weights(checkpoint_dir, rule)
        if not path.is_file():
            if any(checkpoint_dir.glob(f"*{LEGACY_SUFFIX}")):
                resolve_ckpt_path(alias, checkpoint_dir)  # raises, naming the convert command for the old file
            raise SeqlabError(f"no checkpoint in '{checkpoint_dir}'; train this run first (seqlab fit).")
    else:
        path = resolve_ckpt_path(ckpt_path, checkpoint_dir)
        alias = ckpt_path if ckpt_path in ALIASES else None
    ckpt = load_checkpoint(path)
    check_compatible(
        ckpt, path, MODELS.name_of(type(model)), TASKS.name_of(type(task)), model.state_dict(), config=config
    )
    model.set_state_dict(ckpt["model"])
    return TestedWeights(path=Path(path), alias=alias, step=int(ckpt["step"]), meta=dict(ckpt.get("meta") or {}))
