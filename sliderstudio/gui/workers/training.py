"""The QThread worker that runs `core.trainer.Trainer` and turns its events into Qt signals.

The trainer is a blocking loop; it runs here, on its own QThread. Events cross to the UI thread
as queued signals (never a direct call into widgets). Stop goes through the trainer's mailbox,
which it polls before every optimizer step, so a stop takes effect within one step.
"""
from __future__ import annotations

import traceback
from typing import Any, Callable

from PySide6.QtCore import QObject, Signal, Slot

from sliderstudio.core.errors import InputError
from sliderstudio.core.events import (
    Checkpoint, Command, Event, Failed, Finished, Image, Log, Mailbox, Progress,
)
from sliderstudio.core.project import Project
from sliderstudio.gui.workers.engine import ensure_engine
from sliderstudio.gui.workers.qimages import pil_to_qimage


def make_trainer(project: Project, sink: Callable[[Event], None], mailbox: Mailbox) -> Any:
    """The engine's trainer (imported here, on the worker thread). Tests replace this function."""
    ensure_engine()
    from sliderstudio.core.trainer import Trainer

    return Trainer(project, sink, mailbox)


def readable_failure(exc: BaseException, step: int) -> Failed:
    """An exception the trainer did not report itself, worded for a person."""
    if isinstance(exc, InputError):
        return Failed(str(exc), step, exit_code=2)
    return Failed(f"{type(exc).__name__}: {exc}", step, 1, traceback.format_exc())


class TrainingWorker(QObject):
    progress = Signal(object)      # Progress
    log = Signal(object)           # Log
    image = Signal(object, object)  # Image event, QImage
    checkpoint = Signal(object)    # Checkpoint
    finished = Signal(object)      # Finished
    failed = Signal(object)        # Failed
    done = Signal()                # always emitted last, success or not

    def __init__(self, project: Project):
        super().__init__()
        self.project = project
        self.mailbox = Mailbox()
        self._terminal: Event | None = None
        self._step = 0

    def stop(self) -> None:
        """Thread-safe: the mailbox is a queue the trainer drains between steps."""
        self.mailbox.send(Command.STOP)

    def _sink(self, event: Event) -> None:
        if isinstance(event, Progress):
            self._step = event.step
            self.progress.emit(event)
        elif isinstance(event, Log):
            self.log.emit(event)
        elif isinstance(event, Image):
            self.image.emit(event, pil_to_qimage(event.image))
        elif isinstance(event, Checkpoint):
            self.checkpoint.emit(event)
        elif isinstance(event, Finished):
            self._terminal = event
            self.finished.emit(event)
        elif isinstance(event, Failed):
            self._terminal = event
            self.failed.emit(event)

    @Slot()
    def run(self) -> None:
        try:
            make_trainer(self.project, self._sink, self.mailbox).run()
        except BaseException as exc:  # noqa: BLE001 - the worker thread must always report and end
            if not isinstance(self._terminal, Failed):
                self.failed.emit(readable_failure(exc, self._step))
        else:
            if self._terminal is None:
                self.failed.emit(Failed("the trainer ended without reporting a result", self._step))
        finally:
            self.done.emit()
