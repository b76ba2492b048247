"""Dataset pane: drops (folders, a file, a mixed drop), role/strength consistency, badges, JSON."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication

from sliderstudio.gui.dataset_pane import DatasetPane
from sliderstudio.gui.viewmodels.dataset import DatasetViewModel
from sliderstudio.gui.viewmodels.project import ProjectViewModel
from sliderstudio.gui.workers.tasks import TaskRunner
from tests.gui.conftest import make_images


@pytest.fixture
def pane(qtbot, small_project):
    tasks = TaskRunner()
    pvm = ProjectViewModel()
    vm = DatasetViewModel(pvm, tasks)
    widget = DatasetPane(vm)
    qtbot.addWidget(widget)
    pvm.set_project(small_project)
    qtbot.waitUntil(lambda: not vm.scanning, timeout=5000)
    yield widget
    tasks.wait()


def drop(widget, paths: list[Path]) -> QDropEvent:
    """A synthetic drag-enter + drop of local paths, as a file manager sends them."""
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    enter = QDragEnterEvent(QPoint(10, 10), Qt.DropAction.CopyAction, mime,
                            Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget, enter)
    assert enter.isAccepted()
    event = QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, mime,
                       Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget, event)
    return event


def test_loaded_rows_show_counts_thumbnails_and_pairing(pane):
    assert list(pane.rows) == ["more", "less", "plain"]
    assert pane.rows["more"].count_label.text() == "3 images"
    assert pane.rows["plain"].count_label.text() == "2 images"
    assert sum(t.pixmap() is not None and not t.pixmap().isNull() for t in pane.rows["more"].thumbs) == 3
    assert pane.balance_label.text() == "positive 3 · negative 3 · neutral 2 images"
    assert pane.pairing_label.text().startswith("Paired mode: 3 pairs (more ↔ less)")
    assert pane.warning_label.isHidden()
    assert pane.rows["less"].role_buttons["negative"].isChecked()


def test_drop_two_folders_adds_two_buckets(pane, qtbot, tmp_path):
    a = make_images(tmp_path / "drop" / "sunny", ["p", "q"])
    b = make_images(tmp_path / "drop" / "rainy day", ["p"])
    drop(pane, [a, b])
    qtbot.waitUntil(lambda: not pane.vm.scanning, timeout=5000)
    assert list(pane.rows)[-2:] == ["sunny", "rainy-day"]
    assert pane.vm.bucket("rainy-day").instance_data_dir == str(b.resolve())
    assert pane.rows["sunny"].count_label.text() == "2 images"
    assert pane.notice.isHidden()


def test_dropping_a_file_is_refused_with_a_reason(pane, tmp_path):
    image = make_images(tmp_path / "loose", ["only"]) / "only.png"
    before = list(pane.rows)
    drop(pane, [image])
    assert list(pane.rows) == before
    assert not pane.notice.isHidden()
    text = pane.notice_label.text()
    assert "only.png" in text and "single image" in text and "folder" in text


def test_mixed_drop_adds_folders_and_explains_the_rest(pane, qtbot, tmp_path):
    folder = make_images(tmp_path / "mix" / "extra", ["e"])
    note = tmp_path / "mix" / "notes.pdf"
    note.write_bytes(b"%PDF")
    existing = pane.vm.folder_of("more")
    drop(pane, [folder, note, existing])
    qtbot.waitUntil(lambda: not pane.vm.scanning, timeout=5000)
    assert "extra" in pane.rows
    text = pane.notice_label.text()
    assert "notes.pdf: is a file, not a folder" in text
    assert "more: is already a bucket" in text


def test_new_buckets_fill_roles_and_strength_slider_sets_role(pane):
    vm = pane.vm
    row = pane.rows["plain"]
    row.strength.setValue(-0.31)                 # the dial below 0 …
    assert vm.bucket("plain").slider_strength == -0.3
    assert row.role_buttons["negative"].isChecked()  # … makes the role negative
    row.role_buttons["positive"].click()          # positive flips the sign, keeps the size
    assert vm.bucket("plain").slider_strength == 0.3
    assert row.strength.value() == pytest.approx(0.3)
    row.role_buttons["neutral"].click()
    assert vm.bucket("plain").slider_strength == 0.0
    row.role_buttons["negative"].click()          # leaving neutral restores the last magnitude
    assert vm.bucket("plain").slider_strength == -0.3
    row.strength.setValue(0.0)
    assert row.role_buttons["neutral"].isChecked()


def test_balance_warning_and_problem_badges(pane, qtbot, tmp_path):
    vm = pane.vm
    vm.set_role("plain", "positive")            # 5 positive vs 3 negative
    assert "5" in pane.warning_label.text() and "3" in pane.warning_label.text()
    assert not pane.warning_label.isHidden()
    folder = vm.folder_of("less")
    (folder / "readme.md").write_text("hi")
    (folder / "broken.png").write_bytes(b"not a png")
    empty = tmp_path / "empty"
    empty.mkdir()
    vm.rescan("less")
    vm.add_folders([empty])
    qtbot.waitUntil(lambda: not vm.scanning, timeout=5000)
    less = pane.rows["less"]
    assert less.badge.text() == "⚠ 2 problems"
    assert "readme.md: not an image file" in less.problems_label.text()
    assert "broken.png" in less.problems_label.text()
    assert pane.rows["empty"].badge.text() == "⚠ 1 problem"
    assert "no usable images" in pane.rows["empty"].problems_label.text()
    assert pane.rows["empty"].count_label.text() == "0 images"


def test_edits_validate_and_save_to_dataloader_json(pane, qtbot):
    vm, pvm = pane.vm, pane.vm.project_vm
    row = pane.rows["more"]
    row.probability.setValue(2.5)
    row.repeats.setValue(3)
    row.caption.setCurrentIndex(2)
    row.caption.activated.emit(2)               # instanceprompt needs a prompt: one is filled in
    assert vm.bucket("more").caption_strategy == "instanceprompt"
    assert vm.bucket("more").instance_prompt == "more"
    assert not row.instance_prompt.isHidden()
    assert pvm.dirty
    pvm.save().result(timeout=10)              # written on the file-writer thread
    data = json.loads(pvm.project.dataloader_path.read_text())
    more = next(d for d in data if d["id"] == "more")
    assert more == {"id": "more", "instance_data_dir": "data/more", "caption_strategy": "instanceprompt",
                    "instance_prompt": "more", "probability": 2.5, "repeats": 3, "slider_strength": 0.5}
    assert vm.set_field("more", probability=-1) is not None   # rejected, with the key named
    assert "probability" in pane.notice_label.text()
    assert vm.bucket("more").probability == 2.5


def test_remove_bucket(pane):
    pane.vm.remove_bucket("plain")
    assert list(pane.rows) == ["more", "less"]
    assert [b.id for b in pane.vm.project_vm.project.buckets] == ["more", "less"]


def test_tooltips_name_config_keys(pane):
    row = pane.rows["more"]
    for widget, key in ((row.strength, "slider_strength"), (row.probability, "probability"),
                        (row.repeats, "repeats"), (row.caption, "caption_strategy")):
        assert widget.property("configKey") == key
        assert f"<code>{key}</code>" in widget.toolTip()
