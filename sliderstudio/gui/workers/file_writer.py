"""The app's file writes (project files, settings) on one background thread, in the order asked.

Why: an atomic write ends with `fsync`, which waits for the disk. While a training process
writes checkpoints that wait can last a second, and on the UI thread it froze the window
(benchmarks/ui_stall.py saw ~1 s gaps in 2 of 9 runs). One thread with one queue keeps the
writes ordered, so a later save of a file always lands after an earlier one; a failure comes
back as a signal (and in the write's Future) instead of an exception on the UI thread.

The thread is started on demand and ends when the queue has been empty for a moment. It is
not a daemon: Python waits for it at exit, so a write already asked for is never lost, and
`flush()` (closing the window) waits for everything asked so far.
"""
from __future__ import annotations

import queue
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Callable

from PySide6.QtCore import QObject, Signal

IDLE_EXIT_S = 2.0          # the thread ends after this long without work


class _Carrier(QObject):
    """The signals the writer thread emits. Parentless and held by the thread's closure too, so
    it outlives a FileWriter deleted with its window while a write is still finishing."""

    written = Signal(str)
    failed = Signal(str, object)


@dataclass
class _Write:
    label: str
    write: Callable[[], None]
    future: Future


class FileWriter(QObject):
    """`submit(label, fn)` runs `fn` on the writer thread; `written`/`failed` arrive on the UI thread."""

    written = Signal(str)            # the label of a write that finished
    failed = Signal(str, object)     # label, the exception (an InputError names file and key)

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self._queue: queue.Queue[_Write] = queue.Queue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._last: Future | None = None
        self._carrier = _Carrier()
        self._carrier.written.connect(self.written)
        self._carrier.failed.connect(self.failed)

    def submit(self, label: str, write: Callable[[], None]) -> Future:
        """Queue a write; the returned Future resolves once it is on disk (or holds its error)."""
        job = _Write(label, write, Future())
        with self._lock:
            self._queue.put(job)
            self._last = job.future
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, args=(self._carrier,), name="file-writer",
                                                daemon=False)
                self._thread.start()
        return job.future

    def flush(self, timeout: float | None = 30.0) -> bool:
        """Wait until every write submitted so far has finished (ok or failed); False on timeout."""
        with self._lock:
            last = self._last
        if last is None:
            return True
        try:
            last.exception(timeout=timeout)
        except TimeoutError:
            return False
        return True

    @property
    def pending(self) -> bool:
        with self._lock:
            return self._last is not None and not self._last.done()

    def _run(self, carrier: _Carrier) -> None:
        while True:
            try:
                job = self._queue.get(timeout=IDLE_EXIT_S)
            except queue.Empty:
                with self._lock:
                    if self._queue.empty():
                        self._thread = None
                        return
                continue
            perform(job, carrier)


def perform(job: _Write, carrier: _Carrier) -> None:
    """Run one write; report it (queued to the UI thread) before its Future resolves, so a
    `flush()` that returns has nothing left to deliver from this thread."""
    try:
        job.write()
    except Exception as exc:  # noqa: BLE001 - reported to the UI, the writer keeps going
        carrier.failed.emit(job.label, exc)
        job.future.set_exception(exc)
    else:
        carrier.written.emit(job.label)
        job.future.set_result(None)
