"""``seqlab export``: a run's checkpoint as static graphs for Paddle Inference or ONNX.

The library side is :mod:`seqlab.export`; this module picks the run and its weights as
``seqlab predict`` does and says what it wrote.
"""

from __future__ import annotations

import sys
from typing import Optional

from jsonargparse import ArgumentParser

from seqlab.commands import Command, Invocation, at_least
from seqlab.commands._runs import add_recipe_flags, dump_config, instantiate, parse_runs
from seqlab.errors import SeqlabError


def flags(parser: ArgumentParser) -> None:
    add_recipe_flags(parser, print_config=False)
    parser.add_argument(
        "--format",
        metavar="paddle|onnx",
        type=Optional[str],
        default=None,
        help="paddle: Paddle Inference (paddle.jit.save); onnx: ONNX through paddle2onnx (the `onnx` extra).",
    )
    parser.add_argument(
        "--output", metavar="DIR", type=Optional[str], default=None, help="The folder to write (it must not exist)."
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="Replace --output if it holds an earlier export (or is empty)."
    )
    parser.add_argument(
        "--max_len",
        metavar="N",
        type=Optional[int],
        default=None,
        help="Positions of the exported KV cache of a model without a position table (transformer_modern; "
        "default 256). The seed Transformer's cache holds its own max_len.",
    )


def _vocabulary(task, vocab_size: int) -> dict:
    """The vocabulary as a server needs it: its size, and each id's text where the task renders one."""
    vocab: dict = {"size": vocab_size}
    decode = getattr(task, "decode", None)
    if callable(decode) and vocab_size <= 4096:
        try:
            tokens = [decode([i]) for i in range(vocab_size)]
        except SeqlabError:
            tokens = None
        if tokens and not any("\ufffd" in t for t in tokens):  # byte-level ids are not characters alone
            vocab["tokens"] = tokens
    stop = getattr(task, "stop_token", None)
    if stop is not None:
        vocab["stop_token"] = int(stop)
    return vocab


def export(call: Invocation) -> int:
    import yaml

    from seqlab.checkpoint import load_tested_weights
    from seqlab.export import check_format, check_output, export_model, file_sha256
    from seqlab.registry import MODELS, TASKS

    args = call.args
    if not args.format:
        raise SeqlabError("seqlab export needs --format paddle or --format onnx.")
    check_format(args.format)
    if not args.output:
        raise SeqlabError("seqlab export needs --output DIR, the folder to write.")
    check_output(args.output, args.overwrite)  # before any work: an existing folder stops here
    at_least("--max_len", args.max_len, 1)
    runs = parse_runs(call.name, args, call.overrides)
    if len(runs.specs) != 1:
        names = ", ".join(s.name for s in runs.specs)
        raise SeqlabError(f"seqlab export writes one run; pass --runs NAME with one of: {names}.")
    spec = runs.specs[0]
    task, model, trainer = instantiate(spec)
    weights = load_tested_weights(trainer.checkpoint_dir, task, model, spec.config.ckpt_path, trainer.test_checkpoint)
    config = yaml.safe_load(dump_config(spec))
    info = {
        "model": {"name": MODELS.name_of(type(model)), **config["model"]},
        "task": {"name": TASKS.name_of(type(task)), **config["task"]},
        "vocabulary": _vocabulary(task, int(getattr(model, "vocab_size", task.vocab_size))),
        "run": {"recipe": str(args.recipe), "experiment": runs.experiment, "run": spec.name},
        "checkpoint": {
            "path": str(weights.path),
            "alias": weights.alias,
            "step": weights.step,
            "sha256": file_sha256(weights.path),
        },
    }
    meta = export_model(model, args.output, args.format, info, cache_len=args.max_len, overwrite=args.overwrite)
    graphs = ", ".join(f"{name} (max |logit diff| {g['max_abs_diff']:.1e})" for name, g in meta["graphs"].items())
    sys.stdout.write(
        f"== {spec.name}: {weights.path.name} (step {weights.step:,}) -> {args.output} [{args.format}]: {graphs}\n"
    )
    return 0


COMMAND = Command(
    "write a run's checkpoint (default: the weights its fit tested) as static graphs for Paddle Inference "
    "or ONNX (--format paddle|onnx --output DIR): `full` (tokens -> logits) and `step` (one token + state), "
    "each checked against the model's own logits",
    flags,
    export,
    run_options=True,
)
