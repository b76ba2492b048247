"""The import contracts in pyproject.toml hold, and they would catch a wrong-way import.

`lint-imports` reads the contracts from pyproject.toml; the second test copies the package's
sources into a temporary tree, adds one wrong-way import, and checks that the same contracts
fail there, naming the module: a contract that could never fail would protect nothing.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")


def lint(cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT), "--no-cache"], cwd=cwd, capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(cwd), "PATH": str(LINT.parent)})


def test_the_package_keeps_every_import_contract():
    done = lint(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout and "KEPT" in done.stdout


def copy_sources(dest: Path) -> None:
    """The package's Python files only (the contracts are about imports), plus pyproject.toml."""
    for src in (ROOT / "sliderstudio").rglob("*.py"):
        target = dest / src.relative_to(ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, target)
    shutil.copyfile(ROOT / "pyproject.toml", dest / "pyproject.toml")


QT, LAYERS, NAMES = "imports Qt", "every import points down", "looked up by name"


@pytest.mark.parametrize(("module", "line", "contracts"), [
    ("sliderstudio/engine/trainer.py", "from PySide6.QtCore import QObject", {QT}),
    ("sliderstudio/families/base.py", "import superqt", {QT}),
    # the GUI imports Qt, so reaching it breaks both
    ("sliderstudio/engine/preview.py", "from sliderstudio.gui import app", {QT, LAYERS}),
    ("sliderstudio/toy/report.py", "import sliderstudio.commands", {QT, LAYERS}),
    # one layer up, no Qt on the way: only the layering breaks
    ("sliderstudio/kernel/atomic.py", "from sliderstudio.config import config", {LAYERS}),
    ("sliderstudio/families/loading.py", "from sliderstudio.adapters import adapters", {LAYERS}),
    ("sliderstudio/engine/calibration.py", "from sliderstudio.toy import metrics", {LAYERS}),
    ("sliderstudio/adapters/targets.py", "import sliderstudio.engine.trainer", {LAYERS}),
    # the engine receives Family objects: a name lookup below the app breaks only that contract
    ("sliderstudio/engine/preview.py", "from sliderstudio.families.registry import get_family", {NAMES}),
    ("sliderstudio/adapters/targets.py", "from sliderstudio.families import detect", {NAMES}),
])
def test_a_wrong_way_import_breaks_a_contract(tmp_path, module, line, contracts):
    copy_sources(tmp_path)
    path = tmp_path / module
    path.write_text(path.read_text() + f"\n{line}  # the wrong way\n")
    done = lint(tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    broken = [row for row in done.stdout.splitlines() if " BROKEN" in row]
    assert {c for c in (QT, LAYERS, NAMES) if any(c in row for row in broken)} == contracts, done.stdout
    assert len(broken) == len(contracts)
    assert module[:-3].replace("/", ".") in done.stdout          # the report names the importer
