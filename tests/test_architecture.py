"""The import rules that keep data flowing one way (README, "Architecture").

The rules themselves are import-linter contracts in pyproject.toml (``[tool.importlinter]``),
which ``make lint`` checks: layers, forbidden imports and no cycles, transitive and with the
imports inside functions. These tests show that the real tree keeps them and that a planted
violation of each kind breaks them, so a contract cannot quietly stop checking anything.
"""

import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "seqlab"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(cwd: Path, *contracts: str) -> subprocess.CompletedProcess:
    """``lint-imports`` on the seqlab package found first on the path from ``cwd`` (with its pyproject)."""
    command = [str(LINT_IMPORTS), "--no-cache", "--no-logo", *(f"--contract={c}" for c in contracts)]
    # The folder comes first on the path, so a copy of the package there shadows the editable install.
    env = dict(os.environ, PYTHONPATH=str(cwd))
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture
def tree_copy(tmp_path) -> Path:
    """A throwaway copy of the package and its contracts, to plant violations in."""
    shutil.copytree(PACKAGE, tmp_path / "seqlab", ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.tmp"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def plant(tree: Path, module: str, code: str) -> None:
    path = tree / module
    path.write_text(path.read_text() + "\n\n" + code)


def test_the_tree_keeps_every_import_contract():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"Contracts: \d+ kept, 0 broken", result.stdout), result.stdout


def test_make_lint_runs_import_linter():
    recipe = re.search(r"^lint:.*\n((?:\t.*\n)+)", (ROOT / "Makefile").read_text(), re.M)
    assert recipe and "lint-imports" in recipe.group(1)


def test_a_function_level_import_up_the_layers_breaks_the_layers_contract(tree_copy):
    # errors.py is the bottom of the core; one import of the Trainer, hidden in a function.
    plant(
        tree_copy, "seqlab/errors.py", "def _planted():\n    from seqlab.trainer import Trainer\n\n    return Trainer\n"
    )
    result = lint_imports(tree_copy, "layers")
    assert result.returncode != 0
    assert "seqlab's modules form layers BROKEN" in result.stdout, result.stdout
    assert "seqlab.errors -> seqlab.trainer" in result.stdout


def test_an_indirect_import_breaks_a_forbidden_contract(tree_copy):
    # No model imports text.py's function; it reaches the Trainer through the Model base class:
    # models -> seqlab.model -> seqlab.text -> seqlab.trainer.
    plant(tree_copy, "seqlab/text.py", "def _planted():\n    import seqlab.trainer\n\n    return seqlab.trainer\n")
    result = lint_imports(tree_copy, "models")
    assert result.returncode != 0
    assert "BROKEN" in result.stdout and "seqlab.text -> seqlab.trainer" in result.stdout, result.stdout


def test_a_new_module_must_take_a_place_in_the_layers(tree_copy):
    (tree_copy / "seqlab" / "stray.py").write_text('"""A module nobody placed."""\n')
    result = lint_imports(tree_copy, "layers")
    assert result.returncode != 0 and "seqlab.stray" in result.stdout, result.stdout


def test_an_import_cycle_breaks_the_no_cycle_contract(tree_copy):
    # task.py imports metrics.py; the way back is inside a function, where a cycle hides best.
    plant(tree_copy, "seqlab/metrics.py", "def _planted():\n    from seqlab.task import Task\n\n    return Task\n")
    result = lint_imports(tree_copy, "acyclic")
    assert result.returncode != 0
    assert "no import cycles between sibling modules BROKEN" in result.stdout, result.stdout


# Only the CLI and the user-facing callbacks talk to the terminal (and _paddle.py's one-line
# install hint, printed just before it exits 2 when no Paddle wheel is installed). Elsewhere
# library code logs; a relay of child processes' output takes the CLI's writer.
MAY_WRITE = ("cli.py", "commands/", "callbacks/progress.py", "_paddle.py")


def terminal_writes(tree: ast.AST) -> list[int]:
    """Lines that call ``print`` or ``sys.stdout/stderr.write``."""
    lines = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Name) and func.id == "print":
            lines.append(node.lineno)
        elif (
            isinstance(func, ast.Attribute)
            and func.attr in ("write", "writelines")
            and isinstance(func.value, ast.Attribute)
            and func.value.attr in ("stdout", "stderr")
            and isinstance(func.value.value, ast.Name)
            and func.value.value.id == "sys"
        ):
            lines.append(node.lineno)
    return lines


def test_the_check_for_terminal_writes_sees_each_kind():
    code = "import sys\nprint(1)\nsys.stdout.write('x')\nsys.stderr.write('y')\nlog.write('z')\n"
    assert terminal_writes(ast.parse(code)) == [2, 3, 4]


def test_library_code_does_not_print():
    bad = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel.startswith(MAY_WRITE):
            continue
        bad += [f"seqlab/{rel}:{line}" for line in terminal_writes(ast.parse(path.read_text()))]
    assert bad == []
