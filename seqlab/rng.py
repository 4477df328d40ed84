"""The Python, numpy and Paddle random generators' states as plain numbers and arrays.

A checkpoint stores them so a resumed run draws exactly the numbers the uninterrupted run would
have drawn (dropout masks, any sampling). The forms are JSON values and arrays, so a checkpoint
never needs a pickle to hold them:

* ``python``: ``random.getstate()`` is ``(3, <625 ints>, gauss_next)``; kept as
  ``{"version": 3, "state": uint32[625] (624 Mersenne Twister words, then the position),
  "gauss_next": float | None}``.
* ``numpy``: ``np.random.get_state(legacy=False)``, already plain: ``{"bit_generator": "MT19937",
  "state": {"key": uint32[624], "pos": int}, "has_gauss": 0 | 1, "gauss": float}``.
* ``paddle``: one ``{"device", "seed", "offset", "engine": uint64[313]}`` per generator of the
  current device. Paddle exposes a generator's state only as a ``GeneratorState`` object, whose
  own pickle support is ``__getstate__() -> (device, seed, offset, engine)`` with ``engine`` the
  bytes of its C++ ``std::mt19937_64`` as ``operator<<`` writes it (312 words and the position,
  in decimal). Those 313 numbers are the array; restoring rebuilds the text and hands the tuple
  to ``GeneratorState.__setstate__``: the call ``pickle`` itself would make, without a pickle,
  and with values checked first.
"""

from __future__ import annotations

import logging
import random
from typing import Any

import numpy as np
import paddle

from seqlab.errors import SeqlabError

log = logging.getLogger(__name__)

MT19937_64_WORDS = 312  # the state size of std::mt19937_64, fixed by the C++ standard


def capture_rng_state() -> dict[str, Any]:
    """Python's, numpy's and Paddle's generator states, as plain numbers and arrays."""
    return {
        "python": python_state_to_plain(random.getstate()),
        "numpy": np.random.get_state(legacy=False),
        "paddle": [paddle_state_to_plain(s) for s in paddle.get_rng_state()],
    }


def restore_rng_state(state: dict[str, Any]) -> None:
    """Set the three generators to a :func:`capture_rng_state` result (checked first).

    Paddle's states are restored only when they were taken on the same kind and number of
    devices as this process uses; otherwise (e.g. a GPU run resumed on a CPU, where bit-exactness
    cannot hold anyway) Paddle keeps the run's seeded state and a warning says so.
    """
    check_rng_state(state)
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"].tolist()), py["gauss_next"]))
    npy = state["numpy"]
    np.random.set_state(
        {
            "bit_generator": "MT19937",
            "has_gauss": int(npy["has_gauss"]),
            "gauss": float(npy["gauss"]),
            "state": {"key": npy["state"]["key"], "pos": npy["state"]["pos"]},
        }
    )
    saved, current = state["paddle"], [s.__getstate__() for s in paddle.get_rng_state()]
    fits = len(saved) == len(current) and all(
        s["device"] == c[0] and ("engine" in s) == (len(c) > 3) for s, c in zip(saved, current)
    )
    if not fits:
        log.warning(
            "the checkpoint's Paddle RNG state is for other devices (%s; here: %s); Paddle's "
            "generator keeps this run's seed, so random ops (dropout) will not repeat the "
            "original run exactly.",
            [s["device"] for s in saved],
            [c[0] for c in current],
        )
        return
    paddle.set_rng_state([paddle_state_from_plain(s) for s in saved])


def check_rng_state(rng: Any, where: str = "the checkpoint") -> None:
    """Raise a :class:`SeqlabError` when ``rng`` is not a state :func:`restore_rng_state` accepts."""
    problem = _problem(rng)
    if problem:
        raise SeqlabError(
            f"{where} has a malformed RNG state ({problem}); the file is corrupt or was not written by seqlab."
        )


# ---------------------------------------------------------------- conversions


