"""The training queue for the app's Queue pane: the jobs as the queue file says, and the commands.

The queue file (app/queue_store.py) is the truth, shared with `sliderstudio queue …` and with
whichever process runs the queue, so the pane follows the file rather than keeping its own list:
while shown it looks at the file's modification time once a second (a stat, the one piece of IO on
the UI thread) and re-reads it on the task pool when it changed. Every change (add, move, cancel,
stop) is a locked read-modify-write, also on the task pool.

Run starts the same runner as `sliderstudio queue run`, as a background process of its own: it
trains job after job in the app's training process, and it keeps going if the window is closed or
the app dies; the pane of any window, or a later start of the app, shows it live again.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from PySide6.QtCore import QObject, QTimer, Signal

from sliderstudio.app.queue_store import Job, QueueState, queue_file
from sliderstudio.gui.viewmodels.project import ProjectViewModel
from sliderstudio.gui.workers.tasks import TaskRunner

RUNNER_LOG = "runner.log"


@dataclass
class QueueView:
    """What the pane shows: the jobs in order and who runs them (read together, on the task pool)."""

    jobs: list[Job] = field(default_factory=list)
    runner_pid: int | None = None     # a live process running the queue, or None
    error: str = ""


def read_view(path: Path) -> QueueView:
    """Task-pool side of a refresh: the file (a damaged one is set aside and reported) and the runner."""
    from sliderstudio.kernel.errors import InputError
    from sliderstudio.app.queue_store import load_queue
    from sliderstudio.engine.run_state import pid_alive

    try:
        state: QueueState = load_queue(path)
    except InputError as exc:
        return QueueView(error=str(exc))
    pid = state.runner.get("pid") if state.runner else None
    return QueueView(state.jobs, pid if isinstance(pid, int) and pid_alive(pid) else None)


def runner_argv() -> list[str]:
    program = [sys.executable] if getattr(sys, "frozen", False) else [sys.executable, "-m", "sliderstudio"]
    return program + ["queue", "run"]


class QueueViewModel(QObject):
    jobsChanged = Signal(object)        # list[Job], in queue order
    runnerChanged = Signal(object)      # pid of the process running the queue, or None
    errorRaised = Signal(str)           # a refused command or a damaged queue file, in words

    POLL_MS = 1000

    def __init__(self, project_vm: ProjectViewModel, tasks: TaskRunner, path: Path | None = None,
                 parent: QObject | None = None):
        super().__init__(parent)
        self._pvm, self._tasks = project_vm, tasks
        self.path = path or queue_file()
        self.jobs: list[Job] = []
        self.runner_pid: int | None = None
        self.last_error = ""
        self._process: subprocess.Popen | None = None
        self._seen_mtime: float | None = None
        self._reading = False
        self._timer = QTimer(self, interval=self.POLL_MS, timeout=self._poll)

    # --- following the file ------------------------------------------------------------
    def set_active(self, active: bool) -> None:
        """Follow the file while the pane is shown (and refresh at once when it appears)."""
        if active and not self._timer.isActive():
            self._timer.start()
            self.refresh()
        elif not active:
            self._timer.stop()

    def refresh(self) -> None:
        self._seen_mtime = None
        self._poll()

    def _poll(self) -> None:
        if self._process is not None and self._process.poll() is not None:
            self._process = None                 # reaped: no zombie left behind
        try:
            mtime = self.path.stat().st_mtime_ns
        except OSError:
            mtime = 0
        if self._reading or (mtime == self._seen_mtime and not self.runner_pid):
            return
        self._reading, self._seen_mtime = True, mtime
        self._tasks.submit(lambda: read_view(self.path), self._read, self._read_failed)

    def _read(self, view: QueueView) -> None:
        self._reading = False
        if view.error:
            self._error(view.error)
        if view.jobs != self.jobs:
            self.jobs = view.jobs
            self.jobsChanged.emit(view.jobs)
        # the runner this window started names itself in the file only once it holds the lock
        own = self._process.pid if self._process is not None and self._process.poll() is None else None
        pid = view.runner_pid or own
        if pid != self.runner_pid:
            self.runner_pid = pid
            self.runnerChanged.emit(pid)

    def _read_failed(self, exc: Exception) -> None:
        self._reading = False
        self._error(f"cannot read the queue: {exc}")

    # --- commands ----------------------------------------------------------------------
    def add_open_project(self) -> bool:
        """Queue the open project as it is now (saved first, so the snapshot is what the window shows)."""
        if not self._pvm.is_open:
            self._error("open a project first: the queue takes the open project with its config")
            return False
        pending = self._pvm.save() if self._pvm.dirty else self._pvm.last_save
        root = self._pvm.project.root

        def add() -> Job:
            from sliderstudio.app.queue_store import add_job

            if pending is not None:
                pending.result()            # the snapshot reads the files this save writes
            return add_job(self.path, root)

        self._submit(add)
        return True

    def move_by(self, job_id: str, delta: int) -> None:
        """Up (-1) or down (+1) one place in the order the file holds when the move runs; nothing at
        either end (queue_store.move_job_by)."""
        from sliderstudio.app.queue_store import move_job_by

        self._submit(lambda: move_job_by(self.path, job_id, delta))

    def cancel(self, job_id: str) -> None:
        from sliderstudio.app.queue_store import cancel_job

        self._submit(lambda: cancel_job(self.path, job_id))

    def run(self) -> bool:
        """Start the runner (`sliderstudio queue run`) in the background; False when one is running."""
        if self.runner_pid is not None or (self._process is not None and self._process.poll() is None):
            self._error(f"the queue is already running (process {self.runner_pid or self._process.pid})")
            return False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(RUNNER_LOG), "a", encoding="utf-8") as log:
            self._process = subprocess.Popen(runner_argv(), stdin=subprocess.DEVNULL, stdout=log,
                                             stderr=subprocess.STDOUT, env=_runner_environment(),
                                             start_new_session=True)
        self.runner_pid = self._process.pid
        self.runnerChanged.emit(self.runner_pid)
        return True

    def stop(self) -> None:
        """Ask the runner to stop: the running job checkpoints after its current step and waits."""
        from sliderstudio.app.queue_store import request_stop

        if self._process is not None and self._process.poll() is None and os.name == "posix":
            self._process.send_signal(signal.SIGTERM)    # ours: at once, even before it read the file
        self._submit(lambda: request_stop(self.path))

    def wait_runner(self, timeout: float = 120.0) -> bool:
        """Block until the runner this window started ended (tests)."""
        if self._process is None:
            return True
        try:
            self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        return True

    def _submit(self, fn) -> None:
        self._tasks.submit(fn, lambda _result: self.refresh(), self._command_failed)

    def _command_failed(self, exc: Exception) -> None:
        self._error(str(exc))
        self.refresh()

    def _error(self, text: str) -> None:
        self.last_error = text
        self.errorRaised.emit(text)


def _runner_environment() -> dict[str, str]:
    from sliderstudio.app.child_process import child_environment

    return child_environment()
