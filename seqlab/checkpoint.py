"""Checkpoint files: safetensors with JSON metadata, written atomically, never unpickled.

A checkpoint is a nested dict (the Trainer's ``format_version``, ``step``, ``model``,
``optimizer``, ``callbacks``, ``task``, ``rng``, ``trainer``, ``config``, ``meta``, ...) whose
leaves are Paddle tensors, numpy arrays or JSON values. One file holds it, in the safetensors
format (https://github.com/huggingface/safetensors): an 8-byte length, a JSON header, raw tensor
bytes. Reading it parses JSON and copies bytes; nothing in the file can run, so a checkpoint
from anyone is safe to load. The layout:

* **Tensors.** Every tensor or array leaf is a safetensors tensor named by its JSON Pointer
  (RFC 6901) in the dict: ``/model/blocks.0.att.w``,
  ``/optimizer/accumulators/head.weight/_moment1_0``, ``/rng/python/state``. Keys are joined
  with ``/``; inside a key ``~`` is written ``~0`` and ``/`` is written ``~1``, so the dots of
  Paddle's parameter names stay readable and every name maps back to exactly one place. A list
  element's segment is its index.
* **Everything else** is one JSON document in the metadata under ``seqlab_checkpoint``: the same
  dict with each tensor leaf replaced by ``null``. Loading parses it and puts every tensor back
  at its pointer, which must name a ``null`` there. Floats round-trip exactly; NaN and infinities
  are written ``NaN``/``Infinity`` (as Python's json does); tuples come back as lists and numpy
  scalars as Python numbers.
* **Shared tensors.** One tensor object reachable under two names (Paddle's ``nn.LSTM`` lists
  each weight twice in its ``state_dict``) is stored once; the metadata key
  ``seqlab_shared_tensors`` maps each further pointer to the stored one (``{"/model/b": "/model/a"}``),
  and loading puts the same array at both places, as a pickle would.
* **Tensors come back as numpy arrays** (writable, C-ordered); ``Layer.set_state_dict`` and
  :func:`load_optimizer_state` take them as they are. Paddle's bfloat16 tensors are stored as
  they convert to numpy (uint16 bit patterns, safetensors dtype ``U16``) and Paddle reads such
  arrays back as bfloat16.
* **RNG states** are plain numbers and arrays (see :mod:`seqlab.rng`).

A file in the old format (format 1, ``*.pdckpt``, a ``paddle.save`` pickle) is recognised by its
first and last bytes and refused: unpickling it could run code. :func:`convert_legacy_checkpoint`
(``seqlab convert-checkpoint OLD NEW --trust``) converts one the user trusts.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import struct
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import paddle
import safetensors
import safetensors.numpy

from seqlab.errors import SeqlabError
from seqlab.io import atomic_write
from seqlab.ops.settings import run_settings
from seqlab.rng import (
    capture_rng_state,
    check_rng_state,
    numpy_legacy_state_to_plain,
    paddle_state_to_plain,
    python_state_to_plain,
    restore_rng_state,
)

log = logging.getLogger(__name__)

__all__ = [
    "ALIASES",
    "BEST",
    "FORMAT_VERSION",
    "LAST",
    "LEGACY_SUFFIX",
    "SUFFIX",
    "atomic_save",
    "best_or_last",
    "capture_rng_state",
    "check_compatible",
    "checkpoint_file",
    "claim_run_dir",
    "convert_legacy_checkpoint",
    "load_checkpoint",
    "load_optimizer_state",
    "optimizer_state",
    "prepare_run_dir",
    "resolve_ckpt_path",
    "restore_rng_state",
    "restore_trainer",
    "split_tensors",
    "tested_weights",
    "trainer_checkpoint",
    "weights_checkpoint",
]

FORMAT_VERSION = 2
SUFFIX = ".safetensors"
LEGACY_SUFFIX = ".pdckpt"  # format 1: a paddle.save pickle; refused, converted on request
LAST, BEST = "last", "best"  # the two checkpoints a run folder holds
ALIASES = (LAST, BEST)
METADATA_KEY = "seqlab_checkpoint"
SHARED_KEY = "seqlab_shared_tensors"
#: What the Trainer reads from every checkpoint without a default; the rest is optional.
REQUIRED_KEYS = ("format_version", "step", "model", "optimizer", "rng")
CONVERT_COMMAND = "seqlab convert-checkpoint"
_MAX_HEADER_BYTES = 100_000_000  # safetensors' own limit; seqlab's headers are a few KB
_STORABLE_KINDS = "biuf"  # numpy dtype kinds safetensors stores: bool, int, uint, float


def checkpoint_file(directory: str | os.PathLike, alias: str) -> Path:
    """``directory/<alias>.safetensors``: the one place checkpoint file names are built."""
    return Path(directory) / f"{alias}{SUFFIX}"


# ---------------------------------------------------------------- the dict <-> tensors + JSON


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def _unescape(segment: str) -> str:
    return segment.replace("~1", "/").replace("~0", "~")


def split_tensors(obj: Any) -> tuple[Any, dict[str, np.ndarray], dict[str, str]]:
    """``obj`` as (a JSON-able copy with ``None`` for every tensor, {pointer: array}, {pointer:
    pointer of the same tensor object stored earlier})."""
    tensors: dict[str, np.ndarray] = {}
    shared: dict[str, str] = {}
    return _split(obj, "", tensors, shared, {}), tensors, shared


def _split(obj: Any, pointer: str, tensors: dict, shared: dict, seen: dict[int, str]) -> Any:
    if isinstance(obj, dict):
        out = {}
        for key, value in obj.items():
            if not isinstance(key, str):
                raise TypeError(
                    f"checkpoint key {key!r} at '{pointer or '/'}' is not a string; "
                    "a checkpoint's dicts must have string keys (they become JSON)."
                )
            out[key] = _split(value, f"{pointer}/{_escape(key)}", tensors, shared, seen)
        return out
    if isinstance(obj, (list, tuple)):
        return [_split(value, f"{pointer}/{i}", tensors, shared, seen) for i, value in enumerate(obj)]
    if isinstance(obj, (paddle.Tensor, np.ndarray)):
        if id(obj) in seen:
            shared[pointer] = seen[id(obj)]
            return None
        seen[id(obj)] = pointer
        # .numpy() copies, yet beat np.from_dlpack: 1 us against 12 us per small tensor (a
        # checkpoint holds hundreds), and the copy of the 877k-parameter LSTM is ~1 ms.
        array = obj.numpy() if isinstance(obj, paddle.Tensor) else obj
        if array.dtype.kind not in _STORABLE_KINDS:
            raise TypeError(
                f"checkpoint array at '{pointer}' has dtype {array.dtype}; only bool, "
                "integer and float arrays can be stored."
            )
        # (np.ascontiguousarray would turn a 0-d array into shape [1])
        tensors[pointer] = array if array.flags.c_contiguous else array.copy(order="C")
        return None
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(
        f"checkpoint value at '{pointer}' is a {type(obj).__name__}; a checkpoint holds "
        "tensors, arrays, dicts with string keys, lists and JSON values."
    )


def _put(tree: dict, pointer: str, array: np.ndarray) -> bool:
    """Put ``array`` at ``pointer`` in ``tree``; False when the pointer names no ``null`` there."""
    if not isinstance(pointer, str) or not pointer.startswith("/"):
        return False
    segments = pointer[1:].split("/")
    node: Any = tree
    for i, segment in enumerate(segments):
        if isinstance(node, dict):
            key: Any = _unescape(segment)
            if _escape(key) != segment or key not in node:  # one spelling per place
                return False
        elif isinstance(node, list):
            if (
                not (segment.isascii() and segment.isdigit())
                or str(int(segment)) != segment
                or int(segment) >= len(node)
            ):
                return False
            key = int(segment)
        else:
            return False
        if i == len(segments) - 1:
            if node[key] is not None:  # also refuses two tensors for one place
                return False
            node[key] = array
            return True
        node = node[key]
    return False


# ---------------------------------------------------------------- optimizer state


def optimizer_state(optimizer, model) -> dict[str, Any]:
    """The optimizer's state keyed by the model's structural names (``e.weight``).

    Paddle keys accumulators by auto-generated parameter names (``embedding_2.w_0_moment1_0``)
    that depend on how many layers the process created before, so they differ between the
    process that saved and the one that resumes. Paddle requires the LR scheduler's state
    (``LR_Scheduler``) beside them, so it is kept as is.
    """
    by_name = {p.name: key for key, p in model.state_dict().items()}
    names = sorted(by_name, key=len, reverse=True)  # longest first: no prefix ambiguity
    state: dict[str, Any] = {"accumulators": {}, "other": {}}
    for key, value in optimizer.state_dict().items():
        owner = next((n for n in names if key.startswith(n + "_")), None)
        if owner is None:
            state["other"][key] = value
        else:
            state["accumulators"].setdefault(by_name[owner], {})[key[len(owner) :]] = value
    return state


def load_optimizer_state(optimizer, model, state: dict[str, Any]) -> None:
    """Inverse of :func:`optimizer_state` for this process's parameter names.

    Values may be Paddle tensors or numpy arrays (as :func:`load_checkpoint` returns them).
    """
    params = model.state_dict()
    restored = dict(state.get("other", {}))
    for structural, accumulators in state.get("accumulators", {}).items():
        name = params[structural].name
        for suffix, value in accumulators.items():
            restored[name + suffix] = value
    with warnings.catch_warnings():
        # LinearWarmup keeps its inner scheduler's state under an extra key, which Paddle's base
        # scheduler reports as "unused" before LinearWarmup reads it.
        warnings.filterwarnings("ignore", message="There are some unused values")
        optimizer.set_state_dict(restored)


# ---------------------------------------------------------------- save


def atomic_save(obj: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``obj`` to ``path`` as a safetensors checkpoint, atomically (see :mod:`seqlab.io`)."""
    tree, tensors, shared = split_tensors(obj)
    metadata = {METADATA_KEY: json.dumps(tree, separators=(",", ":"))}
    if shared:
        metadata[SHARED_KEY] = json.dumps(shared, separators=(",", ":"))
    # save_file streams the tensors to disk; building the file as bytes first took 2x longer.
    return atomic_write(path, lambda tmp: safetensors.numpy.save_file(tensors, str(tmp), metadata=metadata))