def python_state_to_plain(state: tuple) -> dict[str, Any]:
    version, internal, gauss_next = state
    return {"version": version, "state": np.array(internal, dtype=np.uint32), "gauss_next": gauss_next}


def numpy_legacy_state_to_plain(state: tuple) -> dict[str, Any]:
    """numpy's legacy ``get_state()`` tuple as its dict form (``get_state(legacy=False)``)."""
    name, key, pos, has_gauss, gauss = state
    return {
        "bit_generator": name,
        "state": {"key": np.asarray(key, dtype=np.uint32), "pos": int(pos)},
        "has_gauss": int(has_gauss),
        "gauss": float(gauss),
    }


def paddle_state_to_plain(state) -> dict[str, Any]:
    """A Paddle ``GeneratorState`` as numbers and a uint64 array (no engine on builds without one)."""
    fields = state.__getstate__()
    plain = {"device": int(fields[0]), "seed": int(fields[1]), "offset": int(fields[2])}
    if len(fields) > 3:
        plain["engine"] = np.array(bytes(fields[3]).split(), dtype=np.uint64)
    return plain


def paddle_state_from_plain(plain: dict[str, Any]):
    """The ``GeneratorState`` that :func:`paddle_state_to_plain` was given."""
    cls = type(paddle.get_rng_state()[0])
    fields: list[Any] = [plain["device"], plain["seed"], plain["offset"]]
    if "engine" in plain:
        fields.append(list(" ".join(map(str, plain["engine"].tolist())).encode()))
    state = cls.__new__(cls)
    state.__setstate__(tuple(fields))
    return state


# ---------------------------------------------------------------- checks


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_vector(value: Any, dtype, length: int | None = None) -> bool:
    return (
        isinstance(value, np.ndarray)
        and value.dtype == dtype
        and value.ndim == 1
        and (length is None or value.shape[0] == length)
    )


def _problem(rng: Any) -> str | None:
    """What is wrong with a loaded RNG state, or None. Values out of range would make the
    generators raise (Python, numpy) or misread their state (Paddle's C++ stream) later."""
    if not isinstance(rng, dict) or not {"python", "numpy", "paddle"} <= set(rng):
        return "it must hold python, numpy and paddle states"
    py = rng["python"]
    if not (
        isinstance(py, dict)
        and py.get("version") == 3
        and _is_vector(py.get("state"), np.uint32, 625)
        and py["state"][-1] <= 624
        and (py.get("gauss_next") is None or _is_number(py.get("gauss_next")))
    ):
        return "python must be version 3 with a uint32 state of 625 values and a gauss_next"
    npy = rng["numpy"]
    inner = npy.get("state") if isinstance(npy, dict) else None
    if not (
        isinstance(npy, dict)
        and npy.get("bit_generator") == "MT19937"
        and isinstance(inner, dict)
        and _is_vector(inner.get("key"), np.uint32, 624)
        and _is_int(inner.get("pos"))
        and 0 <= inner["pos"] <= 624
        and npy.get("has_gauss") in (0, 1)
        and _is_number(npy.get("gauss"))
    ):
        return "numpy must be an MT19937 state with a uint32 key of 624 values"
    gens = rng["paddle"]
    if not isinstance(gens, list) or not gens:
        return "paddle must be a list of generator states"
    for gen in gens:
        if not (
            isinstance(gen, dict)
            and all(_is_int(gen.get(k)) for k in ("device", "seed", "offset"))
            and 0 <= gen["seed"] < 2**64
            and 0 <= gen["offset"] < 2**64
        ):
            return "each paddle state needs an integer device, seed and offset"
        engine = gen.get("engine")
        if engine is not None and not (
            _is_vector(engine, np.uint64, MT19937_64_WORDS + 1) and engine[-1] <= MT19937_64_WORDS
        ):
            return f"a paddle engine must be {MT19937_64_WORDS} uint64 words and a position up to {MT19937_64_WORDS}"
    return None
