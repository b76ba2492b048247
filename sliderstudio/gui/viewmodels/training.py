"""Training state for the pane: start / stop / resume, progress, the loss series, the log.

Owns the QThread and its worker. The run gets a detached copy of the project (saved first, so
the files on disk describe the run and the CLI can resume it), so edits made while training
affect the next run, not this one.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from PySide6.QtCore import QObject, Qt, QThread, QTimer, Signal

from sliderstudio.kernel.events import (
    Checkpoint, Command, Device, Event, Failed, Finished, Image, Log, PauseChanged, Progress,
)
from sliderstudio.kernel.errors import InputError
from sliderstudio.gui.viewmodels.project import ProjectViewModel
from sliderstudio.engine.run_state import RunStatus
from sliderstudio.gui.workers.tasks import TaskRunner
from sliderstudio.gui.workers.training import TrainingWorker

IDLE, RUNNING, STOPPING = "idle", "running", "stopping"


def read_run_status(output_dir: Path) -> "RunStatus":
    """What the output folder says about a run this window did not start (heartbeat + pid, never a flag)."""
    from sliderstudio.engine.run_state import run_status

    return run_status(output_dir)


def format_eta(seconds: float) -> str:
    if seconds != seconds or seconds < 0 or seconds == float("inf"):  # NaN / inf before the rate is known
        return "—"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class TrainingViewModel(QObject):
    stateChanged = Signal(str)
    progressChanged = Signal(object)          # Progress
    logAppended = Signal(str, str)            # level, message
    sampleRendered = Signal(object, object)   # Image event, QImage
    checkpointSaved = Signal(str)             # checkpoint folder
    runFinished = Signal(str, bool)           # adapter path, stopped early
    runFailed = Signal(str, str)              # readable message, details
    resumeAvailableChanged = Signal(bool)
    runStatusChanged = Signal(str)            # "stopped at step N — Resume from step N", …
    runStarted = Signal(bool)                 # a run was launched; True when it resumes a checkpoint
    deviceReported = Signal(object)           # Device: which device trains, its memory
    pausedChanged = Signal(bool, int)         # paused, step: confirmed by the trainer (PauseChanged)

    STATUS_POLL_MS = 3000

    def __init__(self, project_vm: ProjectViewModel, tasks: TaskRunner, parent: QObject | None = None):
        super().__init__(parent)
        self._pvm, self._tasks = project_vm, tasks
        self.state = IDLE
        self.steps: list[int] = []
        self.losses: list[float] = []
        self.last_progress: Progress | None = None
        self.last_error: str | None = None
        self.resume_available = False
        self.paused = False
        self.run_status = RunStatus("none")
        self._status_timer = QTimer(self, interval=self.STATUS_POLL_MS, timeout=self._check_resume)
        self._thread: QThread | None = None
        self._worker: TrainingWorker | None = None
        # How the app shows each event type (kernel/events.py); tests check it covers every type.
        self.handlers: dict[type, Callable[[Any], None]] = {
            Progress: self._on_progress, Log: self._on_log, Image: self._on_image,
            Checkpoint: self._on_checkpoint, Device: self._on_device, PauseChanged: self._on_pause_changed,
            Finished: self._on_finished, Failed: self._on_failed,
        }
        project_vm.projectLoaded.connect(self._project_loaded)

    # --- commands ----------------------------------------------------------------------
    def start(self, resume: bool = False) -> bool:
        """Start a run on a worker thread; returns False (with a message) when it cannot start."""
        if self.state != IDLE:
            return False
        if self.run_status.state == "running":
            self._fail("this project is being trained by another process right now "
                       f"({self.run_status.label}); wait for it to finish or stop it first", "")
            return False
        try:
            if self._pvm.dirty:
                self._pvm.save()
        except InputError as exc:
            self._fail(str(exc), "")
            return False
        project = self._pvm.snapshot(resume_from_checkpoint="latest" if resume else None)
        self._reset_series(keep=resume)
        self.last_error = None
        self.run_status = RunStatus("none")    # this run replaces what was on disk; re-read when it ends
        self._launch(TrainingWorker(project, ready=self._pvm.last_save))   # starts once the save is on disk
        self._set_state(RUNNING)
        self.runStarted.emit(resume)
        self.logAppended.emit("info", ("Resuming" if resume else "Starting") + f" training in {project.root}")
        return True

    def resume(self) -> bool:
        return self.start(resume=True)

    def stop(self) -> None:
        if self.state == RUNNING and self._worker is not None:
            self._worker.stop()
            self._set_state(STOPPING)
            self.logAppended.emit("info", "Stop requested: finishing the current step and saving a checkpoint")

    # Commands for the live run. `continue_run` is RESUME of a paused run; `resume` (above) starts a
    # new process from the latest checkpoint. Each returns whether the command reached the process;
    # the trainer confirms it with an event (PauseChanged, Image or a warning, Checkpoint).
    def pause(self) -> bool:
        return self._command(Command.PAUSE, "Pause requested: the run holds after the current step")

    def continue_run(self) -> bool:
        return self._command(Command.RESUME, "Resume requested: the paused run goes on")

    def sample_now(self) -> bool:
        return self._command(Command.SAMPLE_NOW, "Sample requested: validation renders after the current step")

    def save_now(self) -> bool:
        return self._command(Command.SAVE_NOW, "Save requested: a checkpoint is written after the current step")

    def _command(self, command: Command, note: str) -> bool:
        if self.state != RUNNING or self._worker is None or not self._worker.send(command):
            return False
        self.logAppended.emit("info", note)
        return True

    def wait(self, msecs: int = 60000) -> bool:
        """Block until the worker thread ended (closing the window, tests)."""
        return self._thread.wait(msecs) if self._thread is not None else True

    @property
    def running(self) -> bool:
        return self.state != IDLE

    @property
    def resume_offer(self) -> str | None:
        """What the pane offers for a run found stopped before its end (say the app was killed
        mid-run), or None: the run's own files decide, so a fresh start of the app offers it too."""
        status = self.run_status
        if self.running or not status.resumable:
            return None
        of = f" of {status.total}" if status.total else ""
        return (f"The last run stopped at step {status.step}{of} before it finished. "
                f"Resume continues from its checkpoint at step {status.resumable_step}.")

    # --- thread plumbing ---------------------------------------------------------------
    def _launch(self, worker: TrainingWorker) -> None:
        if self._thread is not None:
            self._thread.deleteLater()
        thread = QThread(self)
        thread.setObjectName("training")
        worker.moveToThread(thread)
        thread.started.connect(worker.run)
        worker.event.connect(self._on_event)
        # QThread.quit is thread-safe; a direct call ends the thread's loop even while the UI
        # thread is blocked in wait() (a queued quit would never be delivered then).
        worker.done.connect(thread.quit, Qt.ConnectionType.DirectConnection)
        thread.finished.connect(self._on_thread_finished)
        self._thread, self._worker = thread, worker
        thread.start()

    def _on_thread_finished(self) -> None:
        if self._worker is not None:
            self._worker.deleteLater()
        self._worker = None
        self._set_paused(False, self.last_progress.step if self.last_progress else 0)
        self._set_state(IDLE)
        self._check_resume()

    # --- events from the worker --------------------------------------------------------
    def _on_event(self, event: Event) -> None:
        self.handlers[type(event)](event)

    def _on_progress(self, event: Progress) -> None:
        self.last_progress = event
        self.steps.append(event.step)
        self.losses.append(event.loss)
        self.progressChanged.emit(event)

    def _on_device(self, event: Device) -> None:
        self.deviceReported.emit(event)

    def _on_pause_changed(self, event: PauseChanged) -> None:
        self._set_paused(event.paused, event.step)

    def _set_paused(self, paused: bool, step: int) -> None:
        if paused != self.paused:
            self.paused = paused
            self.pausedChanged.emit(paused, step)

    def _on_log(self, event: Log) -> None:
        self.logAppended.emit(event.level, event.message)

    def _on_image(self, event: Image) -> None:
        self.sampleRendered.emit(event, event.image)     # the worker made the picture a QImage

    def _on_checkpoint(self, event: Checkpoint) -> None:
        self.logAppended.emit("info", f"checkpoint at step {event.step}: {event.path}")
        self.resume_available = True
        self.resumeAvailableChanged.emit(True)
        self.checkpointSaved.emit(event.path)

    def _on_finished(self, event: Finished) -> None:
        word = "Stopped" if event.stopped_early else "Finished"
        self.logAppended.emit("info", f"{word} at step {event.step}; adapter: {event.adapter_path}")
        self.runFinished.emit(event.adapter_path, event.stopped_early)

    def _on_failed(self, event: Failed) -> None:
        self._fail(event.message, event.details)

    def _fail(self, message: str, details: str) -> None:
        self.last_error = message
        self.logAppended.emit("error", message)
        if details:
            self.logAppended.emit("error", details.rstrip())
        self.runFailed.emit(message, details)

    # --- helpers -----------------------------------------------------------------------
    def _set_state(self, state: str) -> None:
        if state != self.state:
            self.state = state
            self.stateChanged.emit(state)

    def _reset_series(self, keep: bool) -> None:
        if not keep:
            self.steps.clear()
            self.losses.clear()
        self.last_progress = None

    def _project_loaded(self) -> None:
        self._reset_series(keep=False)
        self._check_resume()

    def _check_resume(self) -> None:
        """Re-read the run's state while idle: a run in another process may start, die or finish."""
        if not self._pvm.is_open or self.running:
            return
        self._status_timer.start()
        output = self._pvm.project.output_dir
        self._tasks.submit(lambda: read_run_status(output), self._status_checked)

    def _status_checked(self, status: RunStatus) -> None:
        if self.running:
            return
        self.run_status = status
        available = status.resumable
        if available != self.resume_available:
            self.resume_available = available
            self.resumeAvailableChanged.emit(available)
        self.runStatusChanged.emit(status.label)
