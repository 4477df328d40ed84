"""Data helpers shared by tasks: padding variable-length samples, and token files on disk.

- :func:`pad_batch` is seed 003's ``collate_fn``: sequences of different lengths become one
  rectangular batch, inputs padded with a pad id and labels with -100, which no loss or metric
  counts. :func:`shift` turns such a pair into a next-token :class:`seqlab.task.Batch`.
- :func:`open_token_file` opens a 1-D token array (raw ``.bin`` or ``.npy``) with ``np.memmap``:
  the operating system reads only the pages a window touches, so a corpus larger than memory
  works. :func:`read_windows` cuts windows out of it; :func:`check_ids` checks ids against a vocabulary.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from seqlab.errors import SeqlabError
from seqlab.metrics import IGNORE_INDEX

#: Item types of a raw ``.bin`` token file.
TOKEN_DTYPES = {"uint16": np.uint16, "uint32": np.uint32}


# ---------------------------------------------------------------------------- padding
def pad_batch(seqs: Sequence[Sequence[int]], pad_value: int, label_pad: int = IGNORE_INDEX):
    """Pad sequences to the longest one: ``(input_ids, labels)``, each int64 ``[B, L]``.

    As seed 003's ``collate_fn``: ``input_ids`` is padded with ``pad_value`` (a token the model
    can read) and ``labels`` with ``label_pad`` (-100: counted in no loss and no metric).
    """
    seqs = [np.asarray(s, dtype=np.int64).ravel() for s in seqs]
    if not seqs:
        raise ValueError("pad_batch needs at least one sequence")
    length = max(len(s) for s in seqs)
    input_ids = np.full((len(seqs), length), pad_value, dtype=np.int64)
    labels = np.full((len(seqs), length), label_pad, dtype=np.int64)
    for row, seq in enumerate(seqs):
        input_ids[row, : len(seq)] = seq
        labels[row, : len(seq)] = seq
    return input_ids, labels


def shift(input_ids: np.ndarray, labels: np.ndarray, mask: np.ndarray | None = None):
    """Next-token rows from padded ones: inputs ``ids[:, :-1]``, targets ``labels[:, 1:]``.

    This is the shift seed 003's ``calculate_acc`` makes (``logit[..., :-1]`` against
    ``labels[..., 1:]``). ``mask`` (optional) is over the targets, bool ``[B, L-1]``.
    """
    from seqlab.task import Batch

    return Batch(inputs=np.ascontiguousarray(input_ids[:, :-1]), targets=np.ascontiguousarray(labels[:, 1:]), mask=mask)


def check_ids(ids: np.ndarray, vocab_size: int, where: str, fix: str) -> None:
    """Every id of ``ids`` (labels -100 aside) is in ``[0, vocab_size)``, or one sentence saying which is not."""
    counted = ids[ids != IGNORE_INDEX]
    if counted.size == 0:
        return
    low, high = int(counted.min()), int(counted.max())
    if high >= vocab_size or low < 0:
        bad = high if high >= vocab_size else low
        raise SeqlabError(
            f"{where} holds token id {bad}, outside the vocabulary of {vocab_size} (ids 0..{vocab_size - 1}); {fix}"
        )


# ---------------------------------------------------------------------------- token files
def open_token_file(path: str | Path, dtype: str = "uint16") -> np.ndarray:
    """The 1-D token array of ``path``, memory-mapped read-only; never read whole.

    ``.npy`` files carry their own dtype (any integer type); other files are raw arrays of
    ``dtype`` (``uint16`` or ``uint32``), as nanoGPT's ``.bin`` files and ``seqlab tokenize``'s.
    """
    path = Path(path)
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise SeqlabError(
            f"token file '{path}' {what}; pass a .bin or .npy file of token ids "
            "(make one from text with `seqlab tokenize --input FILE.txt --output data.bin`)."
        )
    size = path.stat().st_size
    if size == 0:
        raise SeqlabError(f"token file '{path}' is empty; pass a file of token ids (seqlab tokenize makes one).")
    if path.suffix == ".npy":
        try:
            tokens = np.load(path, mmap_mode="r")
        except (ValueError, OSError) as exc:
            raise SeqlabError(
                f"token file '{path}' is not a readable .npy array ({exc}); write it with numpy.save."
            ) from None
        if tokens.ndim != 1 or not np.issubdtype(tokens.dtype, np.integer):
            raise SeqlabError(
                f"token file '{path}' holds a {tokens.ndim}-D {tokens.dtype} array; a token file is "
                "1-D integers (numpy.save(path, ids.ravel().astype(np.uint16)))."
            )
        return tokens
    if dtype not in TOKEN_DTYPES:
        raise SeqlabError(f"token file dtype {dtype!r} is not one of {', '.join(TOKEN_DTYPES)}; fix the task's dtype.")
    item = np.dtype(TOKEN_DTYPES[dtype]).itemsize
    if size % item:
        raise SeqlabError(
            f"token file '{path}' has {size:,} bytes, not a whole number of {dtype} items "
            f"({item} bytes each); is its dtype really {dtype}?"
        )
    return np.memmap(path, dtype=TOKEN_DTYPES[dtype], mode="r")


def read_windows(tokens: np.ndarray, starts: np.ndarray, length: int) -> np.ndarray:
    """int64 ``[len(starts), length]``: the windows ``tokens[s : s + length]``.

    Slicing a memmap reads just the pages under each window.
    """
    return np.stack([np.asarray(tokens[s : s + length]) for s in starts]).astype(np.int64)


def epoch_positions(step: int, batch_size: int, num_items: int, order) -> np.ndarray:
    """The items of training step ``step`` when data is an endless run of epochs.

    Epoch ``e`` visits every item once, in ``order(e)`` (a permutation of ``range(num_items)``);
    step ``s`` takes positions ``s * batch_size .. (s + 1) * batch_size - 1`` of that run, so a
    batch is a function of (seed, step) alone and a resumed run continues at the same place.
    ``order`` is called once per epoch the step touches.
    """
    positions = step * batch_size + np.arange(batch_size)
    epochs, offsets = positions // num_items, positions % num_items
    out = np.empty(batch_size, dtype=np.int64)
    for epoch in np.unique(epochs):
        here = epochs == epoch
        out[here] = np.asarray(order(int(epoch)))[offsets[here]]
    return out
