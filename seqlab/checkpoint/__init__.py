"""Checkpoints: one safetensors file per checkpoint, written atomically, never unpickled.

One module per job, each importing only those above it in this list:

- :mod:`~seqlab.checkpoint.format`: the file format (the dict as tensors + JSON), the schema and
  pickle checks, :func:`atomic_save` and :func:`load_checkpoint`;
- :mod:`~seqlab.checkpoint.optimizer_state`: the optimizer's state keyed by structural names;
- :mod:`~seqlab.checkpoint.run_dir`: run folders and the ``last``/``best`` aliases;
- :mod:`~seqlab.checkpoint.legacy`: converting a trusted format-1 pickle;
- :mod:`~seqlab.checkpoint.state`: what a Trainer's checkpoint holds, :func:`check_compatible` and
  :func:`check_resume` (what a resume must keep);
- :mod:`~seqlab.checkpoint.tested`: :func:`load_tested_weights`, the one way evaluation loads weights.

Every name below is importable from ``seqlab.checkpoint`` itself.
"""

from seqlab.checkpoint.format import (
    CONVERT_COMMAND,
    FORMAT_VERSION,
    LEGACY_SUFFIX,
    METADATA_KEY,
    REQUIRED_KEYS,
    SHARED_KEY,
    SUFFIX,
    atomic_save,
    load_checkpoint,
    read_metadata,
    split_tensors,
)
from seqlab.checkpoint.legacy import convert_legacy_checkpoint
from seqlab.checkpoint.optimizer_state import load_optimizer_state, optimizer_state
from seqlab.checkpoint.run_dir import (
    ALIASES,
    BEST,
    LAST,
    best_or_last,
    checkpoint_file,
    claim_run_dir,
    prepare_run_dir,
    release_run_dir,
    resolve_ckpt_path,
    tested_weights,
)
from seqlab.checkpoint.state import (
    check_compatible,
    check_resume,
    restore_trainer,
    trainer_checkpoint,
    weights_checkpoint,
)
from seqlab.checkpoint.tested import TestedWeights, load_tested_weights

# Re-exported, and looked up here by restore_trainer, so that replacing
# ``seqlab.checkpoint.restore_rng_state`` (as the resume tests do) changes what a resume restores.
from seqlab.rng import capture_rng_state, restore_rng_state

__all__ = [
    "ALIASES",
    "BEST",
    "CONVERT_COMMAND",
    "FORMAT_VERSION",
    "LAST",
    "LEGACY_SUFFIX",
    "METADATA_KEY",
    "REQUIRED_KEYS",
    "SHARED_KEY",
    "SUFFIX",
    "TestedWeights",
    "atomic_save",
    "best_or_last",
    "capture_rng_state",
    "check_compatible",
    "check_resume",
    "checkpoint_file",
    "claim_run_dir",
    "convert_legacy_checkpoint",
    "load_checkpoint",
    "load_optimizer_state",
    "load_tested_weights",
    "optimizer_state",
    "prepare_run_dir",
    "release_run_dir",
    "read_metadata",
    "resolve_ckpt_path",
    "restore_rng_state",
    "restore_trainer",
    "split_tensors",
    "tested_weights",
    "trainer_checkpoint",
    "weights_checkpoint",
]