# ---------------------------------------------------------------- load


def _legacy_target(path: Path) -> Path:
    return path.with_suffix(SUFFIX) if path.suffix == LEGACY_SUFFIX else path.with_name(path.name + SUFFIX)


def _pickle_refusal(path: Path) -> SeqlabError:
    return SeqlabError(
        f"checkpoint '{path}' is a pickle (as old .pdckpt checkpoints written by paddle.save are), "
        "and loading a pickle can run any code it carries, so seqlab does not open it; if you "
        f"trust where it came from, convert it once with `{CONVERT_COMMAND} {path} "
        f"{_legacy_target(path)} --trust`."
    )


def _looks_like_pickle(head: bytes, last: bytes) -> bool:
    """A pickle ends with STOP (``.``) and starts with PROTO (0x80, protocol 2-5) or, in
    protocols 0-1, with an opcode building its first object."""
    if last != b".":
        return False
    if head[:1] == b"\x80":
        return len(head) > 1 and 2 <= head[1] <= 5
    return head[:1] in (b"(", b"}", b"]", b")", b"c", b"N", b"V", b"S", b"I", b"l", b"d")


def _looks_like_safetensors(head: bytes, size: int) -> bool:
    return len(head) > 8 and struct.unpack("<Q", head[:8])[0] <= size - 8 and head[8:9] == b"{"


