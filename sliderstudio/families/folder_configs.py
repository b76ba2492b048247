"""Reading one JSON config of a diffusers folder without loading anything else.

Why a module of its own: detection (`detect.py`) and the families' own folder readers
(`Family.folder_flavour`, `Family.folder_evidence`) read the same files the same forgiving way: a
missing or broken config is "the folder does not say", never an exception, because the caller is
only gathering evidence and decides itself whether a missing answer is an error.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def read_json_object(path: Path) -> dict[str, Any] | None:
    """The JSON object in `path`; None when it is missing, unreadable or not an object."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def component_config(folder: Path, component: str) -> dict[str, Any]:
    """A component's config in a diffusers folder (`unet/config.json`, `scheduler/scheduler_config.json`);
    empty when the folder has none."""
    name = "scheduler_config.json" if component == "scheduler" else "config.json"
    return read_json_object(Path(folder) / component / name) or {}
