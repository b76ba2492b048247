"""Dataset pane, bucket-free mode: add / edit / remove text pairs, refused edits, saved to config.json."""
from __future__ import annotations

import json

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QToolButton

from sliderstudio.engine.project import load_project
from sliderstudio.gui.dataset_pane import DatasetPane
from sliderstudio.gui.viewmodels.dataset import DatasetViewModel
from sliderstudio.gui.viewmodels.project import ProjectViewModel
from sliderstudio.gui.workers.tasks import TaskRunner


@pytest.fixture
def pane(qtbot, small_project):
    tasks = TaskRunner()
    pvm = ProjectViewModel()
    widget = DatasetPane(DatasetViewModel(pvm, tasks))
    qtbot.addWidget(widget)
    pvm.set_project(small_project)
    qtbot.waitUntil(lambda: not widget.vm.scanning, timeout=5000)
    yield widget
    tasks.wait()


def type_into(qtbot, edit, text: str) -> None:
    edit.clear()
    qtbot.keyClicks(edit, text)
    qtbot.keyClick(edit, Qt.Key.Key_Return)   # editingFinished commits


def test_add_edit_and_save_a_text_pair_next_to_the_buckets(pane, qtbot, small_project):
    section = pane.text_section
    assert section.rows == [] and list(pane.rows) == ["more", "less", "plain"]
    qtbot.mouseClick(section.add_button, Qt.MouseButton.LeftButton)
    assert len(section.rows) == 1
    row = section.rows[0]
    type_into(qtbot, row.prompts["positive"], "a large red circle")
    type_into(qtbot, row.prompts["negative"], "a small red circle")
    type_into(qtbot, row.prompts["neutral"], "a red circle")
    row.anchors.setPlainText("a blue square\n\na green triangle, on white")
    row.guidance.setValue(2.5)
    pair = pane.vm.project_vm.config.slider_text_pairs[0]
    assert (pair.positive, pair.negative, pair.neutral) == ("a large red circle", "a small red circle", "a red circle")
    assert pair.anchors == ["a blue square", "a green triangle, on white"] and pair.guidance == 2.5
    assert pane.vm.project_vm.dirty
    assert row.title.text() == "Text pair 'text-1'"
    pane.vm.project_vm.save()
    assert pane.vm.project_vm.flush()
    saved = json.loads((small_project.root / "config.json").read_text())["slider_text_pairs"]
    assert saved == [{"positive": "a large red circle", "negative": "a small red circle", "neutral": "a red circle",
                      "anchors": ["a blue square", "a green triangle, on white"], "guidance": 2.5}]
    again = load_project(small_project.root)      # the engine reads what the app wrote
    assert again.config.slider_text_pairs == pane.vm.project_vm.config.slider_text_pairs
    assert [b.id for b in again.buckets] == ["more", "less", "plain"]   # image buckets untouched


def test_a_refused_edit_changes_nothing_and_says_why(pane, qtbot):
    qtbot.mouseClick(pane.text_section.add_button, Qt.MouseButton.LeftButton)
    row = pane.text_section.rows[0]
    before = pane.vm.project_vm.config.slider_text_pairs[0]
    type_into(qtbot, row.prompts["negative"], before.positive)      # same prompt on both sides
    assert pane.vm.project_vm.config.slider_text_pairs[0] == before
    assert row.prompts["negative"].text() == before.negative        # the field shows the stored value again
    assert not pane.notice.isHidden()
    assert "positive and negative are the same prompt" in pane.notice_label.text()


def test_remove_and_reload_rebuild_the_rows(pane, qtbot, small_project):
    for _ in range(2):
        qtbot.mouseClick(pane.text_section.add_button, Qt.MouseButton.LeftButton)
    assert [r.title.text() for r in pane.text_section.rows] == ["Text pair 'text-1'", "Text pair 'text-2'"]
    type_into(qtbot, pane.text_section.rows[1].prompts["positive"], "a large blue square")
    qtbot.mouseClick(pane.text_section.rows[0].findChild(QToolButton, "removePair"), Qt.MouseButton.LeftButton)
    pairs = pane.vm.project_vm.config.slider_text_pairs
    assert len(pairs) == 1 and pairs[0].positive == "a large blue square"
    assert len(pane.text_section.rows) == 1
    assert pane.text_section.rows[0].prompts["positive"].text() == "a large blue square"
    pane.vm.project_vm.set_project(load_project(small_project.root))   # the saved file has no pairs
    assert pane.text_section.rows == []


def test_number_fields_offer_the_pairs_field_ranges(pane, qtbot):
    """Guidance and strength ranges are TextPair's gt/le (the row used to declare 0.05 … 50 / 10 itself)."""
    from sliderstudio.config.text_pairs import TextPair
    from sliderstudio.gui.field_specs import field_spec

    qtbot.mouseClick(pane.text_section.add_button, Qt.MouseButton.LeftButton)
    row = pane.text_section.rows[0]
    for key in ("guidance", "strength"):
        spec = field_spec(TextPair, key)
        widget = getattr(row, key)
        assert (widget.minimum(), widget.maximum()) == (pytest.approx(spec.minimum), spec.maximum)
        assert spec.maximum == next(m.le for m in TextPair.model_fields[key].metadata if hasattr(m, "le"))
    row.strength.setValue(7.5)
    assert pane.vm.project_vm.config.slider_text_pairs[0].strength == 7.5
