"""The text-pair list's state (slider_text_pairs in config.json): add, edit, remove, validated.

Why through the project view-model's update_config: the pairs are config data, so an edit is checked
by the same pydantic model as a loaded file (same messages), marks the project unsaved and is written
by the ordinary save. A rejected edit changes nothing and its message goes to the pane's banner.
"""
from __future__ import annotations

from typing import Any

from PySide6.QtCore import QObject, Signal

from sliderstudio.config.text_pairs import TextPair, pair_ids
from sliderstudio.gui.viewmodels.project import ProjectViewModel

#: A new pair starts as a filled-in example, so the form shows what each field is for.
NEW_PAIR = {"positive": "a photo of a person, smiling", "negative": "a photo of a person, frowning",
            "neutral": "a photo of a person"}


def split_anchors(text: str) -> list[str]:
    """The anchors field: one prompt per line (prompts may hold commas)."""
    return [line.strip() for line in text.splitlines() if line.strip()]


class TextPairsViewModel(QObject):
    pairsReset = Signal()          # pairs added or removed, or another project: rebuild the rows
    pairChanged = Signal(int)      # one pair's fields changed (its index)
    notice = Signal(str)           # why an edit was refused

    def __init__(self, project_vm: ProjectViewModel, parent: QObject | None = None):
        super().__init__(parent)
        self._pvm = project_vm
        project_vm.projectLoaded.connect(self.pairsReset.emit)

    @property
    def pairs(self) -> list[TextPair]:
        return list(self._pvm.config.slider_text_pairs) if self._pvm.is_open else []

    @property
    def names(self) -> list[str]:
        return pair_ids(self.pairs)

    def add_pair(self, **fields: Any) -> str | None:
        """Append a pair (the example when no fields are given); returns the refusal or None."""
        error = self._write([*self._dumped(), {**NEW_PAIR, **fields}])
        if error is None:
            self.pairsReset.emit()
        return error

    def remove_pair(self, index: int) -> None:
        dumped = self._dumped()
        del dumped[index]
        if self._write(dumped) is None:
            self.pairsReset.emit()

    def set_field(self, index: int, **changes: Any) -> str | None:
        """Validated edit of one pair; returns the error shown to the user, or None."""
        dumped = self._dumped()
        dumped[index] = {**dumped[index], **changes}
        error = self._write(dumped)
        if error is None:
            self.pairChanged.emit(index)
        return error

    def _dumped(self) -> list[dict[str, Any]]:
        return [p.model_dump(exclude_defaults=True) for p in self.pairs]

    def _write(self, pairs: list[dict[str, Any]]) -> str | None:
        error = self._pvm.update_config(slider_text_pairs=pairs)
        if error:
            self.notice.emit(f"Text pair not changed: {error}")
        return error
