"""``seqlab tokenize --input FILE.txt --output data.bin``: a text file as a byte-level token file."""

from __future__ import annotations

import sys

from jsonargparse import ArgumentParser

from seqlab.commands import Command, Invocation
from seqlab.tokenize import VOCAB_SIZE, tokenize_file


def flags(parser: ArgumentParser) -> None:
    parser.add_argument(
        "--input",
        metavar="FILE",
        type=str,
        required=True,
        help="The text file (any encoding: its bytes are the tokens).",
    )
    parser.add_argument(
        "--output", metavar="FILE", type=str, required=True, help="The token file to write, e.g. data.bin."
    )


def tokenize(call: Invocation) -> int:
    count = tokenize_file(call.args.input, call.args.output)
    sys.stdout.write(f"wrote {count:,} tokens (byte-level, vocabulary {VOCAB_SIZE}, uint16) to {call.args.output}\n")
    return 0


COMMAND = Command(
    "write a text file's bytes as a token file for the token_file task (uint16 ids, vocabulary 256)", flags, tokenize
)
