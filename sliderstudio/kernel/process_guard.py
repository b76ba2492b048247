"""The training process outlives its app only long enough to keep its work: every way the app can go
away becomes the same STOP that the Stop button sends.

The app trains in a child process (`sliderstudio train --events`). The app can leave in several
ways, and each used to end the run without a checkpoint:

* it quits or crashes: its pipes close, the next event written raises BrokenPipeError (Python
  ignores SIGPIPE) and the trainer died of it;
* it (or a person, or a logout) sends SIGTERM / SIGHUP / SIGINT: the default action killed the
  process between two steps or in the middle of a write;
* it is killed with SIGKILL: the same closed pipes, and nothing at all tells a process that is
  not reading or writing right now.

`ProcessGuard` turns each of them into `Command.STOP` in the trainer's mailbox, so the loop
finishes the optimizer step in flight, writes a checkpoint at that step and ends like a stop. The
trainer polls the mailbox between steps only, so the checkpoint's step is always the last step
done. Before the loop exists (model loading, which can take minutes) there is nothing to keep,
so a stop then ends the process at once, after telling the app so, instead of loading a model
nobody will train. That exit is as safe as a kill, which every file write is built to survive
(atomic writes; tests/test_kill_resume.py kills runs at random moments). An exception raised
into the set-up would not do: set-up runs inside library code (lazy imports, model loading)
that catches broad exceptions, and swallowed it in a measured run.

Signal handlers run between two bytecodes of the main thread, possibly while it holds a lock
(the mailbox's queue, the wire's write lock); a handler that took one of those could deadlock.
So the handlers here do nothing: the signal's number reaches a reader thread through
`signal.set_wakeup_fd`, and that thread does the work. Once the app is known to be gone, stdout
and stderr (the app's pipes) are diverted to a log file in the output folder, so that no later
print or library warning can fail on a closed pipe and take the checkpoint down with it.
"""
from __future__ import annotations

import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Callable

from sliderstudio.kernel.events import Command, Event, Finished, Log, Mailbox

# Windows has no SIGHUP; there the app's death shows as the command pipe's end alone (no reparenting).
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP", "SIGINT") if hasattr(signal, name))
PARENT_POLL_S = 0.5      # how often the watchdog asks whether the app still exists
PARENT_SETTLE_S = 0.5    # after the command pipe's end, how long to wait for a dead app's reparenting
PROCESS_LOG = "training-process.log"


