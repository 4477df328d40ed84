"""``seqlab predict``: a run's checkpoint continues prompts, streaming each new token."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

from jsonargparse import ArgumentParser

from seqlab.commands import Command, Invocation, at_least
from seqlab.commands._runs import add_recipe_flags, instantiate, parse_runs
from seqlab.errors import SeqlabError


def flags(parser: ArgumentParser) -> None:
    add_recipe_flags(parser, print_config=False)
    parser.add_argument(
        "--prompt", metavar="TEXT", type=str, action="append", default=[], help="A prompt to continue (repeatable)."
    )
    parser.add_argument(
        "--prompts_file",
        metavar="FILE",
        type=str,
        action="append",
        default=[],
        help="A UTF-8 file of prompts, one per line.",
    )
    parser.add_argument(
        "--max_new_tokens", metavar="N", type=int, default=64, help="Most tokens to add to each prompt."
    )
    parser.add_argument(
        "--temperature", metavar="T", type=float, default=0.0, help="Sampling temperature; 0 is greedy."
    )
    parser.add_argument(
        "--top_k", metavar="K", type=Optional[int], default=None, help="Sample from the K likeliest tokens only."
    )
    parser.add_argument(
        "--seed", metavar="S", type=Optional[int], default=None, help="Seed of the sampling (repeatable output)."
    )


def _prompts(args) -> list[str]:
    prompts = list(args.prompt)
    for path in args.prompts_file:
        try:
            prompts += [ln.rstrip("\n") for ln in Path(path).read_text(encoding="utf-8").splitlines() if ln.strip()]
        except (OSError, UnicodeDecodeError) as exc:
            raise SeqlabError(
                f"--prompts_file {path}: cannot read it ({exc.__class__.__name__}); pass a UTF-8 "
                "text file with one prompt per line."
            ) from None
    if not prompts:
        raise SeqlabError("seqlab predict needs --prompt TEXT (repeatable) or --prompts_file FILE.")
    return prompts


def predict(call: Invocation) -> int:
    from seqlab.checkpoint import load_tested_weights
    from seqlab.generate import generate_stream

    args = call.args
    prompts = _prompts(args)
    max_new = at_least("--max_new_tokens", args.max_new_tokens, 1)
    temperature = at_least("--temperature", args.temperature, 0.0)
    top_k = at_least("--top_k", args.top_k, 1)
    seed = at_least("--seed", args.seed, 0)
    runs = parse_runs(call.name, args, call.overrides)
    for spec in runs.specs:
        task, model, trainer = instantiate(spec)
        encode, decode = getattr(task, "encode", None), getattr(task, "decode", None)
        if encode is None or decode is None:
            raise SeqlabError(
                f"task {type(task).__name__} does not render text (no encode/decode), so "
                "seqlab predict cannot read prompts for it."
            )
        ids = [encode(prompt) for prompt in prompts]  # a character outside the vocabulary stops here
        weights = load_tested_weights(
            trainer.checkpoint_dir, task, model, spec.config.ckpt_path, trainer.test_checkpoint
        )
        sys.stdout.write(f"== {spec.name}: {weights.path.name} (step {weights.step:,})\n")
        for prompt, prompt_ids in zip(prompts, ids):
            sys.stdout.write(prompt)
            sys.stdout.flush()
            new, shown = [], ""
            for _, token in generate_stream(
                model, prompt_ids, max_new, temperature, top_k, seed, getattr(task, "stop_token", None)
            ):
                new.append(token)
                text = decode(new)
                if not text.endswith("\ufffd"):  # streamed as soon as a whole character is chosen
                    sys.stdout.write(text[len(shown) :])
                    sys.stdout.flush()
                    shown = text
            text = decode(new)
            verdict = task.judge(prompt, text)
            sys.stdout.write(text[len(shown) :] + (f"   {verdict}" if verdict else "") + "\n")
    return 0


COMMAND = Command(
    "continue --prompt TEXT (repeatable) or --prompts_file FILE with a run's checkpoint (default: the "
    "weights its fit tested), streaming the tokens; the task judges each continuation it can",
    flags,
    predict,
    run_options=True,
)
