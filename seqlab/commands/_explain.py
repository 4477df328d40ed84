"""jsonargparse's (multi-line) errors as one sentence: what was wrong, where, and what to do."""

from __future__ import annotations

import difflib
import re

from seqlab.errors import SeqlabError


def explain(exc: Exception, where: str, command: str, names: dict[str, str] | None = None) -> SeqlabError:
    """One sentence for a parse error ``exc`` of ``seqlab command``, prefixed by ``where``.

    ``names``: a command's own parser's arguments, ``dest`` -> as typed (``--seeds``, ``OLD``).
    Given, keys are shown as typed and an unknown flag gets the closest; without, keys are the
    dotted per-run options as they appear in a recipe (``trainer.max_steps``).
    """
    text = str(exc)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    shown = (lambda key: names.get(key, f"--{key}")) if names is not None else (lambda key: key)
    flags = [n for n in (names or {}).values() if n.startswith("--")]
    m = re.search(r"unrecognized arguments: (\S+)", text)
    if m:
        close = difflib.get_close_matches(m.group(1).partition("=")[0], flags, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        return SeqlabError(
            f"{where}: unknown option {m.group(1)}{hint}; run `seqlab {command} --help` for the valid options."
        )
    m = re.search(r"argument (\S+): expected one argument", text)
    if m:
        return SeqlabError(f"{where}: {m.group(1)} needs a value; run `seqlab {command} --help` for its meaning.")
    m = re.search(r"the following arguments are required: (.+)", text)
    if m:
        wanted = ", ".join(shown(n.strip()) for n in m.group(1).split(","))
        return SeqlabError(f"{where}: the following arguments are required: {wanted}; see `seqlab {command} --help`.")
    m = re.search(r"Option '([^']+)' is not accepted", text)
    if m:
        cls = re.search(r"given class_path '([^']+)'", text)
        owner = f" by {cls.group(1)}" if cls else ""
        return SeqlabError(
            f"{where}: option '{m.group(1)}' is not accepted{owner}; check its spelling in the class's --help."
        )
    m = re.search(r'Parser key "([^"]+)":\s*Expected a typing.Literal\[(.*?)\]\.\s*Got value: (.+)', text, re.S)
    if m:
        return SeqlabError(
            f"{where}: {shown(m.group(1))} expects one of {m.group(2)}, got {m.group(3).splitlines()[0]!r}; fix its value."
        )
    m = re.search(r'Parser key "([^"]+)":\s*(Expected a <class \'(\w+)\'>)?.*?Got value: (.+)', text, re.S)
    if m and m.group(3):
        return SeqlabError(
            f"{where}: {shown(m.group(1))} expects {m.group(3)}, got {m.group(4).splitlines()[0]!r}; fix its value."
        )
    # An Optional[int] flag: "Does not validate against any of the Union subtypes ... Given value: x".
    m = re.search(r'Parser key "([^"]+)":.*?Subtypes: \[<class \'(\w+)\'>.*?Given value: (.+)', text, re.S)
    if m:
        return SeqlabError(
            f"{where}: {shown(m.group(1))} expects {m.group(2)}, got {m.group(3).splitlines()[0]!r}; fix its value."
        )
    m = re.search(r"Problem with given class_path '([^']+)':\s*(.+)", text)
    if m:
        return SeqlabError(f"{where}: {m.group(1)}: {m.group(2).splitlines()[0]}")
    return SeqlabError(f"{where}: {' '.join(lines[:3])}")
