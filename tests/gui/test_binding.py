"""gui/binding.py: observable properties and the two-way `bind` for every widget kind the forms use."""
from __future__ import annotations

import pytest
from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QCheckBox, QComboBox, QDoubleSpinBox, QLineEdit, QPlainTextEdit, QSpinBox
from superqt import QLabeledDoubleSlider, QLabeledSlider

from sliderstudio.gui.binding import Property, bind


def _no_negatives(_obj, value):
    if isinstance(value, (int, float)) and value < 0:
        raise ValueError("negative")
    return value


class Model(QObject):
    """A view-model with one property of each value type the widgets show; counts its assignments."""

    text_changed = Signal(object)
    number_changed = Signal(object)
    ratio_changed = Signal(object)
    flag_changed = Signal(object)
    choice_changed = Signal(object)

    text = Property("")
    number = Property(3, check=_no_negatives)
    ratio = Property(0.5, check=_no_negatives)
    flag = Property(False)
    choice = Property("b")


def emitted(signal) -> list:
    seen: list = []
    signal.connect(seen.append)
    return seen


def test_property_emits_once_per_real_change(qapp):
    model = Model()
    seen = emitted(model.number_changed)
    model.number = 5
    model.number = 5                                  # equal: no signal, so no loop can start
    model.number = 7
    assert seen == [5, 7] and model.number == 7
    assert Model().number == 3                        # each instance has its own value; the default stays


def test_property_check_refuses_and_resends_the_kept_value(qapp):
    model = Model()
    model.number = 4
    seen = emitted(model.number_changed)
    with pytest.raises(ValueError, match="negative"):
        model.number = -1
    assert model.number == 4 and seen == [4]          # the widget is told what was kept


def test_property_needs_its_signal_declared():
    with pytest.raises((TypeError, RuntimeError)) as info:   # Python < 3.12 wraps __set_name__ errors
        class Broken(QObject):
            size = Property(1)
    error = info.value.__cause__ or info.value
    assert isinstance(error, TypeError) and "declare `size_changed = Signal(object)`" in str(error)


@pytest.mark.parametrize("make, key, user_edit, shown_after_model_change", [
    (lambda: QSpinBox(maximum=100), "number", lambda w: w.setValue(9), (12, lambda w: w.value())),
    (lambda: QDoubleSpinBox(maximum=10.0, decimals=2), "ratio", lambda w: w.setValue(2.25),
     (1.5, lambda w: w.value())),
    (lambda: QCheckBox(), "flag", lambda w: w.setChecked(True), (False, lambda w: w.isChecked())),
    (lambda: QLabeledDoubleSlider(minimum=0.0, maximum=5.0), "ratio", lambda w: w.setValue(2.5),
     (4.0, lambda w: w.value())),
    (lambda: QLabeledSlider(minimum=0, maximum=50), "number", lambda w: w.setValue(20), (30, lambda w: w.value())),
])
def test_bind_two_way_without_echo(qtbot, make, key, user_edit, shown_after_model_change):
    model = Model()
    widget = make()
    qtbot.addWidget(widget)
    bind(model, key, widget)
    assert shown_after_model_change[1](widget) == getattr(model, key)    # the widget starts at the model's value
    changes = emitted(getattr(model, f"{key}_changed"))
    user_edit(widget)
    assert getattr(model, key) == shown_after_model_change[1](widget)
    assert len(changes) == 1                                             # one edit, one change: no echo
    value, read = shown_after_model_change
    setattr(model, key, value)
    assert read(widget) == value and len(changes) == 2


def test_bind_line_edit_commits_when_editing_finishes(qtbot):
    model = Model()
    edit = QLineEdit()
    qtbot.addWidget(edit)
    bind(model, "text", edit, to_widget=lambda v: v or "", to_model=lambda t: t.strip() or None)
    edit.setText("  a prompt ")
    assert model.text == ""                       # typing alone changes nothing …
    edit.editingFinished.emit()
    assert model.text == "a prompt"               # … leaving the field commits, through the converter
    model.text = None
    assert edit.text() == ""


def test_bind_combo_uses_item_data_and_user_choice_only(qtbot):
    model = Model()
    combo = QComboBox()
    for label, value in (("Alpha", "a"), ("Beta", "b"), ("Gamma", "c")):
        combo.addItem(label, value)
    qtbot.addWidget(combo)
    bind(model, "choice", combo)
    assert combo.currentText() == "Beta"
    model.choice = "c"
    assert combo.currentText() == "Gamma"
    combo.setCurrentIndex(0)                      # a programmatic change is not the user's choice
    assert model.choice == "c"
    combo.activated.emit(0)                       # the user picks "Alpha"
    assert model.choice == "a"


def test_refused_edit_puts_the_kept_value_back(qtbot):
    model = Model()
    spin = QSpinBox(minimum=-10, maximum=10)
    qtbot.addWidget(spin)
    bind(model, "number", spin)
    spin.setValue(-4)                            # the model's check refuses negatives
    assert model.number == 3 and spin.value() == 3


def test_binding_ends_with_its_widget(qtbot):
    model = Model()
    spin = QSpinBox(maximum=100)
    binding = bind(model, "number", spin)
    assert binding.parent() is spin
    destroyed = []
    binding.destroyed.connect(lambda: destroyed.append(True))
    spin.deleteLater()
    qtbot.waitUntil(lambda: destroyed == [True], timeout=2000)
    model.number = 42                            # must not call into the deleted widget


def test_bind_refuses_unknown_widgets_and_properties(qtbot):
    model = Model()
    text = QPlainTextEdit()
    qtbot.addWidget(text)
    with pytest.raises(TypeError, match="no binding for QPlainTextEdit"):
        bind(model, "text", text)
    with pytest.raises(TypeError, match="has no signal 'missing_changed'"):
        bind(model, "missing", QSpinBox())
