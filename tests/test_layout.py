"""The packages' import direction: datasets/ at the bottom, algorithms/ on it, benchmark/ on top.

A module of algorithms/ or datasets/ that imports benchmark/ (the evaluator, runner, reports)
would make the contract depend on the machinery built on it; datasets/ must not need the models.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from conftest import REPO_ROOT

FORBIDDEN = {"datasets": ("benchmark", "algorithms"), "algorithms": ("benchmark",)}


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import in ``path``, lazy ones inside functions included."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


def violations(package: str) -> list[str]:
    bad = []
    for path in sorted((REPO_ROOT / package).rglob("*.py")):
        for line, module in imported_modules(path):
            if module.split(".")[0] in FORBIDDEN[package]:
                bad.append(f"{path.relative_to(REPO_ROOT)}:{line} imports {module}")
    return bad


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_lower_packages_never_import_upwards(package):
    assert violations(package) == []


def test_the_check_sees_a_lazy_upward_import(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from benchmark.evaluator import evaluate\n    import os\n")
    assert imported_modules(module) == [(2, "benchmark.evaluator"), (3, "os")]
