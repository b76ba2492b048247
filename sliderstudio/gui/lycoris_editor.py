"""The LyCORIS preset editor: algorithm picker, JSON text, live validation, save."""
from __future__ import annotations

import json

from PySide6.QtGui import QFontDatabase
from PySide6.QtWidgets import (
    QComboBox, QGroupBox, QHBoxLayout, QLabel, QPlainTextEdit, QPushButton, QVBoxLayout, QWidget,
)
from superqt.utils import signals_blocked

from sliderstudio.gui.tooltips import bind_tooltip
from sliderstudio.gui.viewmodels.architecture import ArchitectureViewModel
from sliderstudio.gui.viewmodels.lycoris import ALGORITHMS, LycorisCheck


class LycorisEditor(QGroupBox):
    def __init__(self, vm: ArchitectureViewModel, parent: QWidget | None = None):
        super().__init__("LyCORIS preset", parent)
        self.vm = vm
        layout = QVBoxLayout(self)
        top = QHBoxLayout()
        self.file_label = QLabel()
        bind_tooltip(self.file_label, "lycoris_config")
        self.algo = QComboBox()
        self.algo.addItems(ALGORITHMS)
        self.algo.setToolTip("LyCORIS algorithm (the \"algo\" key of the preset JSON)")
        self.algo.activated.connect(self._algo_chosen)
        top.addWidget(self.file_label, 1)
        top.addWidget(QLabel("algorithm"))
        top.addWidget(self.algo)
        layout.addLayout(top)
        self.text = QPlainTextEdit()
        self.text.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.text.setMinimumHeight(200)
        self.text.textChanged.connect(self.validate)
        layout.addWidget(self.text)
        bottom = QHBoxLayout()
        self.status = QLabel(wordWrap=True, objectName="lycorisStatus")
        self.save_button = QPushButton("Save preset")
        self.save_button.clicked.connect(self.save)
        bottom.addWidget(self.status, 1)
        bottom.addWidget(self.save_button)
        layout.addLayout(bottom)

    def load(self) -> None:
        """Show the project's preset file (or a starter template)."""
        path = self.vm.lycoris_path()
        self.file_label.setText(str(path.name) if path else "(not saved yet)")
        with signals_blocked(self.text):
            self.text.setPlainText(self.vm.lycoris_text())
        self.validate()

    def _algo_chosen(self, index: int) -> None:
        check = self.vm.check_lycoris(self.text.toPlainText())
        if check.data is None:
            return
        check.data["algo"] = ALGORITHMS[index]
        self.text.setPlainText(json.dumps(check.data, indent=2))

    def validate(self) -> LycorisCheck:
        check = self.vm.check_lycoris(self.text.toPlainText())
        self.show_check(check)
        if check.data and check.data.get("algo") in ALGORITHMS:
            with signals_blocked(self.algo):
                self.algo.setCurrentText(check.data["algo"])
        return check

    def show_check(self, check: LycorisCheck, saved: bool = False) -> None:
        if check.errors:
            self.status.setText("✗ " + "\n✗ ".join(check.errors))
            self.status.setStyleSheet("color: #c8513a;")
        else:
            lines = (["✓ saved"] if saved else ["✓ valid"]) + [f"⚠ {w}" for w in check.warnings]
            self.status.setText("\n".join(lines))
            self.status.setStyleSheet("color: #2e7d32;")
        self.save_button.setEnabled(check.ok)

    def save(self) -> None:
        check = self.vm.save_lycoris(self.text.toPlainText())
        self.show_check(check, saved=check.ok)
        path = self.vm.lycoris_path()
        self.file_label.setText(str(path.name) if path else "(not saved yet)")
