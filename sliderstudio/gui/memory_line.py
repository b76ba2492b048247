"""The memory line under Train: the planner's estimate, the card size, and the question before a run
the planner says won't fit ("apply the fitting options", "train anyway", "cancel")."""
from __future__ import annotations

from typing import Callable

from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QMessageBox, QWidget

from sliderstudio.app.memory_plan import CARD_PRESETS_GB, Advice, describe
from superqt.utils import signals_blocked

from sliderstudio.gui.viewmodels.memory import MemoryViewModel
from sliderstudio.gui.viewmodels.project import ProjectViewModel

APPLY, ANYWAY, CANCEL = "apply", "anyway", "cancel"


def ask_with_dialog(parent: QWidget, advice: Advice) -> str:
    """A message box: APPLY (only when some options fit), ANYWAY or CANCEL."""
    box = QMessageBox(parent)
    box.setIcon(QMessageBox.Icon.Warning)
    box.setWindowTitle("This run may not fit the card")
    text = advice.summary()
    apply = None
    if advice.fitted is not None:
        text += f"\n\nApply {describe(advice.changes)} to the project and train?"
        apply = box.addButton("Apply and train", QMessageBox.ButtonRole.AcceptRole)
    box.setText(text)
    anyway = box.addButton("Train anyway", QMessageBox.ButtonRole.DestructiveRole)
    box.addButton(QMessageBox.StandardButton.Cancel)
    box.exec()
    clicked = box.clickedButton()
    return APPLY if clicked is apply and apply is not None else (ANYWAY if clicked is anyway else CANCEL)


class MemoryLine(QWidget):
    def __init__(self, vm: MemoryViewModel, project_vm: ProjectViewModel,
                 on_card: Callable[[float], None] | None = None, parent: QWidget | None = None):
        super().__init__(parent)
        self.vm, self.pvm, self._on_card = vm, project_vm, on_card
        self.ask: Callable[[Advice], str] = lambda advice: ask_with_dialog(self, advice)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        self.label = QLabel("memory: estimating…", objectName="memoryLine", wordWrap=True)
        self.label.setToolTip("Estimated device memory of a training step (weights, adapter + optimizer, "
                              "activations, text encoders + VAE); sliderstudio plan --memory prints the breakdown")
        self.card = QComboBox(objectName="cardSize")
        self.card.setToolTip("The GPU's memory the estimate is checked against")
        self._fill_cards(vm.card_gb)
        self.card.currentIndexChanged.connect(self._card_changed)
        row.addWidget(self.label, 1)
        row.addWidget(self.card)
        vm.lineChanged.connect(self.label.setText)
        vm.cardDetected.connect(self._card_detected)

    def _fill_cards(self, current: float) -> None:
        """The presets, plus the detected or stored size when it is none of them; blank until known."""
        self.card.clear()
        sizes = sorted({*CARD_PRESETS_GB, *([current] if current else [])})
        for size in sizes:
            self.card.addItem(f"{size:g} GB", float(size))
        self.card.setCurrentIndex(sizes.index(current) if current else -1)

    def _card_detected(self, card_gb: float) -> None:
        with signals_blocked(self.card):
            self._fill_cards(card_gb)

    def _card_changed(self, index: int) -> None:
        if index < 0:
            return
        size = float(self.card.itemData(index))
        self.vm.set_card(size)
        if self._on_card is not None:
            self._on_card(size)

    def confirm_train(self) -> bool:
        """Before Train: True to go on. A plan that won't fit asks first, and can apply the fitting options."""
        if not self.vm.needs_confirmation():
            return True
        advice = self.vm.advice
        answer = self.ask(advice)
        if answer == APPLY and advice.fitted is not None:
            self.pvm.update_config(**advice.changes)
            return True
        return answer == ANYWAY
