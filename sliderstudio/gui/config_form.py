"""Form rows generated from the config's Field metadata and bound to a `ConfigFields` model.

Why: the pane that shows a config key should say only *which* keys it shows and where; the label,
range, step, help text and choices come from the Field (`gui/field_specs.py`), and the value flows
through `bind` (`gui/binding.py`). A Field's range or label changes, the form follows; no GUI code
restates it.
"""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from PySide6.QtWidgets import QCheckBox, QComboBox, QDoubleSpinBox, QGridLayout, QLabel, QLineEdit, QSpinBox, QWidget

from sliderstudio.gui.binding import bind
from sliderstudio.gui.field_specs import FieldSpec, field_spec
from sliderstudio.gui.tooltips import bind_tooltip
from sliderstudio.gui.viewmodels.config_fields import ConfigFields

OFF = "off"  # what an optional number's spin box shows for None


def make_widget(spec: FieldSpec) -> QWidget:
    """The editor for one field, with the Field's range, step and choices."""
    if spec.kind == "int":
        return QSpinBox(minimum=int(spec.minimum), maximum=int(spec.maximum), singleStep=int(spec.step))
    if spec.kind == "float":
        box = QDoubleSpinBox(decimals=spec.decimals, minimum=spec.minimum, maximum=spec.maximum,
                             singleStep=spec.step)
        if spec.optional:  # one tick below the Field's range shows "off" and stands for None
            box.setMinimum(spec.minimum - 10 ** -spec.decimals)
            box.setSpecialValueText(OFF)
        return box
    if spec.kind == "bool":
        return QCheckBox()
    if spec.kind == "choice":
        combo = QComboBox()
        for choice in spec.choices:
            combo.addItem(str(choice), choice)
        return combo
    return QLineEdit()


def bind_field(fields: ConfigFields, spec: FieldSpec, widget: QWidget) -> None:
    """Bind with the conversions a spec needs: an optional text shows None as empty and back; an
    optional number shows None as "off", its spin box's lowest value."""
    if spec.kind == "text" and spec.optional:
        bind(fields, spec.key, widget, to_model=lambda text: text.strip() or None)
    elif spec.kind == "float" and spec.optional:
        off = widget.minimum()
        bind(fields, spec.key, widget, to_widget=lambda value: off if value is None else value,
             to_model=lambda value: None if value <= off else value)
    else:
        bind(fields, spec.key, widget)


def add_rows(grid: QGridLayout, fields: ConfigFields, model: type[BaseModel], keys: tuple[str, ...],
             columns: int = 1) -> dict[str, QWidget]:
    """One label + editor per key, `columns` pairs per grid row; returns key → editor."""
    editors: dict[str, Any] = {}
    for index, key in enumerate(keys):
        spec = field_spec(model, key)
        widget = make_widget(spec)
        bind_tooltip(widget, key, model=model)
        label = QLabel(spec.label)
        label.setToolTip(widget.toolTip())
        label.setBuddy(widget)
        row, column = divmod(index, columns)
        grid.addWidget(label, row, column * 2)
        grid.addWidget(widget, row, column * 2 + 1)
        bind_field(fields, spec, widget)
        editors[key] = widget
    return editors