def _read_header(path: Path) -> dict[str, Any]:
    """The file's safetensors JSON header, or the one-sentence reason it has none.

    Only the first bytes are read (and the last one, to recognise a pickle).
    """
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(16)
        f.seek(max(size - 1, 0))
        last = f.read(1)
        if not _looks_like_safetensors(head, size) and _looks_like_pickle(head, last):
            raise _pickle_refusal(path)
        if size < 8:
            raise SeqlabError(
                f"checkpoint '{path}' is unreadable: it is {size} bytes long, too short for "
                "a safetensors file; it is truncated or not a seqlab checkpoint: pass another --ckpt_path."
            )
        length = struct.unpack("<Q", head[:8])[0]
        if length > size - 8 or length > _MAX_HEADER_BYTES:
            raise SeqlabError(
                f"checkpoint '{path}' is unreadable: as a safetensors file its header would be {length} "
                f"bytes long, but only {size - 8} follow its 8-byte length; it is truncated or not a "
                "seqlab checkpoint: pass another --ckpt_path."
            )
        f.seek(8)
        raw = f.read(length)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        header = None
    if not isinstance(header, dict):
        raise SeqlabError(
            f"checkpoint '{path}' is unreadable: its safetensors header is not a JSON "
            "object; it is corrupt or not a seqlab checkpoint: pass another --ckpt_path."
        )
    return header


