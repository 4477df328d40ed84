"""Language modelling on your own corpus: next-token prediction on a token file (seed 001's get_batch).

The file is a 1-D array of token ids: raw ``.bin`` (uint16 or uint32, as nanoGPT's) or ``.npy``.
``seqlab tokenize`` makes a byte-level one (vocabulary 256) from any text. It is memory-mapped,
never read whole, so a corpus larger than memory works.

Layout: the last ``val_fraction`` of the file is held out. Training windows of ``seq_len + 1``
tokens start anywhere in the first part, so none crosses into the held-out part; each step's
starts are drawn from ``(seed, step)`` alone. The held-out part is scored on consecutive windows
(each of its tokens predicted at most once), spread evenly when there are more than
``eval_windows``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import numpy as np
import paddle

from seqlab.data import check_ids, open_token_file, read_windows
from seqlab.errors import SeqlabError
from seqlab.evaluation import EVAL_CHUNK_ROWS, logits
from seqlab.metrics import BitsPerByte, CrossEntropy, Perplexity
from seqlab.summary import Chart, Column, ReportSpec
from seqlab.task import Batch, Task

_TRAIN_STREAM = 0x746F6B6E  # keeps this task's random stream apart from other tasks'
_SAMPLE_CHECK = 1 << 16  # tokens checked against the vocabulary when the file is opened


class TokenFile(Task):
    """Next-token prediction on a token file (.bin or .npy), e.g. one made by ``seqlab tokenize``.

    Metrics: ``loss`` (cross-entropy, nats), ``perplexity`` and, for byte-level files
    (``vocab_size`` 256), ``bits_per_byte``, on held-out windows at the end of the file.

    Args:
        path: The token file: raw ``.bin`` of ``dtype`` items, or ``.npy`` (its own dtype).
            Relative paths are from the folder you run seqlab in.
        dtype: Item type of a ``.bin`` file: ``uint16`` (what ``seqlab tokenize`` writes) or ``uint32``.
        vocab_size: Token ids are below this: 256 for byte-level files. Models take it unless
            their recipe sets their own.
        seq_len: Tokens the model reads per row; a row is a window of ``seq_len + 1`` tokens.
        batch_size: Windows per training batch.
        val_fraction: The last fraction of the file, held out for validation and the final test.
        eval_windows: Most held-out windows scored (spread evenly when the held-out part has more).
    """

    vocab_size = 256
    primary_metric, primary_mode = "perplexity", "min"

    def __init__(
        self,
        path: str = "examples/data/dhammapada.bin",
        dtype: Literal["uint16", "uint32"] = "uint16",
        vocab_size: int = 256,
        seq_len: int = 128,
        batch_size: int = 32,
        val_fraction: float = 0.1,
        eval_windows: int = 128,
    ):
        for name, value in (
            ("vocab_size", vocab_size),
            ("seq_len", seq_len),
            ("batch_size", batch_size),
            ("eval_windows", eval_windows),
        ):
            if value < 1:
                raise SeqlabError(f"token_file: {name} must be at least 1, got {value}; fix the task's init_args.")
        if not 0.0 < val_fraction < 1.0:
            raise SeqlabError(
                f"token_file: val_fraction must be between 0 and 1, got {val_fraction}; "
                "it is the fraction of the file held out for evaluation (e.g. 0.1)."
            )
        self.path, self.dtype, self.vocab_size = str(path), dtype, int(vocab_size)
        self.seq_len, self.batch_size = seq_len, batch_size
        self.val_fraction, self.eval_windows = val_fraction, eval_windows
        self.tokens = open_token_file(path, dtype)
        n, window = len(self.tokens), seq_len + 1
        self.split = int(n * (1.0 - val_fraction))  # tokens [0, split) train, [split, n) are held out
        if self.split < window or n - self.split < window:
            part = "training part" if self.split < window else "held-out part"
            raise SeqlabError(
                f"token file '{path}' is too short: {n:,} tokens leave its {part} with fewer than a window of "
                f"seq_len + 1 = {window} tokens (val_fraction {val_fraction}); lower seq_len or use a longer file."
            )
        # A wrong dtype (or vocabulary) usually shows at once: check the first tokens now.
        self._check(np.asarray(self.tokens[:_SAMPLE_CHECK]).astype(np.int64), "its first tokens")
        self.seed = 0

    # ----------------------------------------------------------------- data
    def window_starts(self, step: int) -> np.ndarray:
        """Start of each training window of ``step``: a function of (seed, step), all before the split."""
        rng = np.random.default_rng([_TRAIN_STREAM, self.seed % (1 << 63), int(step)])
        return rng.integers(0, self.split - self.seq_len, size=self.batch_size)  # start + seq_len + 1 <= split

    def train_batch(self, step: int) -> Batch:
        rows = self._windows(self.window_starts(step), f"step {step}'s windows")
        return Batch(paddle.to_tensor(rows[:, :-1]), paddle.to_tensor(rows[:, 1:]))

    def eval_starts(self) -> np.ndarray:
        """Starts of the held-out windows: consecutive (each token predicted once), at most ``eval_windows``."""
        count = (len(self.tokens) - 1 - self.split) // self.seq_len
        starts = self.split + self.seq_len * np.arange(count)
        if count > self.eval_windows:
            starts = starts[np.linspace(0, count - 1, self.eval_windows).round().astype(int)]
        return starts

    def val_batches(self) -> Iterator[Batch]:
        starts = self.eval_starts()
        for i in range(0, len(starts), EVAL_CHUNK_ROWS):
            rows = self._windows(starts[i : i + EVAL_CHUNK_ROWS], "its held-out windows")
            yield Batch(rows[:, :-1], rows[:, 1:])

    def _windows(self, starts: np.ndarray, what: str) -> np.ndarray:
        rows = read_windows(self.tokens, starts, self.seq_len + 1)
        self._check(rows, what)
        return rows

    def _check(self, ids: np.ndarray, what: str) -> None:
        check_ids(
            ids,
            self.vocab_size,
            f"token file '{self.path}' ({what}, read as {self._dtype_name})",
            "set the task's vocab_size above the largest id, or fix its dtype if the file was written with another.",
        )

    @property
    def _dtype_name(self) -> str:
        return str(self.tokens.dtype) if self.path.endswith(".npy") else self.dtype

    # ----------------------------------------------------------- what is scored, and how
    @property
    def byte_level(self) -> bool:
        return self.vocab_size == 256

    # ------------------------------------------------- text, for seqlab predict (byte-level files)
    def encode(self, text: str) -> list[int]:
        """A prompt's token ids: its UTF-8 bytes (a byte-level file's tokens, as ``seqlab tokenize`` makes them)."""
        if not self.byte_level:
            raise SeqlabError(
                f"token_file: {Path(self.path).name} has vocab_size {self.vocab_size}, not a byte-level "
                "file (256), so a text prompt has no token ids here; tokenize your text with seqlab tokenize."
            )
        return list(text.encode("utf-8"))

    def decode(self, ids) -> str:
        """Text of byte tokens (UTF-8; an incomplete or invalid sequence shows as U+FFFD)."""
        return bytes(int(t) for t in ids).decode("utf-8", errors="replace")

    def metrics(self):
        return [CrossEntropy(), Perplexity()] + ([BitsPerByte()] if self.byte_level else [])

    def report_spec(self) -> ReportSpec:
        scored = len(self.eval_starts()) * self.seq_len
        name = Path(self.path).name
        what = (
            f"Loss is the mean next-token cross-entropy (nats) over {scored:,} held-out tokens of "
            f"`{name}` (its last {self.val_fraction:.0%}); perplexity is exp(loss)"
        )
        what += "; bits/byte is loss / ln 2, each token being one byte." if self.byte_level else "."
        return ReportSpec(
            primary_metric="perplexity",
            primary_mode="min",
            primary_label="perplexity",
            metrics=[m.name for m in self.metrics()],
            columns=[Column(m.name, m.header, m.format, m.digits) for m in self.metrics()],
            description=what,
            samples_note=(
                "Each tested model on held-out text: its most likely next token at each "
                "position given the true text before it (`^` marks a wrong one), then a "
                "greedy continuation of a held-out prompt."
            ),
            chart=Chart(
                "perplexity",
                "Perplexity",
                f"test perplexity ({scored:,} held-out tokens)",
                "perplexity",
                [["perplexity", "perplexity"]],
                fallback_title="test perplexity (held-out tokens)",
            ),
        )

    def describe(self, model, num_samples: int = 1, generate: int = 64) -> str:
        """Held-out windows: the text, the model's teacher-forced predictions, the errors; then a
        greedy continuation of the first half of the window beside the true one."""
        starts = self.eval_starts()[: max(1, num_samples)]
        rows = self._windows(starts, "its held-out windows")
        preds = logits(model, rows[:, :-1]).argmax(axis=-1)
        width = 64 if self.byte_level else 16  # tokens per line
        blocks = []
        for n, (start, row, pred) in enumerate(zip(starts, rows, preds), start=1):
            gold = row[1:]
            ok = pred == gold
            lines = [f"sample {n}: held-out text from token {start + 1:,} of {len(self.tokens):,}"]
            for a in range(0, len(gold), width):
                part = slice(a, a + width)
                lines += [
                    f"text : {self._render(gold[part])}",
                    f"pred : {self._render(pred[part])}",
                    (
                        "diff : "
                        + "".join(
                            (" " if good else "^") * len(self._render([g])) for g, good in zip(gold[part], ok[part])
                        )
                    ).rstrip(),
                ]
            lines.append(f"accuracy: {int(ok.sum())}/{len(ok)} ({ok.mean():.1%})")
            prompt = row[: len(row) // 2]
            more = min(generate, len(row) - len(prompt))
            lines += [
                f"prompt   : {self._render(prompt[-width:])}",
                f"true     : {self._render(row[len(prompt) : len(prompt) + more])}",
                f"generated: {self._render(self._greedy(model, prompt, more))}",
            ]
            blocks.append("\n".join(lines))
        return "\n\n".join(blocks)

    def _greedy(self, model, prompt: np.ndarray, count: int) -> np.ndarray:
        """``count`` tokens after ``prompt``, each the most likely given the last ``seq_len`` before it."""
        tokens = list(prompt)
        for _ in range(count):
            context = np.asarray(tokens[-self.seq_len :], dtype=np.int64)[None]
            tokens.append(int(logits(model, context)[0, -1].argmax()))
        return np.asarray(tokens[len(prompt) :])

    def _render(self, ids) -> str:
        """One cell per token: bytes as characters (newline ↵, tab →, other unprintables ·),
        other tokens as ids of one width, so a diff line lines up under them."""
        if not self.byte_level:
            digits = len(str(self.vocab_size - 1))
            return "".join(f"{int(t):>{digits}} " for t in ids)
        return "".join(chr(t) if 32 <= t < 127 else {10: "↵", 9: "→"}.get(int(t), "·") for t in ids)
