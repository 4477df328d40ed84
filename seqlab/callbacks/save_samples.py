"""Write ``samples.txt``: what the tested model predicts on a few held-out examples."""

from __future__ import annotations

from seqlab.callback import Callback
from seqlab.evaluation import inference_mode
from seqlab.io import atomic_write_text, check_name


class SaveSamples(Callback):
    """Write ``run_dir/samples.txt`` with ``task.describe(model)`` of the tested weights.

    The report shows these predictions without loading any model. Only rank 0 writes; a task
    that describes nothing leaves no file.

    Args:
        num_samples: examples to describe.
        filename: file name inside the run folder.
    """

    def __init__(self, num_samples: int = 2, filename: str = "samples.txt"):
        self.num_samples = int(num_samples)
        self.filename = check_name(filename, "SaveSamples's filename")

    def on_test_end(self, trainer, task, model, metrics) -> None:
        if not trainer.is_global_zero:
            return
        with inference_mode(model):
            text = task.describe(model, num_samples=self.num_samples)
        if text:
            atomic_write_text(trainer.run_dir / self.filename, text.rstrip("\n") + "\n")
