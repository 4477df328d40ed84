"""The checkpoint file format: safetensors with JSON metadata, written atomically, never unpickled.

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
  :func:`seqlab.checkpoint.optimizer_state.load_optimizer_state` take them as they are. Paddle's bfloat16 tensors are stored as
  they convert to numpy (uint16 bit patterns, safetensors dtype ``U16``) and Paddle reads such
  arrays back as bfloat16.
* **RNG states** are plain numbers and arrays (see :mod:`seqlab.rng`).

A file in the old format (format 1, ``*.pdckpt``, a ``paddle.save`` pickle) is recognised by its
first and last bytes and refused: unpickling it could run code. :func:`seqlab.checkpoint.legacy.convert_legacy_checkpoint`
(``seqlab convert-checkpoint OLD NEW --trust``) converts one the user trusts.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any

import numpy as np
import paddle
import safetensors
import safetensors.numpy

from seqlab.errors import SeqlabError
from seqlab.io import atomic_write
from seqlab.precision import precision_state_problem
from seqlab.rng import check_rng_state

FORMAT_VERSION = 2
SUFFIX = ".safetensors"
LEGACY_SUFFIX = ".pdckpt"  # format 1: a paddle.save pickle; refused, converted on request
METADATA_KEY = "seqlab_checkpoint"
SHARED_KEY = "seqlab_shared_tensors"
#: What the Trainer reads from every checkpoint without a default; the rest is optional.
REQUIRED_KEYS = ("format_version", "step", "model", "optimizer", "rng")
CONVERT_COMMAND = "seqlab convert-checkpoint"
_MAX_HEADER_BYTES = 100_000_000  # safetensors' own limit; seqlab's headers are a few KB
_STORABLE_KINDS = "biuf"  # numpy dtype kinds safetensors stores: bool, int, uint, float


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
        # .numpy() copies, yet beats np.from_dlpack per small tensor, and a checkpoint holds
        # hundreds (figures: benchmarks/RESULTS.md, "Checkpoint format").
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


# ---------------------------------------------------------------- save


def atomic_save(obj: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``obj`` to ``path`` as a safetensors checkpoint, atomically (see :mod:`seqlab.io`)."""
    tree, tensors, shared = split_tensors(obj)
    metadata = {METADATA_KEY: json.dumps(tree, separators=(",", ":"))}
    if shared:
        metadata[SHARED_KEY] = json.dumps(shared, separators=(",", ":"))
    # save_file streams the tensors to disk; building the file as bytes first was slower
    # (benchmarks/RESULTS.md, "Checkpoint format").
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


def looks_like_pickle(head: bytes, last: bytes) -> bool:
    """Whether a file's first bytes ``head`` and last byte ``last`` are a pickle's. A pickle ends with STOP (``.``) and starts with PROTO (0x80, protocol 2-5) or, in
    protocols 0-1, with an opcode building its first object."""
    if last != b".":
        return False
    if head[:1] == b"\x80":
        return len(head) > 1 and 2 <= head[1] <= 5
    return head[:1] in (b"(", b"}", b"]", b")", b"c", b"N", b"V", b"S", b"I", b"l", b"d")


def looks_like_safetensors(head: bytes, size: int) -> bool:
    """The first bytes are a safetensors header length that fits the file, then a JSON object."""
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
        if not looks_like_safetensors(head, size) and looks_like_pickle(head, last):
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
    for key in ("callbacks", "task", "trainer", "config", "meta", "precision"):
        if key in ckpt and not isinstance(ckpt[key], dict):
            raise _fail(path, f"has a '{key}' entry that is not a dict")
    problem = _trainer_problem(ckpt.get("trainer", {})) or _sections_problem(ckpt)
    if problem:
        raise _fail(path, problem)
    for key in ("model_name", "task_name"):
        if ckpt.get(key) is not None and not isinstance(ckpt[key], str):
            raise _fail(path, f"has a {key} that is not a string")
    check_rng_state(ckpt["rng"], f"checkpoint '{path}'")


def _trainer_problem(trainer: dict[str, Any]) -> str | None:
    """What is wrong with the Trainer's own section (counters, last metrics, decisions), if anything."""
    for key in ("train_time_s", "wall_time_s", "train_tokens"):
        if key in trainer and not (_is_number(trainer[key]) and trainer[key] >= 0):
            return f"has trainer.{key} = {trainer[key]!r}, not a non-negative number"
    for key in ("skipped_steps",):
        if key in trainer and not (_is_int(trainer[key]) and trainer[key] >= 0):
            return f"has trainer.{key} = {trainer[key]!r}, not a non-negative integer"
    metrics = trainer.get("last_val_metrics", {})
    if not (isinstance(metrics, dict) and all(_is_number(v) for v in metrics.values())):
        return f"has trainer.last_val_metrics = {metrics!r}, not a dict of metric names to numbers"
    if not isinstance(trainer.get("should_stop", False), bool):
        return f"has trainer.should_stop = {trainer['should_stop']!r}, not true or false"
    if not isinstance(trainer.get("run_id", ""), str):
        return f"has trainer.run_id = {trainer['run_id']!r}, not a string"
    return None


def _sections_problem(ckpt: dict[str, Any]) -> str | None:
    """What is wrong with the callback states, the precision state or the saved config, if anything."""
    for key, state in ckpt.get("callbacks", {}).items():
        if not isinstance(state, dict):
            return f"has a state for callback '{key}' that is not a dict"
    problem = precision_state_problem(ckpt.get("precision", {}))
    if problem:
        return f"has a precision state that {problem}"
    config = ckpt.get("config", {})
    for section in ("model", "task", "trainer"):
        value = config.get(section, {})
        if not isinstance(value, dict):
            return f"has config.{section} = {value!r}, not a mapping"
        if not isinstance(value.get("init_args", {}), dict):
            return f"has config.{section}.init_args that is not a mapping"
    seed = config.get("trainer", {}).get("seed", 0)
    if not _is_int(seed):
        return f"has config.trainer.seed = {seed!r}, not an integer"
    return None


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


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """A checkpoint's JSON document alone (tensors left ``null``), read from its header; ``{}`` when
    the file is not a readable seqlab checkpoint. For cheap questions such as which run wrote it."""
    try:
        metadata = _read_header(Path(path)).get("__metadata__")
        document = json.loads(metadata[METADATA_KEY])
    except (OSError, SeqlabError, ValueError, RecursionError, TypeError, KeyError):
        return {}
    return document if isinstance(document, dict) else {}
