"""The import rules that keep data flowing one way (README, "Architecture"), checked on the source."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "seqlab"


def seqlab_imports(path: Path) -> set[str]:
    """Every module name a file imports (absolute; relative imports resolved)."""
    names = set()
    module_parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(module_parts[: len(module_parts) - node.level])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def files(sub: str) -> list[Path]:
    return sorted((PACKAGE / sub).rglob("*.py")) if (PACKAGE / sub).is_dir() else [PACKAGE / sub]


def offending(paths, forbidden) -> list[str]:
    bad = []
    for path in paths:
        for name in seqlab_imports(path):
            if any(name == f or name.startswith(f + ".") for f in forbidden):
                bad.append(f"{path.relative_to(PACKAGE.parent)} imports {name}")
    return bad


CONCRETE = ["seqlab.models", "seqlab.tasks", "seqlab.callbacks", "seqlab.cli", "seqlab.trainer"]


@pytest.mark.parametrize(
    "sub, forbidden",
    [
        ("models", ["seqlab.trainer", "seqlab.callbacks", "seqlab.tasks", "seqlab.cli", "seqlab.checkpoint"]),
        ("tasks", ["seqlab.models", "seqlab.trainer", "seqlab.callbacks", "seqlab.cli"]),
        ("callbacks", ["seqlab.cli", "seqlab.models", "seqlab.tasks"]),
        ("report.py", ["seqlab.cli", "seqlab.models", "seqlab.tasks", "seqlab.callbacks", "seqlab.trainer"]),
    ],
)
def test_layer_boundaries(sub, forbidden):
    assert offending(files(sub), forbidden) == []


def test_ops_and_nn_import_only_ops():
    bad = []
    for path in files("ops") + files("nn"):
        own = "seqlab." + path.relative_to(PACKAGE).parts[0]
        for name in seqlab_imports(path):
            allowed = ("seqlab.ops", own)
            if name.startswith("seqlab") and not any(name == a or name.startswith(a + ".") for a in allowed):
                bad.append(f"{path.relative_to(PACKAGE.parent)} imports {name}")
    assert bad == []


def test_trainer_knows_only_base_classes():
    # The Trainer may import the callbacks *package* (for the default set), never a concrete
    # callback, model or task module.
    imports = seqlab_imports(PACKAGE / "trainer.py")
    concrete = [
        n
        for n in imports
        if n.startswith(("seqlab.models", "seqlab.tasks", "seqlab.cli"))
        or (n.startswith("seqlab.callbacks.") and n != "seqlab.callbacks.arrange_callbacks")
    ]
    assert concrete == []


def test_only_cli_imports_jsonargparse():
    users = [
        p.relative_to(PACKAGE.parent).as_posix()
        for p in PACKAGE.rglob("*.py")
        if any(n.split(".")[0] == "jsonargparse" for n in seqlab_imports(p))
    ]
    assert users == ["seqlab/cli.py"]


def test_library_code_does_not_print():
    # Only the user-facing callbacks and the CLI talk to the terminal (and _paddle.py's one-line
    # install hint, printed just before it exits 2 when no Paddle wheel is installed).
    allowed = {"cli.py", "callbacks/progress.py", "_paddle.py"}
    bad = []
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel in allowed:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "print":
                bad.append(f"{rel}:{node.lineno}")
    assert bad == []
