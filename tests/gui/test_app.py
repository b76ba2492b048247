"""Main window and entry point: four areas, File actions, recent projects, window state, screenshot."""
from __future__ import annotations

import json
import signal

import pytest
from PIL import Image
from PySide6.QtWidgets import QGroupBox

from sliderstudio.engine.project import load_project
from sliderstudio.gui import app as gui_app
from sliderstudio.gui.main_window import MainWindow
from sliderstudio.gui.settings import AppSettings
from tests.conftest import make_project


@pytest.fixture
def window(qtbot):
    win = MainWindow()
    qtbot.addWidget(win)
    yield win
    win.shutdown()


@pytest.fixture
def keep_sigint():
    handler = signal.getsignal(signal.SIGINT)
    yield
    signal.signal(signal.SIGINT, handler)


def test_four_areas_and_title(window, small_project, qtbot):
    assert window.open_project(small_project.root)
    assert {b.title() for b in window.findChildren(QGroupBox) if b.objectName().startswith("area")} == \
        {"Dataset", "Architecture", "Training", "Preview"}
    assert window.areas["Preview"].isAncestorOf(window.preview_pane)
    assert window.windowTitle() == "proj — Slider Studio[*]"
    qtbot.waitUntil(lambda: not window.dataset_vm.scanning, timeout=5000)
    assert list(window.dataset_pane.rows) == ["more", "less", "plain"]


def test_recent_projects_and_window_state_persist(window, small_project, app_dirs, qtbot):
    window.open_project(small_project.root)
    window.resize(640, 480)              # fits the offscreen 800×800 screen
    window.columns.setSizes([300, 200, 140])
    window.store_window()
    assert window.writer.flush()          # settings are written on the writer thread
    stored = json.loads((app_dirs["config"] / "settings.json").read_text())
    assert stored["recent"] == [str(small_project.root.resolve())]
    assert [a.text() for a in window.recent_menu.actions()] == [str(small_project.root.resolve())]
    again = MainWindow()
    qtbot.addWidget(again)
    assert (again.size().width(), again.size().height()) == (640, 480)
    assert again.columns.sizes() == window.columns.sizes()
    assert again.settings.recent == stored["recent"]
    again.recent_menu.actions()[0].trigger()
    assert again.project_vm.project.root == small_project.root.resolve()
    again.shutdown()


def test_new_save_as_and_bad_project(window, small_project, tmp_path, qtbot):
    assert window.new_project(tmp_path / "fresh")
    assert window.project_vm.flush()
    fresh = load_project(tmp_path / "fresh")
    assert fresh.buckets == [] and fresh.config.user_prompt_library == "prompt_library.json"
    window.open_project(small_project.root)
    window.dataset_vm.set_strength("plain", 0.25)
    assert window.isWindowModified()
    assert window.save_as(tmp_path / "copy")
    assert not window.isWindowModified()
    assert window.project_vm.flush()
    copy = load_project(tmp_path / "copy")
    plain = next(b for b in copy.buckets if b.id == "plain")
    assert plain.slider_strength == 0.25
    assert copy.bucket_dir(plain) == (small_project.root / "data" / "plain").resolve()   # same images
    assert load_project(small_project.root).buckets[2].slider_strength == 0.0            # original untouched
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text('{"lora_rnak": 4}')
    assert not window.open_project(tmp_path / "bad")
    assert "did you mean 'lora_rank'" in window.last_error
    assert window.project_vm.project.root == (tmp_path / "copy").resolve()               # still open


def test_settings_file_damage_is_harmless(app_dirs):
    app_dirs["config"].mkdir(parents=True)
    (app_dirs["config"] / "settings.json").write_text("{not json")
    assert AppSettings.load().recent == []


def test_screenshot_of_a_project(tmp_path, tiny_models, keep_sigint, app_dirs):
    root = make_project(tmp_path / "shot-project", tiny_models["sd1x"],
                        config={"validation_prompt": "a photo of a red square",
                                "validation_num_inference_steps": 2})
    out = tmp_path / "shot.png"
    assert gui_app.main(str(root), str(out)) == 0
    image = Image.open(out)
    assert image.size[0] >= 1200 and image.size[1] >= 700
    assert len(set(image.resize((64, 64)).getdata())) > 20            # a real picture, not a blank
    assert signal.getsignal(signal.SIGINT) is signal.SIG_DFL
    recent = json.loads((app_dirs["config"] / "settings.json").read_text())["recent"]
    assert recent == [str(root.resolve())]


def test_no_argument_opens_the_demo_project(tmp_path, keep_sigint, app_dirs, monkeypatch):
    monkeypatch.setattr(gui_app, "wait_until_settled", lambda window, timeout_s=0: None)
    assert gui_app.main(None, str(tmp_path / "demo.png")) == 0
    demo = app_dirs["data"] / "demo"
    project = load_project(demo)
    # the demo draws each pair at 4 intensities: 4 positive and 4 negative buckets
    assert sorted(b.role for b in project.buckets) == ["negative"] * 4 + ["neutral"] + ["positive"] * 4
    assert (tmp_path / "demo.png").exists()


def test_bad_project_argument_exits_2(tmp_path, keep_sigint, capsys):
    assert gui_app.main(str(tmp_path / "nowhere"), str(tmp_path / "x.png")) == 2
    assert "no such config file or project folder" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()
