"""File → Open on a SimpleTuner project folder: it opens as is and a dialog lists mapped / ignored keys."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PySide6.QtWidgets import QFileDialog, QMessageBox

from sliderstudio.gui.main_window import MainWindow
from tests.gui.conftest import make_images

EXAMPLE = Path(__file__).resolve().parents[1] / "data" / "simpletuner" / "sdxl-lora"


@pytest.fixture
def window(qtbot):
    win = MainWindow()
    qtbot.addWidget(win)
    yield win
    win.shutdown()


@pytest.fixture
def simpletuner_root(tmp_path: Path) -> Path:
    root = tmp_path / "SimpleTuner"
    shutil.copytree(EXAMPLE, root / "config")
    config = root / "config" / "config.json"  # no hub id: the preview must not try to fetch a model
    config.write_text(json.dumps({**json.loads(config.read_text()), "--pretrained_model_name_or_path": "/no/model"}))
    for entry in json.loads((root / "config" / "multidatabackend.json").read_text()):
        if entry.get("instance_data_dir"):
            make_images(root / entry["instance_data_dir"], ["a", "b"])
    return root


def report_box(window: MainWindow) -> QMessageBox:
    boxes = [b for b in window.findChildren(QMessageBox) if b.objectName() == "simpletunerKeyReport"]
    assert len(boxes) == 1
    return boxes[0]


def test_open_folder_shows_mapped_and_ignored_keys(window, simpletuner_root, qtbot, monkeypatch):
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: str(simpletuner_root))
    window.open_project_dialog()          # File → Open project…
    assert window.project_vm.project.root == simpletuner_root.resolve()
    assert window.project_vm.config.checkpointing_steps == 250
    box = report_box(window)
    qtbot.waitUntil(box.isVisible, timeout=2000)
    assert "2 mapped" in box.text() and "ignored" in box.text()
    detail = box.detailedText()
    assert "checkpoint_step_interval → checkpointing_steps" in detail
    assert "validation_step_interval → validation_steps" in detail
    assert "push_to_hub: nothing is uploaded" in detail and "report_to: no tracking" in detail
    assert "snr_gamma" not in detail      # min-SNR weighting is honoured now, not ignored
    box.button(QMessageBox.StandardButton.Ok).click()   # auto-accept
    qtbot.waitUntil(lambda: not box.isVisible(), timeout=2000)


def test_open_config_file_and_no_report_for_our_own_projects(window, simpletuner_root, small_project, monkeypatch):
    config = simpletuner_root / "config" / "config.json"
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(config), ""))
    window.open_config_dialog()           # File → Open config file…
    assert window.project_vm.project.config_path == config.resolve()
    assert report_box(window)
    for box in window.findChildren(QMessageBox):
        box.setObjectName("")
    assert window.open_project(small_project.root)
    assert not [b for b in window.findChildren(QMessageBox) if b.objectName() == "simpletunerKeyReport"]


def test_bad_choice_in_a_simpletuner_config_is_an_error_box(window, simpletuner_root):
    config = simpletuner_root / "config" / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "--report_to": "mlflow"}))
    assert not window.open_project(simpletuner_root)
    assert "report_to" in window.last_error and "mlflow" in window.last_error
