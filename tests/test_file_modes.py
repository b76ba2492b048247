"""Outputs get the permissions the user's umask gives any program's output, and stay atomic.

A real (tiny) training run writes the adapter, checkpoints, metrics.jsonl, validation images and
caches; every file and folder it creates must have 0o666 / 0o777 minus the umask: 0o644 / 0o755
with umask 022 (readable by ComfyUI running as another user), 0o600 / 0o700 with umask 077.
"""
from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest

from sliderstudio.kernel import atomic, file_modes
from sliderstudio.engine.project import load_project
from sliderstudio.engine.trainer import Trainer
from sliderstudio.toy.demo_project import write_demo_project

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX permission bits")

ADAPTER = "pytorch_lora_weights.safetensors"


@pytest.fixture
def set_umask():
    """Set the process umask for one test and put the old one back."""
    old = os.umask(0o022)
    os.umask(old)
    yield os.umask
    os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_umask_is_read_from_proc_without_changing_it(set_umask):
    for mask in (0o022, 0o077, 0o027, 0o002):
        set_umask(mask)
        assert file_modes.umask() == mask
        assert file_modes.file_mode() == 0o666 & ~mask
        assert file_modes.dir_mode() == 0o777 & ~mask
    assert os.umask(0o022) == 0o002, "reading the umask changed it"


def test_without_proc_the_umask_from_import_is_used(monkeypatch, tmp_path):
    monkeypatch.setattr(file_modes, "_UMASK_AT_IMPORT", 0o027)
    monkeypatch.setattr(file_modes, "PROC_STATUS", tmp_path / "missing")
    assert file_modes.umask() == 0o027
    garbled = tmp_path / "status"
    garbled.write_text("Name:\tpython\nUmask:\tnot-octal\n")
    monkeypatch.setattr(file_modes, "PROC_STATUS", garbled)
    assert file_modes.umask() == 0o027
    garbled.write_text("Name:\tpython\nUmask:\t0077\n")
    assert file_modes.umask() == 0o077


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o077, 0o600), (0o027, 0o640), (0o002, 0o664)],
                         ids=["022", "077", "027", "002"])
def test_atomic_writes_get_the_umask_mode(tmp_path, set_umask, mask, expected):
    set_umask(mask)
    atomic.write_json(tmp_path / "a.json", {"x": 1})
    atomic.write_with(tmp_path / "b.bin", lambda p: p.write_bytes(b"written by a library"))
    # a library that deletes and recreates its path gets the same mode
    atomic.write_with(tmp_path / "c.bin", lambda p: (p.unlink(), p.write_bytes(b"recreated")))
    for name in ("a.json", "b.bin", "c.bin"):
        assert mode(tmp_path / name) == expected, name
    assert json.loads((tmp_path / "a.json").read_text()) == {"x": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.bin", "c.bin"], "a temp file was left"


def test_a_failed_write_keeps_the_old_file_and_its_mode(tmp_path, set_umask):
    set_umask(0o022)
    target = tmp_path / "adapter.safetensors"
    atomic.write_bytes(target, b"old")
    target.chmod(0o640)

    def crash(path: Path) -> None:
        path.write_bytes(b"half")
        raise RuntimeError("writer crashed")

    with pytest.raises(RuntimeError, match="writer crashed"):
        atomic.write_with(target, crash)
    assert target.read_bytes() == b"old" and mode(target) == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["adapter.safetensors"]


def demo_project(root: Path, validate: bool = True) -> Path:
    """The toy demo project: 3 steps, a checkpoint after steps 1 and 2, validation images at step 3."""
    write_demo_project(root, pairs=2, max_train_steps=3)
    cfg = json.loads((root / "config.json").read_text())
    cfg.update(checkpointing_steps=1, validation_steps=3 if validate else 0, validation_num_inference_steps=2)
    (root / "config.json").write_text(json.dumps(cfg))
    return root


def new_entries(root: Path, before: set[Path]) -> tuple[list[Path], list[Path]]:
    """Files and folders under `root` that were not there before the run."""
    created = [p for p in root.rglob("*") if p not in before]
    return [p for p in created if p.is_file()], [p for p in created if p.is_dir()]


def assert_outputs(root: Path, before: set[Path], file_mode: int, dir_mode: int, validated: bool = True) -> None:
    out = root / "output"
    assert (out / ADAPTER).stat().st_size > 1000
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 3
    checkpoints = sorted((out / "checkpoints").iterdir())
    assert [p.name for p in checkpoints] == ["checkpoint-000001", "checkpoint-000002"]
    files, dirs = new_entries(root, before)
    assert out / ADAPTER in files and out / "metrics.jsonl" in files
    assert any(p.suffix == ".png" for p in files) == validated, "validation images: expected iff validating"
    assert all(checkpoints[0] / name in files for name in (ADAPTER, "state.json"))
    wrong = {str(p.relative_to(root)): oct(mode(p)) for p in files if mode(p) != file_mode}
    wrong.update({str(p.relative_to(root)) + "/": oct(mode(p)) for p in dirs if mode(p) != dir_mode})
    assert not wrong, f"expected {oct(file_mode)} / {oct(dir_mode)}: {wrong}"


@pytest.mark.parametrize("mask, file_mode, dir_mode, validate",
                         [(0o022, 0o644, 0o755, True), (0o077, 0o600, 0o700, False)], ids=["022", "077"])
def test_a_training_run_writes_outputs_with_the_umask_modes(tmp_path, set_umask, mask, file_mode, dir_mode,
                                                             validate):
    """022: readable by other users (ComfyUI as another user); 077: still private, nothing widened."""
    root = demo_project(tmp_path / "proj", validate=validate)
    before = set(root.rglob("*"))
    set_umask(mask)
    path = Trainer(load_project(root), lambda event: None).run()
    assert path == root / "output" / ADAPTER
    assert_outputs(root, before, file_mode, dir_mode, validated=validate)
