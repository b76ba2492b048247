"""Where the app keeps its own state: recent projects, window geometry, the demo project.

A small JSON file in the user's config folder rather than QSettings, so tests can point the whole
app at a temp folder with one environment variable and read back exactly what was stored.
`SLIDERSTUDIO_CONFIG_DIR` / `SLIDERSTUDIO_DATA_DIR` override the platform folders.

With a `writer` (the main window sets its `FileWriter`), `save()` queues the atomic write on the
writer's thread: its fsync must not stall the UI thread. Without one it writes at once.
"""
from __future__ import annotations

import json
import os
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

from PySide6.QtCore import QStandardPaths

from sliderstudio.kernel import atomic
from sliderstudio.gui.workers.file_writer import FileWriter

SETTINGS_NAME = "settings.json"
MAX_RECENT = 10


def config_dir() -> Path:
    """The user's config folder for Slider Studio (overridable for tests)."""
    override = os.environ.get("SLIDERSTUDIO_CONFIG_DIR")
    if override:
        return Path(override)
    location = QStandardPaths.StandardLocation.AppConfigLocation
    return Path(QStandardPaths.writableLocation(location) or Path.home() / ".config" / "sliderstudio")


def data_dir() -> Path:
    """The user's data folder (the demo project lives here; overridable for tests)."""
    override = os.environ.get("SLIDERSTUDIO_DATA_DIR")
    if override:
        return Path(override)
    location = QStandardPaths.StandardLocation.AppDataLocation
    return Path(QStandardPaths.writableLocation(location) or Path.home() / ".local" / "share" / "sliderstudio")


def _positive(value: object) -> float:
    """A stored card size, or 0 (use the detected one) when it is missing or not a positive number."""
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0 else 0.0


@dataclass
class AppSettings:
    """Recent projects (newest first) and the main window's saved geometry/state (hex strings)."""

    recent: list[str] = field(default_factory=list)
    geometry: str = ""
    window_state: str = ""
    card_gb: float = 0.0  # the GPU memory the memory line checks against (0: the detected card, else 24)
    path: Path | None = None
    writer: FileWriter | None = field(default=None, repr=False, compare=False)

    @classmethod
    def load(cls, path: Path | None = None) -> "AppSettings":
        """A missing or damaged settings file gives defaults: it must never stop the app opening."""
        path = path or config_dir() / SETTINGS_NAME
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = {}
        if not isinstance(data, dict):
            data = {}
        recent = [str(p) for p in data.get("recent", []) if isinstance(p, str)]
        return cls(recent=recent[:MAX_RECENT], geometry=str(data.get("geometry", "")),
                   window_state=str(data.get("window_state", "")), card_gb=_positive(data.get("card_gb")),
                   path=path)

    def save(self) -> Future | None:
        """Write settings.json: queued on `writer` when there is one (returns its Future), else now."""
        target = self.path or config_dir() / SETTINGS_NAME
        data = {"recent": list(self.recent), "geometry": self.geometry, "window_state": self.window_state,
                "card_gb": self.card_gb}
        if self.writer is None:
            atomic.write_json(target, data)
            return None
        return self.writer.submit(f"settings:{target}", lambda: atomic.write_json(target, data))

    def add_recent(self, project_dir: str | Path) -> None:
        """Move `project_dir` to the top of the list, without duplicates."""
        entry = str(Path(project_dir).resolve())
        self.recent = [entry] + [p for p in self.recent if p != entry]
        del self.recent[MAX_RECENT:]
