"""One text pair's editable keys as observable properties, so its row can `bind` the widgets.

Why: the row used to forward each field in a lambda and put every value back by hand after a refusal.
Here a key reads the pair from the TextPairsViewModel and an assignment is its validated `set_field`
(the same pydantic TextPair as a loaded file); `pairChanged` is relayed as `<key>_changed`, and a
refused edit re-sends the stored value (the view-model already put the message in the banner).
"""
from __future__ import annotations

from typing import Any

from PySide6.QtCore import QObject, Signal

from sliderstudio.gui.binding import Delegated, signal_name
from sliderstudio.gui.viewmodels.text_pairs import TextPairsViewModel


class TextPairFields(QObject):
    positive_changed = Signal(object)
    negative_changed = Signal(object)
    neutral_changed = Signal(object)
    guidance_changed = Signal(object)
    strength_changed = Signal(object)

    positive = Delegated()
    negative = Delegated()
    neutral = Delegated()
    guidance = Delegated()
    strength = Delegated()

    KEYS = ("positive", "negative", "neutral", "guidance", "strength")

    def __init__(self, pairs_vm: TextPairsViewModel, index: int, parent: QObject | None = None):
        super().__init__(parent)
        self.pairs_vm, self.index = pairs_vm, index
        pairs_vm.pairChanged.connect(self._pair_changed)

    def read(self, key: str) -> Any:
        return getattr(self.pairs_vm.pairs[self.index], key)

    def edit(self, key: str, value: Any) -> str | None:
        return self.pairs_vm.set_field(self.index, **{key: value})

    def _pair_changed(self, index: int) -> None:
        if index == self.index and index < len(self.pairs_vm.pairs):
            for key in self.KEYS:
                getattr(self, signal_name(key)).emit(getattr(self, key))
