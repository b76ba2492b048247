"""Python's cyclic garbage collector runs on the UI thread only, on a timer.

Qt objects must be destroyed on the thread that owns them: a widget on the UI thread. The cyclic
collector, left automatic, runs on whichever thread happens to allocate when a threshold trips. A
preview or engine worker can then free a widget that sat in a reference cycle, and Qt crashes: the
test suite hit exactly that, a segmentation fault "Garbage-collecting" inside the preview worker's
progress callback. So the app switches automatic collection off and the UI thread collects on a
timer: the young generation every tick, everything every `FULL_EVERY` ticks. The engine's import
heap is frozen out of the collector (`workers/engine.py`), so even a full collection walks only
what the session allocated: a few milliseconds, well inside the 100 ms the window may stall.

A worker that wants the import heap frozen asks for it here (`request_freeze`); the freeze then
happens on the UI thread, without a full collection first (that would walk the whole import heap
while the window waits).
"""
from __future__ import annotations

import gc
import threading

from PySide6.QtCore import QObject, QTimer

TICK_MS = 1000
FULL_EVERY = 30

_freeze_requested = threading.Event()
_installed = 0


def request_freeze() -> None:
    """Ask the UI thread to collect once and freeze every surviving object (after the engine import)."""
    _freeze_requested.set()


class UiThreadCollector(QObject):
    """Owns the collection schedule while it is installed; `uninstall` gives automatic collection back."""

    def __init__(self, parent: QObject | None = None, tick_ms: int = TICK_MS):
        global _installed
        super().__init__(parent)
        _installed += 1
        self._ticks = 0
        self._was_enabled = gc.isenabled()
        gc.disable()
        self._timer = QTimer(self, interval=tick_ms)
        self._timer.timeout.connect(self.tick)
        self._timer.start()

    def tick(self) -> None:
        self._ticks += 1
        if _freeze_requested.is_set():
            # freeze without the full collection first: walking the ~half a million import objects
            # would stall the window for ~350 ms; the little import-time garbage is kept instead
            _freeze_requested.clear()
            gc.freeze()
        elif self._ticks % FULL_EVERY == 0:
            gc.collect()
        else:
            gc.collect(0)

    def uninstall(self) -> None:
        """Stop the timer, collect what is left here (on the UI thread) and restore the old setting."""
        global _installed
        if not self._timer.isActive():
            return
        self._timer.stop()
        _installed -= 1
        gc.collect()
        if self._was_enabled:
            gc.enable()


def install(parent: QObject) -> UiThreadCollector:
    return UiThreadCollector(parent)


def collector_installed() -> bool:
    """True while the UI thread owns collection (automatic collection is off)."""
    return _installed > 0
