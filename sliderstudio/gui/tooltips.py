"""Tooltips that name the config key a field edits, from the pydantic Field descriptions.

One source of help text: the description in `config/config.py` serves the GUI and the docs alike.
"""
from __future__ import annotations

from pydantic import BaseModel
from PySide6.QtWidgets import QWidget

from sliderstudio.config.config import BucketConfig, TrainConfig


def key_tooltip(model: type[BaseModel], key: str, extra: str = "") -> str:
    """'<description> — key: <file>:<key>' so users can find the same setting in the JSON."""
    info = model.model_fields.get(key)
    if info is None:
        raise KeyError(f"{model.__name__} has no field {key!r}")
    where = "config.json" if model is TrainConfig else "multidatabackend.json"
    text = f"<b>{info.description or key}</b><br>config key: <code>{key}</code> ({where})"
    return text + (f"<br>{extra}" if extra else "")


def bind_tooltip(widget: QWidget, key: str, extra: str = "", model: type[BaseModel] = TrainConfig) -> QWidget:
    """Set the tooltip and remember the key on the widget (tests and docs look it up)."""
    widget.setToolTip(key_tooltip(model, key, extra))
    widget.setProperty("configKey", key)
    return widget


def bucket_tooltip(widget: QWidget, key: str, extra: str = "") -> QWidget:
    return bind_tooltip(widget, key, extra, BucketConfig)
