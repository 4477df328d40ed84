"""Write ``metrics.json``, the run's one-file summary that reports and scripts read."""

from __future__ import annotations

from seqlab.callback import Callback
from seqlab.io import atomic_write_text
from seqlab.machine import describe as describe_machine
from seqlab.registry import MODELS
from seqlab.summary import RunSummary


class SaveSummary(Callback):
    """Write ``run_dir/metrics.json`` (schema: :class:`seqlab.summary.RunSummary`) after the test.

    It holds the test metrics of the tested checkpoint beside the run's facts: parameters,
    steps, throughput, wall time, state size, which checkpoint was tested and why, the
    precision that actually ran, and the task's ``report_spec()`` (how the report shows its
    metrics). Only rank 0 writes.
    """

    def on_test_end(self, trainer, task, model, metrics) -> None:
        if trainer.is_global_zero:
            summary = build_summary(trainer, model, metrics)
            atomic_write_text(trainer.run_dir / RunSummary.FILENAME, summary.to_json())


def build_summary(trainer, model, metrics: dict[str, float]) -> RunSummary:
    counters, tested = trainer.counters, trainer.tested
    meta = tested.get("meta") or {}
    best = tested.get("checkpoint") == "best"
    seq_len = trainer.seq_len or int(trainer.task.train_batch(0).inputs.shape[1])
    state_size = model.state_size(seq_len)
    precision = trainer.precision
    return RunSummary(
        run=trainer.run_name,
        experiment=trainer.experiment,
        model=MODELS.name_of(type(model)) or type(model).__name__,
        params=model.num_parameters(),
        steps=trainer.global_step,
        tokens_per_s=counters["train_tokens"] / counters["train_time_s"] if counters["train_time_s"] else 0.0,
        train_time_s=counters["train_time_s"],
        wall_time_s=trainer.wall_time_s(),
        tested_checkpoint=tested.get("checkpoint", "last"),
        tested_step=int(tested.get("step", trainer.global_step)),
        precision=precision.effective,
        precision_requested=precision.requested if precision.requested != precision.effective else None,
        skipped_steps=int(counters["skipped_steps"]),
        protocol=trainer.config.get("protocol"),
        state_size=None if state_size is None else int(state_size),
        best_step=int(meta.get("best_step", tested.get("step"))) if best else None,
        best_value=float(meta["best_value"]) if best and "best_value" in meta else None,
        best_monitor=meta.get("monitor") if best and "best_value" in meta else None,
        machine=describe_machine(),
        val={key.split("/", 1)[-1]: float(value) for key, value in trainer.last_val_metrics.items()},
        report=trainer.task.report_spec(),
        # Bare metric names (masked_acc, loss, ...) are what reports and scripts read.
        test={key.split("/", 1)[-1]: float(value) for key, value in metrics.items()},
    )
