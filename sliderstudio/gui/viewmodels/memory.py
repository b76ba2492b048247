"""The memory line next to Train: the planner's estimate for the current config, off the UI thread.

Every config change (and the card size) asks the planner again on the TaskRunner; only the
answer to the latest request is shown, so a slow plan never overwrites a newer one.
"""
from __future__ import annotations

from PySide6.QtCore import QObject, Signal

from sliderstudio.core.memory_plan import Advice, cheapest_fit, options_from_config
from sliderstudio.families.loading import TOY_ALIAS
from sliderstudio.gui.viewmodels.project import ProjectViewModel
from sliderstudio.gui.workers.tasks import TaskRunner

TOY_LINE = "toy model: a few MB, fits any card"


def plan_config(config, card_gb: float) -> Advice | str:
    """The planner's advice for a TrainConfig, or a line saying why there is none (the toy model)."""
    from sliderstudio.families.registry import get_family

    if config.pretrained_model_name_or_path.strip() == TOY_ALIAS:
        return TOY_LINE
    return cheapest_fit(get_family(config.model_family), options_from_config(config), card_gb)


class MemoryViewModel(QObject):
    lineChanged = Signal(str)   # "≈ 13.9 GiB on the device — fits 16 GB" / "… won't fit 12 GB: try …"

    def __init__(self, project_vm: ProjectViewModel, tasks: TaskRunner, card_gb: float,
                 parent: QObject | None = None):
        super().__init__(parent)
        self._pvm, self._tasks = project_vm, tasks
        self.card_gb = card_gb
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
        self._tasks.submit(lambda: (request, plan_config(config, card)), self._done, self._failed)

    def _done(self, result: tuple[int, Advice | str]) -> None:
        request, answer = result
        if request != self._request:
            return  # an older request: a newer config is already being planned
        self.advice = answer if isinstance(answer, Advice) else None
        self._show(answer.summary() if isinstance(answer, Advice) else answer)

    def _failed(self, exc: Exception) -> None:
        self.advice = None
        self._show(f"memory estimate unavailable: {exc}")

    def _show(self, line: str) -> None:
        self.line = line
        self.lineChanged.emit(line)

    def needs_confirmation(self) -> bool:
        """True when the planner says the run won't fit the card: Train asks first."""
        return self.advice is not None and not self.advice.fits
