"""The QThread worker that supervises a training process and turns its events into Qt signals.

Training runs in a child process, `sliderstudio train --events` (the same command a user can
type), not on a thread of the app. In-process, the trainer held Python's GIL in long unbroken
stretches (model construction, full garbage collections, pickling a checkpoint), and the window
froze for 111–344 ms at a time although the UI thread itself had nothing to do. A process has
its own GIL, so nothing the engine does can stall the window; a crash or an out-of-memory kill
ends the run, not the app; and the accelerator's memory is returned when the run ends.

This worker lives on its own QThread: it starts the process, reads its event lines (a blocking
read, which releases the GIL) and emits each one, whatever its type, as one queued `event` signal
(the view-model dispatches by type, so a new event type needs no change here). Commands go to the
process's stdin (`core/event_wire.encode_command`); the trainer polls for them before every
optimizer step, so a stop takes effect within one step.
"""
from __future__ import annotations

import subprocess
import sys
import threading
import traceback
from collections import deque
from concurrent.futures import Future
from dataclasses import replace

from PySide6.QtCore import QObject, Signal, Slot

from sliderstudio.app.child_process import child_environment, ended_without_result
from sliderstudio.kernel.errors import InputError
from sliderstudio.kernel.event_wire import WireError, decode, encode_command
from sliderstudio.kernel.events import Command, Event, Failed, Finished, Image, Log, Progress
from sliderstudio.engine.project import Project
from sliderstudio.gui.workers.qimages import pil_to_qimage

STDERR_LINES = 60      # how much of the process's stderr a failure report shows


def training_command(project: Project) -> list[str]:
    """argv of the training process: this same program (the frozen app, or `python -m sliderstudio`).

    The run's settings are the saved project files; only the resume choice travels as an override,
    always, so a value left in config.json can never turn a fresh run into a resume.
    """
    program = [sys.executable] if getattr(sys, "frozen", False) else [sys.executable, "-m", "sliderstudio"]
    resume = project.config.resume_from_checkpoint or "none"
    return program + ["train", "--config", str(project.root), "--events", "--resume_from_checkpoint", resume]


def readable_failure(exc: BaseException, step: int) -> Failed:
    """An exception the trainer did not report itself, worded for a person."""
    if isinstance(exc, InputError):
        return Failed(str(exc), step, exit_code=2)
    return Failed(f"{type(exc).__name__}: {exc}", step, 1, traceback.format_exc())


class TrainingWorker(QObject):
    event = Signal(object)         # every kernel.events event, the process's and the worker's own Failed;
    #                                an Image's picture arrives as a QImage (converted on this thread)
    done = Signal()                # always emitted last, success or not

    def __init__(self, project: Project, ready: Future | None = None):
        super().__init__()
        self.project = project
        self.ready = ready          # the project's pending save: the process reads the files it writes
        self.process: subprocess.Popen | None = None
        self.stderr_tail: deque[str] = deque(maxlen=STDERR_LINES)
        self._lock = threading.Lock()         # guards process start vs. stop from the UI thread
        self._stop_requested = False
        self._terminal: Event | None = None
        self._step = 0

    def stop(self) -> None:
        """Thread-safe; a stop asked for before the process is up is sent as soon as it is."""
        with self._lock:
            self._stop_requested = True
            self._send(encode_command(Command.STOP))

    def send(self, command: Command) -> bool:
        """Thread-safe: pause / resume / sample_now / save_now for the live process; False when no process
        is up to take it. Unlike stop, these are not kept for a process that has not started yet:
        the buttons that send them are live only while a run is."""
        with self._lock:
            if self.process is None or self.process.poll() is not None:
                return False
            return self._send(encode_command(command))

    def _send(self, command: str) -> bool:
        process = self.process
        if process is None or process.stdin is None:
            return False
        try:
            process.stdin.write(command + "\n")
            process.stdin.flush()
        except (OSError, ValueError):      # the process is gone or its stdin closed: nothing to stop
            return False
        return True

    def _sink(self, event: Event) -> None:
        """Keep what the worker itself needs (the step, the end) and hand every event on."""
        if isinstance(event, Progress):
            self._step = event.step
        elif isinstance(event, (Finished, Failed)):
            self._terminal = event
        elif isinstance(event, Image):      # QImage here: converting on the UI thread would stall it
            event = replace(event, image=pil_to_qimage(event.image))
        self.event.emit(event)

    @Slot()
    def run(self) -> None:
        try:
            self._supervise()
        except BaseException as exc:  # noqa: BLE001 - the worker thread must always report and end
            if not isinstance(self._terminal, Failed):
                self.event.emit(readable_failure(exc, self._step))
        finally:
            self.done.emit()

    def _start(self) -> subprocess.Popen:
        if self.ready is not None:
            self.ready.result()     # a failed save raises here and is reported as the run's failure
        with self._lock:
            # its own session: a Ctrl-C in the terminal that started the app is the app's to handle
            self.process = subprocess.Popen(
                training_command(self.project), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, text=True, encoding="utf-8", errors="replace", bufsize=1,
                env=child_environment(), start_new_session=True)
            if self._stop_requested:
                self._send(encode_command(Command.STOP))
        self.event.emit(Log(f"training process {self.process.pid} started; loading the engine and the model"))
        return self.process

    def _supervise(self) -> None:
        process = self._start()
        reader = threading.Thread(target=self._read_stderr, args=(process,), name="training-stderr", daemon=True)
        reader.start()
        assert process.stdout is not None
        for line in process.stdout:
            try:
                event = decode(line)
            except WireError:
                self.stderr_tail.append(line.rstrip())
                continue
            self._sink(event)
        returncode = process.wait()
        reader.join(timeout=5)
        if process.stdin is not None:
            process.stdin.close()
        if self._terminal is None:
            tail = list(self.stderr_tail)
            self.event.emit(Failed(ended_without_result(returncode, tail), self._step, 1, "\n".join(tail)))

    def _read_stderr(self, process: subprocess.Popen) -> None:
        assert process.stderr is not None
        for line in process.stderr:
            self.stderr_tail.append(line.rstrip())
