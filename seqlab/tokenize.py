"""Any file of text to a byte-level token file for the ``token_file`` task (``seqlab tokenize``).

Byte-level means one token per byte of the file, ids 0..255 (vocabulary 256): no tokenizer to
train or download, any language or encoding works, and bits per byte is the loss in bits. The
output is a raw array of little-endian uint16 ids (nanoGPT's ``.bin`` format), so a file made by
another tokenizer with up to 65,536 ids is read the same way.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from seqlab.errors import SeqlabError
from seqlab.io import atomic_write

VOCAB_SIZE = 256
DTYPE = np.dtype("<u2")
_CHUNK = 1 << 24  # bytes read at a time: memory stays flat for any input size


def tokenize_file(input_path: str | Path, output_path: str | Path) -> int:
    """Write ``input_path``'s bytes as uint16 token ids to ``output_path``; returns the token count.

    The output is written to a temporary file and renamed, so a failure leaves no partial file.
    """
    source, target = Path(input_path), Path(output_path)
    if not source.is_file():
        raise SeqlabError(
            f"--input '{source}' {'is a folder' if source.is_dir() else 'does not exist'}; pass a text file."
        )
    if source.stat().st_size == 0:
        raise SeqlabError(f"--input '{source}' is empty; pass a file with some text.")
    if not target.parent.is_dir():
        raise SeqlabError(f"--output '{target}': its folder '{target.parent}' does not exist; create it first.")
    if target.resolve() == source.resolve():
        raise SeqlabError(f"--output '{target}' is the input file; choose another name, e.g. data.bin.")
    count = 0

    def write(tmp: Path) -> None:  # streamed: the text is never read whole
        nonlocal count
        with open(source, "rb") as src, open(tmp, "wb") as dst:
            while chunk := src.read(_CHUNK):
                np.frombuffer(chunk, dtype=np.uint8).astype(DTYPE).tofile(dst)
                count += len(chunk)

    atomic_write(target, write)
    return count
