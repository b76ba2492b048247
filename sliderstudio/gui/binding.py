"""Observable properties on view-models and one `bind` helper that ties a property to a widget.

Why: the panes used to wire every field by hand, twice (widget → view-model in a lambda, view-model
→ widget in a refresh method with signals blocked), and each pair could drift from the other. A
`Property` announces its own changes (`<name>_changed`, carrying the new value), and
`bind(model, "name", widget)` connects both directions once:

- model → widget: on `<name>_changed` the widget shows the value, with the widget's signals blocked
  and only when it differs, so a repaint never echoes back as an edit;
- widget → model: the widget's edit signal assigns the property; an assignment equal to the current
  value emits nothing, which ends any loop.

A model may refuse an assignment (validation): it then emits `<name>_changed` with the value it
kept, and the widget shows that value again.

The connections hang off a small `Binding` object parented to the widget, so when a widget (say a
bucket row) is deleted, Qt drops the model's connection with it: a long-lived view-model never calls
into a deleted widget.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from PySide6.QtCore import QObject, SignalInstance
from PySide6.QtWidgets import QAbstractSpinBox, QCheckBox, QComboBox, QLineEdit, QWidget
from superqt import QLabeledDoubleSlider, QLabeledSlider
from superqt.utils import signals_blocked

Convert = Callable[[Any], Any]


def signal_name(name: str) -> str:
    """The signal a model declares for property `name`."""
    return f"{name}_changed"


class Property:
    """An observable attribute of a QObject view-model.

    The class declares the matching signal, `<name>_changed = Signal(object)`; assigning a value
    different from the current one stores it and emits that signal with it. `check(obj, value)`
    may normalise the value (its return value is stored) or raise ValueError to refuse it.
    """

    def __init__(self, default: Any = None, check: Callable[[Any, Any], Any] | None = None):
        self.default = default
        self.check = check
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name
        if not hasattr(owner, signal_name(name)):
            raise TypeError(f"{owner.__name__}.{name}: declare `{signal_name(name)} = Signal(object)` on the class")

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self
        return obj.__dict__.get(self.name, self.default)

    def __set__(self, obj: Any, value: Any) -> None:
        if self.check is not None:
            try:
                value = self.check(obj, value)
            except ValueError:
                getattr(obj, signal_name(self.name)).emit(self.__get__(obj))   # the widget shows the kept value
                raise
        if self.__get__(obj) == value:
            return
        obj.__dict__[self.name] = value
        getattr(obj, signal_name(self.name)).emit(value)


class Delegated(Property):
    """A property whose value lives elsewhere (the project's config, one bucket, one text pair).

    The owner supplies `read(name)` and `edit(name, value) -> message | None`; it emits
    `<name>_changed` itself when the stored value changes. A refused edit re-sends the kept value
    (the widget shows it again) and raises ValueError with the message.
    """

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self
        return obj.read(self.name)

    def __set__(self, obj: Any, value: Any) -> None:
        message = obj.edit(self.name, value)
        if message is not None:
            getattr(obj, signal_name(self.name)).emit(obj.read(self.name))
            raise ValueError(message)


@dataclass(frozen=True)
class WidgetAccess:
    """How to read, write and watch one kind of widget."""

    read: Callable[[QWidget], Any]
    write: Callable[[QWidget, Any], None]
    edited: Callable[[QWidget], SignalInstance]


def _combo_read(combo: QComboBox) -> Any:
    data = combo.currentData()
    return data if data is not None else combo.currentText()


def _combo_write(combo: QComboBox, value: Any) -> None:
    index = combo.findData(value)
    if index < 0:
        index = combo.findText("" if value is None else str(value))
    if index >= 0:
        combo.setCurrentIndex(index)
    elif combo.isEditable():
        combo.setEditText("" if value is None else str(value))


def _line_edited(edit: QLineEdit) -> SignalInstance:
    return edit.editingFinished


def _combo_edited(combo: QComboBox) -> SignalInstance:
    """`activated`: the user's choice only, never a programmatic change (the model's own repaint)."""
    return combo.activated


def _set_number(widget: QWidget, value: Any) -> None:
    """None (no project open yet) leaves a number widget as it is: it has no empty state."""
    if value is not None:
        widget.setValue(value)


# Order matters: the first entry whose class the widget is an instance of wins.
ACCESS: tuple[tuple[type, WidgetAccess], ...] = (
    (QLineEdit, WidgetAccess(lambda w: w.text(), lambda w, v: w.setText("" if v is None else str(v)), _line_edited)),
    (QCheckBox, WidgetAccess(lambda w: w.isChecked(), lambda w, v: w.setChecked(bool(v)), lambda w: w.toggled)),
    (QComboBox, WidgetAccess(_combo_read, _combo_write, _combo_edited)),
    (QAbstractSpinBox, WidgetAccess(lambda w: w.value(), _set_number, lambda w: w.valueChanged)),
    (QLabeledDoubleSlider, WidgetAccess(lambda w: w.value(), _set_number, lambda w: w.valueChanged)),
    (QLabeledSlider, WidgetAccess(lambda w: w.value(), _set_number, lambda w: w.valueChanged)),
)


def access_for(widget: QWidget) -> WidgetAccess:
    """The read/write/edit trio for a widget kind; TypeError names a kind `bind` does not know."""
    for kind, access in ACCESS:
        if isinstance(widget, kind):
            return access
    raise TypeError(f"bind: no binding for {type(widget).__name__} (known: "
                    + ", ".join(kind.__name__ for kind, _ in ACCESS) + ")")


class Binding(QObject):
    """One property ↔ one widget; a child of the widget, so it dies (and disconnects) with it."""

    def __init__(self, model: QObject, name: str, widget: QWidget, to_widget: Convert | None = None,
                 to_model: Convert | None = None):
        super().__init__(widget)
        self.model, self.name, self.widget = model, name, widget
        self.access = access_for(widget)
        self._to_widget = to_widget or (lambda v: v)
        self._to_model = to_model or (lambda v: v)
        changed = getattr(model, signal_name(name), None)
        if changed is None:
            raise TypeError(f"bind: {type(model).__name__} has no signal {signal_name(name)!r}")
        changed.connect(self.show)
        self.access.edited(widget).connect(self.commit)
        self.show(getattr(model, name))

    def show(self, value: Any) -> None:
        """Model → widget, silently and only on a difference (no echo back into the model)."""
        shown = self._to_widget(value)
        if self.access.read(self.widget) != shown:
            with signals_blocked(self.widget):
                self.access.write(self.widget, shown)

    def commit(self, *_args: Any) -> None:
        """Widget → model; a refused value is answered by the model re-emitting what it kept."""
        try:
            setattr(self.model, self.name, self._to_model(self.access.read(self.widget)))
        except ValueError:
            pass


def bind(model: QObject, name: str, widget: QWidget, to_widget: Convert | None = None,
         to_model: Convert | None = None) -> Binding:
    """Two-way link between `model.<name>` (announced by `<name>_changed`) and `widget`.

    `to_widget` / `to_model` convert between the stored value and what the widget shows (e.g. None
    as an empty text). Returns the Binding (owned by the widget).
    """
    return Binding(model, name, widget, to_widget, to_model)
