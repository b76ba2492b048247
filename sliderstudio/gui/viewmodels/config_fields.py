"""The open project's config keys as observable properties, so generated forms can `bind` to them.

Why: a form row must neither keep its own copy of a config value nor restate its rules. Each key
here is a `Delegated` property: reading it reads the project's current `TrainConfig`, assigning it goes
through `ProjectViewModel.update_config` (the pydantic model validates), and the document's own
change signals are relayed as `<key>_changed`. A refused edit is not swallowed: `refused(key,
message)` carries the validation message for the pane to show, and `<key>_changed` re-sends the kept
value so the widget shows it again.
"""
from __future__ import annotations

from typing import Any

from PySide6.QtCore import QObject, Signal

from sliderstudio.gui.binding import Delegated, signal_name
from sliderstudio.gui.viewmodels.project import ProjectViewModel


class ConfigFields(QObject):
    """Base of the generated classes; `config_fields(project_vm, keys)` makes one."""

    refused = Signal(str, str)      # key, the validation message (nothing changed)
    keys: tuple[str, ...] = ()

    def __init__(self, project_vm: ProjectViewModel, parent: QObject | None = None):
        super().__init__(parent)
        self.project_vm = project_vm
        project_vm.configChanged.connect(self._key_changed)
        project_vm.projectLoaded.connect(self._all_changed)

    def read(self, key: str) -> Any:
        return getattr(self.project_vm.config, key) if self.project_vm.is_open else None

    def edit(self, key: str, value: Any) -> str | None:
        message = self.project_vm.update_config(**{key: value})
        if message is not None:
            self.refused.emit(key, message)
        return message

    def set(self, key: str, value: Any) -> str | None:
        """Assign one key; returns the validation message (nothing changed) or None."""
        try:
            setattr(self, key, value)
        except ValueError as exc:
            return str(exc)
        return None

    def _key_changed(self, key: str) -> None:
        if key in self.keys:
            getattr(self, signal_name(key)).emit(getattr(self, key))

    def _all_changed(self) -> None:
        for key in self.keys:
            self._key_changed(key)


_CLASSES: dict[tuple[str, ...], type[ConfigFields]] = {}


def config_fields_class(keys: tuple[str, ...]) -> type[ConfigFields]:
    """A ConfigFields subclass with one property and one `<key>_changed` signal per key (cached)."""
    keys = tuple(keys)
    if keys not in _CLASSES:
        namespace: dict[str, Any] = {signal_name(k): Signal(object) for k in keys}
        namespace.update({k: Delegated() for k in keys})
        namespace["keys"] = keys
        _CLASSES[keys] = type("ConfigFields_" + "_".join(keys)[:60], (ConfigFields,), namespace)
    return _CLASSES[keys]


def config_fields(project_vm: ProjectViewModel, keys: tuple[str, ...], parent: QObject | None = None) -> ConfigFields:
    """Observable access to `keys` of the open project's config."""
    return config_fields_class(keys)(project_vm, parent)