class ProcessGuard:
    """Stops the run with a checkpoint when the app goes away; see the module docstring."""

    def __init__(self, mailbox: Mailbox, sink: Callable[[Event], None] | None = None,
                 exit_process: Callable[[int], None] = os._exit):
        self.mailbox = mailbox
        self.sink = sink or (lambda event: None)
        self.exit_process = exit_process
        self.reason: str | None = None           # why the run was told to stop (the first reason)
        self.log_file: Path | None = None        # where stdout/stderr go once the app is gone
        self.interruptible: Callable[[], bool] = lambda: False   # True while set-up runs (no loop yet)
        self.diverted = False
        self._parent = os.getppid()
        self._lock = threading.Lock()
        self._announced = False
        self._watching = False                   # set-up or loop under way (watch_setup was called)
        self._done = threading.Event()

    # --- set-up --------------------------------------------------------------------------------
    def install(self, watch_parent: bool = True) -> None:
        """Signal handlers (main thread only) and, unless told otherwise, the parent watchdog."""
        reader, writer = socket.socketpair()     # a socket: the one kind Windows accepts here too
        writer.setblocking(False)
        signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
        self._wakeup = (reader, writer)          # kept: closing them would silence the signals
        for signum in STOP_SIGNALS:
            signal.signal(signum, _wake_only)
        threading.Thread(target=self._read_signals, args=(reader,), name="stop-signals", daemon=True).start()
        if watch_parent and self._parent > 1:
            threading.Thread(target=self._watch_parent, name="parent-watchdog", daemon=True).start()

    def watch_setup(self, running: Callable[[], bool]) -> None:
        """From now on `running()` tells whether set-up runs; a stop that came earlier acts now."""
        self.interruptible = running
        with self._lock:
            self._watching = True
        if self.reason is not None:      # a stop came while the config was read: act on it now
            self.stop(self.reason)

    def close(self) -> None:
        """End the watchdog (tests; the process's exit ends it anyway)."""
        self._done.set()

    # --- the ways a run is told to stop ----------------------------------------------------------
    def stop(self, reason: str) -> None:
        """Thread-safe. Queue STOP; the first reason is logged, later ones change nothing.

        Before `watch_setup` nothing runs yet (the config is being read): the stop only waits."""
        with self._lock:
            if self.reason is None:
                self.reason = reason
            first = self._watching and not self._announced
            self._announced = self._announced or first
        if first and self.interruptible():
            self._end_during_setup()
            return                       # (only reached where exit_process does not exit: tests)
        if first:    # logged before STOP is queued, so the log line comes before the run's last events
            self.sink(Log(f"stopping after the step in flight, keeping a checkpoint: {self.reason}", "warning"))
        self.mailbox.send(Command.STOP)

    def app_gone(self, reason: str) -> None:
        """The app cannot read any more: stop, and send further output to the log file."""
        self.divert_output()
        self.stop(reason)

    def input_ended(self) -> None:
        """End of the command pipe: the app closed it on purpose or died. Stop either way.

        A dying app's pipes close before the system hands its children to a new parent (measured:
        the pipe's end came first every time), and the event pipe may still be open for a moment
        after the command pipe's end: a stop line written then lands in a pipe nobody reads. So the
        parent is watched for up to PARENT_SETTLE_S first; a dead app's stop goes to the log file."""
        deadline = time.monotonic() + PARENT_SETTLE_S
        while time.monotonic() < deadline:
            if self.parent_gone():
                self.app_gone(f"the app (pid {self._parent}) is gone: its command pipe closed")
                return
            time.sleep(0.02)
        self.stop("the command pipe (stdin) closed: the app quit or is gone")

    def parent_gone(self) -> bool:
        return self._parent > 1 and os.getppid() != self._parent

    # --- output --------------------------------------------------------------------------------
    def divert_output(self) -> None:
        """Point file descriptors 1 and 2 at the log file (or /dev/null): a write can no longer fail."""
        with self._lock:
            if self.diverted:
                return
            self.diverted = True
        fd = _open_log(self.log_file)
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass     # what the closed pipe did not take is flushed to the file below
        os.dup2(fd, 2)
        os.dup2(fd, 1)
        os.close(fd)

    # --- internals -----------------------------------------------------------------------------
    def _end_during_setup(self) -> None:
        """No step was done, so there is nothing to keep: say so and end with status 0 now."""
        self.sink(Log(f"stopped during set-up ({self.reason}): no step was done, nothing to keep", "warning"))
        self.sink(Finished(0, "", stopped_early=True))
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        self.exit_process(0)

    def _read_signals(self, reader: socket.socket) -> None:
        while True:
            try:
                data = reader.recv(64)
            except OSError:
                return
            if not data:
                return
            for signum in data:
                self._signalled(signum)

    def _signalled(self, signum: int) -> None:
        if signum not in STOP_SIGNALS:   # another handler's signal (e.g. a SIGCHLD a library asked for)
            return
        name = signal.Signals(signum).name
        if signum == getattr(signal, "SIGHUP", None):   # a hang-up: whoever held our pipes is gone
            self.app_gone(f"received {name}")
        else:
            self.stop(f"received {name}")

    def _watch_parent(self) -> None:
        """SIGKILL of the app sends nothing; its death shows as a new parent process (init or a reaper)."""
        while not self._done.wait(PARENT_POLL_S):
            if self.parent_gone():
                self.app_gone(f"the app (pid {self._parent}) is gone")
                return


def _wake_only(_signum: int, _frame) -> None:
    """The Python-level handler: replaces the default action (death); the wakeup fd carries the news."""


def _open_log(path: Path | None) -> int:
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            return os.open(path, flags, 0o644)
        except OSError:
            pass
    return os.open(os.devnull, os.O_WRONLY)
