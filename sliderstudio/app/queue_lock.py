"""The training queue's locks: who may edit the queue file, who may run it, and which job is whose.

Three layers, each for a different failure:

* the edit lock (an OS file lock held for one read-modify-write) keeps a CLI `queue add` and a
  runner's progress update from losing each other's change;
* the runner lock (an OS file lock held for the runner's whole life) lets one runner at a time run
  the queue, whether it was started by an app window or by `sliderstudio queue run`. The operating
  system drops it when the process dies, even by SIGKILL, so a crash never leaves the queue locked;
* the per-job claim (the runner's pid and host, written into the job) says which process runs a
  job. A claim whose process is gone is stale and is taken over: that is how a job interrupted by
  a kill or a reboot is found again and resumed.
"""
from __future__ import annotations

import os
import socket
from pathlib import Path

from filelock import FileLock, Timeout

from sliderstudio.engine.run_state import pid_alive

EDIT_TIMEOUT_S = 30.0


class RunnerBusy(Exception):
    """Another process holds the runner lock; `holder` is its pid when the queue file names it."""

    def __init__(self, lock_file: Path, holder: int | None = None):
        self.lock_file, self.holder = lock_file, holder
        who = f"process {holder}" if holder else "another process"
        super().__init__(f"the queue is already being run by {who} (lock {lock_file})")


def edit_lock(queue_file: Path) -> FileLock:
    """The lock around one read-modify-write of `queue_file` (blocking, a few milliseconds normally)."""
    queue_file.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(queue_file) + ".lock", timeout=EDIT_TIMEOUT_S, thread_local=False)


def runner_lock_file(queue_file: Path) -> Path:
    return queue_file.with_name("runner.lock")


class RunnerLock:
    """Held by the one process that runs the queue; `acquire` raises RunnerBusy when another holds it."""

    def __init__(self, queue_file: Path):
        self.path = runner_lock_file(queue_file)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # no soft fallback: a soft lock (a file that exists) would outlive a killed runner
        self._lock = FileLock(str(self.path), timeout=0, thread_local=False, fallback_to_soft=False)

    def acquire(self, holder: int | None = None) -> None:
        try:
            self._lock.acquire(timeout=0)
        except Timeout:
            raise RunnerBusy(self.path, holder) from None

    def release(self) -> None:
        if self._lock.is_locked:
            self._lock.release(force=True)

    @property
    def held(self) -> bool:
        return self._lock.is_locked


def this_claim() -> dict:
    """The claim a runner writes into the job it takes."""
    return {"pid": os.getpid(), "host": socket.gethostname()}


def claim_is_stale(claim: dict | None) -> bool:
    """No claim, or the claiming process is gone. A claim from another host cannot be checked
    from here and counts as live (a queue folder shared over a network is not taken over)."""
    if not claim:
        return True
    if claim.get("host") not in (None, socket.gethostname()):
        return False
    pid = claim.get("pid")
    return not isinstance(pid, int) or not pid_alive(pid)
