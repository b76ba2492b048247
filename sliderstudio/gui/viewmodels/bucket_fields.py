"""One bucket's editable keys as observable properties, so a bucket row can `bind` its widgets.

Why: the row used to forward each widget by hand and repaint each one again in `refresh`. Here a
key reads the bucket from the DatasetViewModel and an assignment goes through the view-model's
rules (the strength snaps to the dial's step and the role follows its sign; everything is validated
by BucketConfig); `bucketChanged` is relayed as `<key>_changed`. A refused edit re-sends the kept
value, so the widget shows it again (the view-model already put the message in the banner).
"""
from __future__ import annotations

from typing import Any

from PySide6.QtCore import QObject, Signal

from sliderstudio.gui.binding import Delegated, signal_name
from sliderstudio.gui.viewmodels.dataset import DatasetViewModel


class BucketFields(QObject):
    slider_strength_changed = Signal(object)
    probability_changed = Signal(object)
    repeats_changed = Signal(object)
    caption_strategy_changed = Signal(object)
    instance_prompt_changed = Signal(object)

    slider_strength = Delegated()
    probability = Delegated()
    repeats = Delegated()
    caption_strategy = Delegated()
    instance_prompt = Delegated()

    KEYS = ("slider_strength", "probability", "repeats", "caption_strategy", "instance_prompt")

    def __init__(self, dataset_vm: DatasetViewModel, bucket_id: str, parent: QObject | None = None):
        super().__init__(parent)
        self.dataset_vm, self.bucket_id = dataset_vm, bucket_id
        dataset_vm.bucketChanged.connect(self._bucket_changed)

    def read(self, key: str) -> Any:
        return getattr(self.dataset_vm.bucket(self.bucket_id), key)

    def edit(self, key: str, value: Any) -> str | None:
        """The view-model's rule for `key`; returns the refusal message or None."""
        if key == "slider_strength":
            self.dataset_vm.set_strength(self.bucket_id, value)
            return None
        changes = {key: value}
        if key == "caption_strategy" and value == "instanceprompt" and not self.instance_prompt:
            changes["instance_prompt"] = self.bucket_id.replace("-", " ")   # a caption to start from
        return self.dataset_vm.set_field(self.bucket_id, **changes)

    def _bucket_changed(self, bucket_id: str) -> None:
        if bucket_id != self.bucket_id:
            return
        for key in self.KEYS:
            getattr(self, signal_name(key)).emit(getattr(self, key))
