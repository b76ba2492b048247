"""GUI tests run offscreen, with the app's config and data folders redirected to temp dirs."""
from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from sliderstudio.config.config import BucketConfig, TrainConfig  # noqa: E402
from sliderstudio.engine.project import Project, save_project  # noqa: E402


@pytest.fixture(autouse=True)
def ui_thread_gc(qapp):
    """As in the app: cyclic GC only on the UI thread while a test runs, and what the test left
    collected here at its end, so no worker thread ever frees a widget (see gui/gc_policy)."""
    from sliderstudio.gui import gc_policy

    collector = gc_policy.install(qapp)
    yield collector
    collector.uninstall()
    collector.deleteLater()


@pytest.fixture(autouse=True)
def no_unexpected_dialogs(monkeypatch: pytest.MonkeyPatch):
    """A modal message box nobody answers would hang the suite offscreen: answer Cancel/Ok at once
    and fail the test that asked, naming the text. Tests that expect a box patch it themselves."""
    from PySide6.QtWidgets import QMessageBox

    asked: list[str] = []

    def stub(kind: str, default: QMessageBox.StandardButton):
        def ask(_parent, _title, text, *args, **kwargs):
            asked.append(f"{kind}: {text}")
            return default
        return ask

    monkeypatch.setattr(QMessageBox, "question", stub("question", QMessageBox.StandardButton.Cancel))
    for kind in ("warning", "critical", "information"):
        monkeypatch.setattr(QMessageBox, kind, stub(kind, QMessageBox.StandardButton.Ok))
    yield asked
    assert not asked, f"unexpected modal dialog(s): {asked}"


@pytest.fixture(autouse=True)
def app_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """Never touch the real user's settings or data folder."""
    dirs = {"config": tmp_path / "user-config", "data": tmp_path / "user-data"}
    monkeypatch.setenv("SLIDERSTUDIO_CONFIG_DIR", str(dirs["config"]))
    monkeypatch.setenv("SLIDERSTUDIO_DATA_DIR", str(dirs["data"]))
    return dirs


def make_images(folder: Path, stems: list[str], size: int = 16, colour=(200, 40, 40)) -> Path:
    """Small PNGs with captions, so a scan finds real, decodable images."""
    folder.mkdir(parents=True, exist_ok=True)
    for stem in stems:
        Image.new("RGB", (size, size), colour).save(folder / f"{stem}.png")
        (folder / f"{stem}.txt").write_text(f"a shape {stem}", encoding="utf-8")
    return folder


@pytest.fixture
def small_project(tmp_path: Path) -> Project:
    """A project with matched positive/negative folders (pairs) and one neutral folder."""
    root = tmp_path / "proj"
    stems = ["a", "b", "c"]
    make_images(root / "data" / "more", stems)
    make_images(root / "data" / "less", stems, colour=(40, 40, 200))
    make_images(root / "data" / "plain", ["x", "y"], colour=(90, 90, 90))
    buckets = [BucketConfig(id="more", instance_data_dir="data/more", slider_strength=0.5),
               BucketConfig(id="less", instance_data_dir="data/less", slider_strength=-0.5),
               BucketConfig(id="plain", instance_data_dir="data/plain")]
    project = Project(root=root, config=TrainConfig(max_train_steps=4, user_prompt_library="prompt_library.json"),
                      buckets=buckets)
    save_project(project)
    return project
