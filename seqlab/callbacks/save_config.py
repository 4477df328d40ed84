"""Write the run's resolved config beside it, as LightningCLI's ``SaveConfigCallback`` does."""

from __future__ import annotations

import yaml

from seqlab.callback import Callback
from seqlab.io import atomic_write_text, check_name
from seqlab.ops.settings import run_settings


class SaveConfig(Callback):
    """Write ``run_dir/config.yaml``: the resolved config, itself a recipe for this run.

    Written when the fit starts, after every check passed and a resumed checkpoint was loaded,
    so a rejected configuration leaves no file behind. Only rank 0 writes.

    Args:
        filename: file name inside the run folder.
    """

    def __init__(self, filename: str = "config.yaml"):
        self.filename = check_name(filename, "SaveConfig's filename")

    def on_fit_start(self, trainer, task, model) -> None:
        if trainer.is_global_zero and trainer.config:
            # The run settings (SEQLAB_WKV7, ...) chose the kernels; they are recorded, not
            # re-applied: a recipe reading this file ignores them.
            text = yaml.safe_dump({**trainer.config, "settings": run_settings()}, sort_keys=False)
            atomic_write_text(trainer.run_dir / self.filename, text)
