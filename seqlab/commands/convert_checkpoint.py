"""``seqlab convert-checkpoint OLD NEW --trust``: an old pickle checkpoint to the safetensors format."""

from __future__ import annotations

import sys

from jsonargparse import ArgumentParser

from seqlab.commands import Command, Invocation


def flags(parser: ArgumentParser) -> None:
    parser.add_argument("old", metavar="OLD", type=str, help="The old checkpoint (.pdckpt, format 1).")
    parser.add_argument("new", metavar="NEW", type=str, help="The file to write (.safetensors); it must not exist.")
    parser.add_argument(
        "--trust",
        action="store_true",
        help="Confirm that you trust OLD: it is unpickled, which runs any code it carries.",
    )


def convert(call: Invocation) -> int:
    from seqlab.checkpoint import convert_legacy_checkpoint

    ckpt = convert_legacy_checkpoint(call.args.old, call.args.new, trust=call.args.trust)
    sys.stdout.write(f"wrote {call.args.new} (checkpoint format {ckpt['format_version']}, step {ckpt['step']})\n")
    return 0


COMMAND = Command(
    "convert an old pickle checkpoint (.pdckpt, format 1) to .safetensors; loading it runs any code "
    "it carries, so convert only files you trust",
    flags,
    convert,
)