def _fail(path: Path, problem: str) -> SeqlabError:
    return SeqlabError(
        f"checkpoint '{path}' {problem}; it is corrupt or was not written by seqlab: pass another --ckpt_path."
    )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_schema(ckpt: dict[str, Any], path: Path) -> None:
    """The parts the Trainer relies on have the types it expects, before anything is restored."""
    version = ckpt.get("format_version")
    if not _is_int(version) or version != FORMAT_VERSION:
        if _is_int(version) and version > FORMAT_VERSION:
            raise SeqlabError(
                f"checkpoint '{path}' has format version {version}, newer than this seqlab "
                f"reads ({FORMAT_VERSION}); upgrade seqlab to load it."
            )
        raise _fail(
            path,
            f"has format version {version!r} in a safetensors file, where this seqlab "
            f"reads only version {FORMAT_VERSION}",
        )
    missing = [key for key in REQUIRED_KEYS if key not in ckpt]
    if missing:
        raise _fail(
            path, f"lacks {', '.join(repr(k) for k in missing)} (a checkpoint holds {', '.join(REQUIRED_KEYS)})"
        )
    if not (_is_int(ckpt["step"]) and ckpt["step"] >= 0):
        raise _fail(path, f"has step {ckpt['step']!r}, not a non-negative integer")
    model = ckpt["model"]
    if not isinstance(model, dict) or not all(isinstance(v, np.ndarray) for v in model.values()):
        raise _fail(path, "has a 'model' entry that is not a dict of tensors")
    optimizer = ckpt["optimizer"]
    accumulators = optimizer.get("accumulators", {}) if isinstance(optimizer, dict) else None
    if not (
        isinstance(accumulators, dict)
        and isinstance(optimizer.get("other", {}), dict)
        and all(
            isinstance(a, dict) and all(isinstance(v, np.ndarray) for v in a.values()) for a in accumulators.values()
        )
    ):
        raise _fail(
            path, "has an 'optimizer' entry that is not {accumulators: {parameter: {name: tensor}}, other: {...}}"
        )
    for key in ("callbacks", "task", "trainer", "config", "meta"):
        if key in ckpt and not isinstance(ckpt[key], dict):
            raise _fail(path, f"has a '{key}' entry that is not a dict")
    for key in ("train_time_s", "train_tokens", "wall_time_s"):
        if key in ckpt.get("trainer", {}) and not _is_number(ckpt["trainer"][key]):
            raise _fail(path, f"has trainer.{key} = {ckpt['trainer'][key]!r}, not a number")
    for key in ("model_name", "task_name"):
        if ckpt.get(key) is not None and not isinstance(ckpt[key], str):
            raise _fail(path, f"has a {key} that is not a string")
    check_rng_state(ckpt["rng"], f"checkpoint '{path}'")


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint, turning every way it can be wrong into one clear :class:`SeqlabError`.

    Nothing in the file is executed: the header and metadata are parsed as JSON and the tensors
    are copied into numpy arrays. A pickle (the old format) is recognised and refused unread.
    """
    path = Path(path)
    if not path.is_file():
        raise SeqlabError(f"checkpoint '{path}' does not exist; check the path or pass --ckpt_path last|best.")
    metadata = _read_header(path).get("__metadata__")
    document = metadata.get(METADATA_KEY) if isinstance(metadata, dict) else None
    if not isinstance(document, str):
        raise SeqlabError(
            f"'{path}' is a safetensors file without seqlab's checkpoint metadata (e.g. "
            "bare model weights), so it cannot be resumed or tested; pass a checkpoint "
            "written by seqlab fit."
        )
    try:
        ckpt = json.loads(document)
        shared = json.loads(metadata.get(SHARED_KEY, "{}"))
    except (ValueError, RecursionError):
        raise _fail(path, "has metadata that is not JSON") from None
    if not isinstance(ckpt, dict) or not isinstance(shared, dict):
        raise _fail(path, "has metadata that is not a JSON object")
    tensors = {}
    try:
        with safetensors.safe_open(str(path), framework="numpy") as f:  # checks offsets and sizes
            for name in f.keys():
                tensors[name] = f.get_tensor(name)
    except Exception as exc:  # SafetensorError and friends; never code from the file
        raise _fail(path, f"has tensor data that does not match its header ({str(exc).splitlines()[0]})") from None
    for name, array in tensors.items():
        if not _put(ckpt, name, array):
            raise _fail(path, f"holds tensor '{name}', which has no place in its metadata")
    for name, stored in shared.items():
        if stored not in tensors or not _put(ckpt, name, tensors[stored]):
            raise _fail(path, f"lists shared tensor '{name}' -> {stored!r}, which has no place in its metadata")
    try:
        _check_schema(ckpt, path)
    except RecursionError:
        raise _fail(path, "has metadata nested too deeply") from None
    return ckpt


def check_compatible(
    ckpt: dict[str, Any],
    path: str | os.PathLike,
    model_name: str | None,
    task_name: str | None,
    model_state: dict[str, Any],
    config: dict[str, Any] | None = None,
) -> None:
    """Refuse a checkpoint made for another model, task or configuration, naming the mismatch.

    With ``config`` (the resolved config of the run), the model's and the task's ``init_args``
    must equal the checkpoint's: resuming with another ``digit_max`` or ``batch_size`` would
    silently continue a different experiment. Trainer settings (``max_steps``...) may change.
    The optimizer's accumulators must belong to this model's parameters and have their shapes
    (or be scalars such as Adam's beta powers), so restoring them cannot fail half-way.
    """
    for what, expected in (("model", model_name), ("task", task_name)):
        found = ckpt.get(f"{what}_name")
        if expected and found and found != expected:
            raise SeqlabError(
                f"checkpoint '{path}' was written for {what} '{found}', but this run's {what} is "
                f"'{expected}'; pass a checkpoint of this run or change --{what}."
            )
    saved_config = ckpt.get("config") or {}
    for section in ("model", "task"):
        ours = ((config or {}).get(section) or {}).get("init_args") or {}
        theirs = (saved_config.get(section) or {}).get("init_args") or {}
        if ours and theirs:
            for key in sorted(set(ours) | set(theirs)):
                if ours.get(key) != theirs.get(key):
                    raise SeqlabError(
                        f"checkpoint '{path}' was trained with {section}.init_args.{key}="
                        f"{theirs.get(key)!r}, but this run sets {ours.get(key)!r}; resume with the "
                        "checkpoint's settings or start a new run."
                    )
    saved = ckpt.get("model", {})
    missing = sorted(set(model_state) - set(saved))
    unexpected = sorted(set(saved) - set(model_state))
    if missing or unexpected:
        raise SeqlabError(
            f"checkpoint '{path}' does not fit this model (missing {missing[:3]}, unexpected "
            f"{unexpected[:3]}); it was saved with another architecture or config."
        )
    for key, value in model_state.items():
        if list(saved[key].shape) != list(value.shape):
            raise SeqlabError(
                f"checkpoint '{path}' does not fit this model: '{key}' has shape "
                f"{list(saved[key].shape)} in the file and {list(value.shape)} in the model; "
                "the model config differs from the one it was saved with."
            )
    for owner, accumulators in (ckpt.get("optimizer") or {}).get("accumulators", {}).items():
        if owner not in model_state:
            raise SeqlabError(
                f"checkpoint '{path}' has optimizer state for '{owner}', which this model "
                "does not have; it was saved with another architecture or config."
            )
        shape = list(model_state[owner].shape)
        for suffix, value in accumulators.items():
            if list(value.shape) not in (shape, [1], []):
                raise SeqlabError(
                    f"checkpoint '{path}' does not fit this model: optimizer state '{owner}{suffix}' has "
                    f"shape {list(value.shape)}, the parameter {shape}; the file is corrupt or "
                    "was saved with another config."
                )


# ---------------------------------------------------------------- run folders and aliases


def prepare_run_dir(run_dir: Path, fresh: bool, overwrite: bool) -> None:
    """Before a fit writes: a fresh run claims its folder (see :func:`claim_run_dir`); make checkpoints/."""
    if fresh:
        claim_run_dir(run_dir, overwrite)
    (Path(run_dir) / "checkpoints").mkdir(parents=True, exist_ok=True)


def claim_run_dir(run_dir: Path, overwrite: bool) -> None:
    """A fresh fit must not mix with (or test) an earlier run's files in the same folder."""
    checkpoints = run_dir / "checkpoints"
    if not any(checkpoints.glob(f"*{SUFFIX}")) and not any(checkpoints.glob(f"*{LEGACY_SUFFIX}")):
        return
    if not overwrite:
        raise SeqlabError(
            f"run folder '{run_dir}' already holds checkpoints of an earlier run; resume it with "
            "--ckpt_path last, start over with --trainer.overwrite true, or choose another "
            "--trainer.root_dir."
        )
    shutil.rmtree(run_dir)


def best_or_last(checkpoint_dir: Path) -> tuple[Path, str] | None:
    """The weights a finished run is tested on: its best checkpoint if it saved one, else its last."""
    for name in (BEST, LAST):
        path = checkpoint_file(checkpoint_dir, name)
        if path.is_file():
            return path, name
    return None


def tested_weights(checkpoint_dir: Path, rule: str) -> tuple[Path, str]:
    """The checkpoint a finished fit is tested on: ``best`` (its best, else its last) or ``last``."""
    found = best_or_last(checkpoint_dir) if rule == BEST else None
    return found or (checkpoint_file(checkpoint_dir, LAST), LAST)


def resolve_ckpt_path(ckpt_path: str | None, checkpoint_dir: Path, resume: bool = False) -> Path | None:
    """Map ``last`` / ``best`` to files in ``checkpoint_dir``; any other value is a path.

    With ``resume`` (fit), ``last`` falls back to ``best`` (a run killed before its first
    periodic save), and to a fresh start with a warning when the run has no checkpoint yet, as
    Lightning's ``ckpt_path="last"`` does: the same resume command then works for every run of a
    recipe, started or not.
    """
    if ckpt_path in (None, ""):
        return None
    if ckpt_path not in ALIASES:
        return Path(ckpt_path)
    path = checkpoint_file(checkpoint_dir, ckpt_path)
    if path.is_file():
        return path
    legacy = Path(checkpoint_dir) / f"{ckpt_path}{LEGACY_SUFFIX}"
    if legacy.is_file():
        raise SeqlabError(
            f"--ckpt_path {ckpt_path}: there is no '{path}', only '{legacy}' in the old pickle "
            "format, which seqlab no longer opens because loading it can run code; if you "
            f"trust it, convert it with `{CONVERT_COMMAND} {legacy} {path} --trust` and run again."
        )
    if resume and ckpt_path == LAST:
        best = checkpoint_file(checkpoint_dir, BEST)
        if best.is_file():
            log.info("no %s; resuming from %s", path, best)
            return best
        log.warning("--ckpt_path last: no checkpoint in '%s' yet; starting this run from step 0.", checkpoint_dir)
        return None
    raise SeqlabError(f"--ckpt_path {ckpt_path}: there is no '{path}'; train this run first or pass a path.")


# ---------------------------------------------------------------- the old format


def _legacy_rng_to_plain(blob: Any) -> dict[str, Any]:
    """Format 1 kept the three RNG states as one pickled uint8 array; unpickle it (trusted) and convert."""
    import pickle

    state = pickle.loads(np.asarray(blob, dtype=np.uint8).tobytes())  # only after --trust
    return {
        "python": python_state_to_plain(state["python"]),
        "numpy": numpy_legacy_state_to_plain(state["numpy"]),
        "paddle": [paddle_state_to_plain(s) for s in state["paddle"]],
    }


def convert_legacy_checkpoint(src: str | os.PathLike, dst: str | os.PathLike, trust: bool = False) -> dict[str, Any]:
    """Convert a format-1 checkpoint (a ``paddle.save`` pickle) to the safetensors format.

    This unpickles ``src``, which runs any code the file carries, so it needs ``trust=True``:
    the user's statement that the file comes from a source they trust (e.g. their own runs).
    Returns the converted checkpoint as :func:`load_checkpoint` reads it back from ``dst``.
    """
    src, dst = Path(src), Path(dst)
    if not trust:
        raise SeqlabError(
            f"converting '{src}' means unpickling it, which runs any code the file carries; add "
            "--trust if you know where it comes from (e.g. your own earlier run)."
        )
    if not src.is_file():
        raise SeqlabError(f"'{src}' does not exist; pass the old .pdckpt file to convert.")
    if dst.exists():
        raise SeqlabError(f"'{dst}' already exists; choose another name for the converted checkpoint or delete it.")
    size = src.stat().st_size
    with open(src, "rb") as f:
        head = f.read(16)
        f.seek(max(size - 1, 0))
        last = f.read(1)
    if _looks_like_safetensors(head, size):
        raise SeqlabError(f"'{src}' is already a safetensors file; there is nothing to convert.")
    if not _looks_like_pickle(head, last):
        raise SeqlabError(f"'{src}' is not a pickle, so not an old seqlab checkpoint; there is nothing to convert.")
    try:
        old = paddle.load(str(src))  # the one place seqlab unpickles: the user passed --trust
    except Exception as exc:
        raise SeqlabError(
            f"'{src}' could not be read by paddle.load ({type(exc).__name__}); it is "
            "corrupt or not an old seqlab checkpoint."
        ) from None
    if not isinstance(old, dict) or old.get("format_version") != 1 or "rng" not in old:
        raise SeqlabError(
            f"'{src}' is not a format-1 seqlab checkpoint (it lacks format_version 1 or "
            "rng); there is nothing to convert."
        )
    new = dict(old, format_version=FORMAT_VERSION, rng=_legacy_rng_to_plain(old["rng"]))
    try:
        atomic_save(new, dst)
    except TypeError as exc:
        raise SeqlabError(f"'{src}' holds a value the new format cannot store: {exc}") from None
    return load_checkpoint(dst)


# ---------------------------------------------------------------- what a Trainer's checkpoint holds


def trainer_checkpoint(trainer, meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """Everything needed to continue ``trainer``'s run exactly, as one dict (before callbacks add theirs)."""
    from seqlab.registry import MODELS, TASKS

    return {
        "format_version": FORMAT_VERSION,
        "step": trainer.global_step,
        "model": trainer.model.state_dict(),
        "optimizer": optimizer_state(trainer.optimizer, trainer.model),
        "precision": trainer.precision.state_dict(),
        "callbacks": {cb.state_key: cb.state_dict() for cb in trainer.callbacks},
        "task": trainer.task.state_dict(),
        "rng": capture_rng_state(),
        "trainer": {
            **trainer.counters,
            "wall_time_s": trainer.wall_time_s(),
            "last_val_metrics": trainer.last_val_metrics,
        },
        "config": trainer.config,
        "settings": run_settings(),
        "meta": dict(meta or {}),
        "model_name": MODELS.name_of(type(trainer.model)),
        "task_name": TASKS.name_of(type(trainer.task)),
    }


def weights_checkpoint(model) -> dict[str, Any]:
    """The smallest valid checkpoint: ``model``'s weights at step 0, no optimizer state, this
    process's RNG state (what ``seqlab.testing``'s save/load check writes and reads back)."""
    return {
        "format_version": FORMAT_VERSION,
        "step": 0,
        "model": model.state_dict(),
        "optimizer": {"accumulators": {}, "other": {}},
        "rng": capture_rng_state(),
    }


def restore_trainer(trainer, ckpt: dict[str, Any]) -> None:
    """Inverse of :func:`trainer_checkpoint`: weights, optimizer, callbacks, task, RNG, counters."""
    trainer.model.set_state_dict(ckpt["model"])
    load_optimizer_state(trainer.optimizer, trainer.model, ckpt["optimizer"])
    trainer.precision.load_state_dict(ckpt.get("precision") or {})
    states = ckpt.get("callbacks", {})
    for cb in trainer.callbacks:
        if cb.state_key in states:
            cb.load_state_dict(states[cb.state_key])
    trainer.task.load_state_dict(ckpt.get("task", {}))
    restore_rng_state(ckpt["rng"])
    saved = dict(ckpt.get("trainer", {}))
    trainer.last_val_metrics = saved.pop("last_val_metrics", {})
    trainer.counters.update({k: v for k, v in saved.items() if k in trainer.counters})
    trainer.global_step = int(ckpt["step"])
    saved_settings, now = ckpt.get("settings"), run_settings()
    if isinstance(saved_settings, dict) and saved_settings != now:
        changed = ", ".join(
            f"{k}={saved_settings.get(k)}->{now.get(k)}" for k in sorted(now) if saved_settings.get(k) != now.get(k)
        )
        log.warning(
            "resuming with other run settings than the checkpoint's (%s): the run continues "
            "exactly only up to float rounding.",
            changed,
        )
