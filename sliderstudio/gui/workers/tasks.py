"""One-shot background jobs (folder scans, thumbnails, target resolution) on a thread pool.

Results come back as Qt signals, queued onto the UI thread, so a slow disk or a big model
config never freezes the window. Each job's signal object is owned here until it has reported,
so Python never collects it while a worker thread still emits.

Why not superqt's `create_worker` / `thread_worker` (superqt 0.9.0), which look like a fit: their
`WorkerBase.run` wraps every job in `warnings.catch_warnings()` and replaces the process-wide
`warnings.showwarning`; that state is global, not per thread, so two jobs that overlap on this pool
(it runs 2) restore each other's copies and leave the app with the "always" filter and a finished
job's `showwarning` (checked: 2 overlapping FunctionWorkers on a 2-thread pool leave both behind).
Their `start()` also always uses `QThreadPool.globalInstance()`, while this runner needs its own
pool, so that `wait()` at shutdown and in tests waits for these jobs only.
"""
from __future__ import annotations

import traceback
from typing import Any, Callable

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal, Slot


class TaskSignals(QObject):
    done = Signal(object)
    failed = Signal(object)  # the exception; `.details` carries the traceback text


class _Job(QRunnable):
    def __init__(self, fn: Callable[[], Any], signals: TaskSignals):
        super().__init__()
        self._fn = fn
        self.signals = signals
        self.setAutoDelete(True)

    @Slot()
    def run(self) -> None:
        try:
            result = self._fn()
        except Exception as exc:  # reported, never raised into Qt's thread pool
            exc.details = traceback.format_exc()  # type: ignore[attr-defined]
            self.signals.failed.emit(exc)
        else:
            self.signals.done.emit(result)


class TaskRunner(QObject):
    """Submit callables; `on_done(result)` / `on_failed(exc)` run on the UI thread.

    The callbacks should be bound methods of QObjects living on the UI thread (so the
    connection is queued to that thread).
    """

    def __init__(self, parent: QObject | None = None, max_threads: int = 2):
        super().__init__(parent)
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(max_threads)
        self._live: set[TaskSignals] = set()

    def submit(self, fn: Callable[[], Any], on_done: Callable[[Any], None],
               on_failed: Callable[[Exception], None] | None = None) -> TaskSignals:
        signals = TaskSignals()
        signals.done.connect(on_done)
        if on_failed is not None:
            signals.failed.connect(on_failed)
        signals.done.connect(lambda _r, s=signals: self._live.discard(s))
        signals.failed.connect(lambda _e, s=signals: self._live.discard(s))
        self._live.add(signals)
        self.pool.start(_Job(fn, signals))
        return signals

    def wait(self, msecs: int = 30000) -> bool:
        """Block until every job ended (shutdown and tests)."""
        return self.pool.waitForDone(msecs)

    @property
    def busy(self) -> bool:
        return bool(self._live)
