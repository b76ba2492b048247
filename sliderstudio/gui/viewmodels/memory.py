"""The memory line next to Train: the planner's estimate for the current config, off the UI thread.

Every config change (and the card size) asks the planner again on the TaskRunner; only the
answer to the latest request is shown, so a slow plan never overwrites a newer one. The engine
(torch, diffusers) is imported on the worker, never on the UI thread.
"""
from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import QObject, Signal

from sliderstudio.app.memory_plan import Advice
from sliderstudio.gui.viewmodels.project import ProjectViewModel
from sliderstudio.gui.workers.tasks import TaskRunner

TOY_LINE = "toy model: a few MB, fits any card"
DEFAULT_CARD_GB = 24.0


@dataclass(frozen=True)
class MemoryAnswer:
    request: int
    card_gb: float               # the card planned for (the detected one when none was chosen)
    advice: Advice | None
    line: str


def plan_config(config, card_gb: float, request: int = 0) -> MemoryAnswer:
    """The planner's advice for a TrainConfig on the worker; card_gb 0 means: detect the GPU first."""
    from sliderstudio.gui.workers.engine import ensure_engine

    ensure_engine()
    from sliderstudio.app.memory_plan import cheapest_fit, detected_card_gb, options_from_config
    from sliderstudio.families.loading import TOY_ALIAS
    from sliderstudio.families.registry import get_family

    card = card_gb or detected_card_gb(DEFAULT_CARD_GB)
    if config.pretrained_model_name_or_path.strip() == TOY_ALIAS:
        return MemoryAnswer(request, card, None, TOY_LINE)
    advice = cheapest_fit(get_family(config.model_family), options_from_config(config), card)
    return MemoryAnswer(request, card, advice, advice.summary())


class MemoryViewModel(QObject):
    lineChanged = Signal(str)     # "≈ 13.9 GiB on the device — fits 16 GB" / "… won't fit 12 GB: try …"
    cardDetected = Signal(float)  # the card size found on the worker (when none was set)

    def __init__(self, project_vm: ProjectViewModel, tasks: TaskRunner, card_gb: float = 0.0,
                 parent: QObject | None = None):
        super().__init__(parent)
        self._pvm, self._tasks = project_vm, tasks
        self.card_gb = card_gb  # 0: not known yet, detected with the first plan
        self.advice: Advice | None = None
        self.line = ""
        self._request = 0
        project_vm.projectLoaded.connect(self.refresh)
        project_vm.configChanged.connect(lambda _key: self.refresh())

    def set_card(self, card_gb: float) -> None:
        if card_gb > 0 and card_gb != self.card_gb:
            self.card_gb = card_gb
            self.refresh()

    def refresh(self) -> None:
        if not self._pvm.is_open:
            return
        self._request += 1
        request, config, card = self._request, self._pvm.config.model_copy(), self.card_gb
        self._tasks.submit(lambda: plan_config(config, card, request), self._done, self._failed)

    def _done(self, answer: MemoryAnswer) -> None:
        if answer.request != self._request:
            return  # an older request: a newer config is already being planned
        if not self.card_gb:
            self.card_gb = answer.card_gb
            self.cardDetected.emit(answer.card_gb)
        self.advice = answer.advice
        self._show(answer.line)

    def _failed(self, exc: Exception) -> None:
        self.advice = None
        self._show(f"memory estimate unavailable: {exc}")

    def _show(self, line: str) -> None:
        self.line = line
        self.lineChanged.emit(line)

    def needs_confirmation(self) -> bool:
        """True when the planner says the run won't fit the card: Train asks first."""
        return self.advice is not None and not self.advice.fits
