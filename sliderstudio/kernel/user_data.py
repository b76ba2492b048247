"""The per-user data folder, found without Qt, so the CLI and the app agree on where shared state lives.

The app's own settings use Qt's standard paths (gui/settings.py), but state that the CLI and the app
must both read and write (the training queue) needs one answer in both faces, including the CLI,
which never loads Qt. `SLIDERSTUDIO_DATA_DIR` overrides it (tests, portable installs), as it does
for the app.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

DATA_DIR_ENV = "SLIDERSTUDIO_DATA_DIR"


def user_data_dir() -> Path:
    """SLIDERSTUDIO_DATA_DIR, else the platform's per-user data folder for Slider Studio."""
    override = os.environ.get(DATA_DIR_ENV)
    if override:
        return Path(override)
    if sys.platform == "win32":
        return Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local") / "SliderStudio"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "SliderStudio"
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "sliderstudio"
