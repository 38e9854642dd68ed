"""The floors hold (docs/architecture.md, "Floors"): imports run only downward, and none closes a circle.

The contracts are import-linter's, configured in pyproject.toml. These tests run them on the
tree as it is, and on a copy with one deliberately bad import, to prove the check would fail.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("chatproject", "api", "gateway", "web", "ops", "receipts", "notifications", "messaging")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    # Run from `root`, with it first on the path: its packages are the ones analysed.
    return subprocess.run([str(LINT_IMPORTS), "--config", str(root / "pyproject.toml"), "--no-cache"],
                          cwd=root, env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def tree_copy(tmp_path: Path) -> Path:
    """The production packages and the contracts, copied where a test may break them."""
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def add_import(module: Path, statement: str) -> None:
    module.write_text(module.read_text() + f"\n{statement}  # deliberately wrong\n")


def test_every_import_runs_downward_and_none_closes_a_circle():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout


def test_an_upward_import_from_the_core_breaks_the_floors(tree_copy):
    add_import(tree_copy / "messaging" / "send.py", "from notifications import tasks")
    result = lint_imports(tree_copy)
    assert result.returncode != 0
    assert "Floors: every import runs downward; siblings on a floor are independent BROKEN" in result.stdout
    assert "messaging.send -> notifications.tasks" in result.stdout


def test_an_import_between_the_edges_breaks_the_floors(tree_copy):
    add_import(tree_copy / "api" / "conversations.py", "from gateway import presence")
    result = lint_imports(tree_copy)
    assert result.returncode != 0
    assert "api.conversations -> gateway.presence" in result.stdout


def test_an_import_circle_inside_a_package_breaks_the_acyclic_contract(tree_copy):
    add_import(tree_copy / "messaging" / "layer.py", "from messaging import fanout")  # fanout imports layer
    result = lint_imports(tree_copy)
    assert result.returncode != 0
    assert "No circles: within each package, no modules import each other in a loop BROKEN" in result.stdout
