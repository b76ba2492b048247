"""The dataset pane's bucket-free mode: text pairs (positive / negative prompts, no images).

Each row edits one entry of slider_text_pairs: positive, negative and neutral prompts, anchor
prompts (one per line), the guidance factor η and the training strength. Rows only forward input to
the TextPairsViewModel and repaint from it; a refused edit puts the stored value back.
"""
from __future__ import annotations

from PySide6.QtWidgets import (
    QDoubleSpinBox, QFormLayout, QFrame, QHBoxLayout, QLabel, QLineEdit, QPlainTextEdit, QPushButton, QToolButton,
    QVBoxLayout, QWidget,
)
from superqt.utils import signals_blocked

from sliderstudio.config.text_pairs import TextPair
from sliderstudio.gui.binding import bind
from sliderstudio.gui.field_specs import field_spec
from sliderstudio.gui.viewmodels.text_pair_fields import TextPairFields
from sliderstudio.gui.viewmodels.text_pairs import TextPairsViewModel, split_anchors

HINT = ("Text pairs need no images: the slider learns to move the base model's own prediction from the "
        "negative prompt towards the positive one. They train alone or together with the image buckets above.")
PROMPTS = ("positive", "negative", "neutral")


def tip(field: str) -> str:
    return TextPair.model_fields[field].description or ""


class TextPairRow(QFrame):
    def __init__(self, vm: TextPairsViewModel, index: int, parent: QWidget | None = None):
        super().__init__(parent)
        self.vm, self.index = vm, index
        self.fields = TextPairFields(vm, index, self)
        self.setObjectName(f"textPair-{index}")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 6, 8, 6)
        header = QHBoxLayout()
        self.title = QLabel(styleSheet="font-weight: 600;")
        remove = QToolButton(text="✕", toolTip="Remove this text pair", objectName="removePair")
        remove.clicked.connect(lambda: self.vm.remove_pair(self.index))
        header.addWidget(self.title, 1)
        header.addWidget(remove)
        layout.addLayout(header)
        form = QFormLayout()
        self.prompts: dict[str, QLineEdit] = {}
        for field in PROMPTS:
            edit = QLineEdit(objectName=field, toolTip=tip(field))
            bind(self.fields, field, edit)
            self.prompts[field] = edit
            form.addRow(field.capitalize(), edit)
        self.anchors = QPlainTextEdit(objectName="anchors", toolTip=tip("anchors") + " (one per line)")
        self.anchors.setFixedHeight(48)
        self.anchors.textChanged.connect(lambda: self._commit(anchors=split_anchors(self.anchors.toPlainText())))
        form.addRow("Anchors", self.anchors)
        numbers = QHBoxLayout()
        self.guidance = self._spin("guidance")
        self.strength = self._spin("strength")
        numbers.addWidget(QLabel("Guidance η"))
        numbers.addWidget(self.guidance)
        numbers.addWidget(QLabel("Strength ±"))
        numbers.addWidget(self.strength)
        numbers.addStretch(1)
        form.addRow(numbers)
        layout.addLayout(form)
        self.refresh()

    def _spin(self, field: str) -> QDoubleSpinBox:
        """Range from TextPair's Field (gt/le); the 0.25 step is the row's."""
        spec = field_spec(TextPair, field)
        spin = QDoubleSpinBox(objectName=field, toolTip=tip(field), minimum=spec.minimum, maximum=spec.maximum,
                              singleStep=0.25, decimals=spec.decimals)
        bind(self.fields, field, spin)
        return spin

    def _commit(self, **changes: object) -> None:
        if self.vm.set_field(self.index, **changes) is not None:
            self.refresh()

    def refresh(self) -> None:
        pair = self.vm.pairs[self.index]
        self.title.setText(f"Text pair '{self.vm.names[self.index]}'")
        if split_anchors(self.anchors.toPlainText()) != pair.anchors:
            with signals_blocked(self.anchors):
                self.anchors.setPlainText("\n".join(pair.anchors))


class TextPairsSection(QWidget):
    """'Text pairs (no images)': the add button, the hint and one row per pair."""

    def __init__(self, vm: TextPairsViewModel, parent: QWidget | None = None):
        super().__init__(parent)
        self.vm = vm
        self.rows: list[TextPairRow] = []
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 6, 0, 0)
        bar = QHBoxLayout()
        bar.addWidget(QLabel("Text pairs (no images)", styleSheet="font-weight: 600;"))
        bar.addStretch(1)
        self.add_button = QPushButton("Add text pair", objectName="addTextPair",
                                      toolTip="A slider from two prompts, trained against the base model's own "
                                              "predictions (config.json: slider_text_pairs)")
        self.add_button.clicked.connect(lambda: self.vm.add_pair())
        bar.addWidget(self.add_button)
        layout.addLayout(bar)
        self.hint = QLabel(HINT, wordWrap=True, styleSheet="color: palette(mid);")
        layout.addWidget(self.hint)
        self.list_layout = QVBoxLayout()
        layout.addLayout(self.list_layout)
        vm.pairsReset.connect(self.rebuild)
        vm.pairChanged.connect(lambda i: self.rows[i].refresh() if i < len(self.rows) else None)
        self.rebuild()

    def rebuild(self) -> None:
        for row in self.rows:
            row.setParent(None)
            row.deleteLater()
        self.rows = [TextPairRow(self.vm, i) for i in range(len(self.vm.pairs))]
        for row in self.rows:
            self.list_layout.addWidget(row)
