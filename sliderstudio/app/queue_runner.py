"""Runs the training queue: one job after another, each in the app's training process
(`sliderstudio train --events`), with status and progress written back to the queue file.

The runner holds the runner lock for its whole life and claims each job with its pid, so two app
windows, or an app and a CLI, never run the same job twice (app/queue_lock.py). It does not train
itself: the child process does, exactly as when the app's Train button is pressed, so a job gets
the same checkpoints, heartbeat and stop handling.

Interruptions and what becomes of the job:

* the runner is told to stop (SIGTERM/SIGINT, the queue's stop request): it sends `stop` to the
  child, which checkpoints after the step in flight; the job goes back to waiting and resumes
  from that checkpoint the next time the queue runs;
* the runner is killed (SIGKILL, a crash): the child's command pipe closes, and its process guard
  stops it with a checkpoint the same way. The job stays "running" under a claim whose pid is
  dead; the next runner waits for the old child to finish its checkpoint, takes the claim over and
  resumes;
* the machine goes down: the job resumes from its last periodic checkpoint.

A resumed job continues from the newest checkpoint written since the job first started, never
from an older run's checkpoint in the same output folder.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from sliderstudio.kernel import atomic
from sliderstudio.engine.checkpoints import list_checkpoints, read_state, STATE
from sliderstudio.kernel.event_wire import WireError, decode
from sliderstudio.kernel.events import Failed, Finished, Progress
from sliderstudio.app.child_process import child_environment, ended_without_result
from sliderstudio.app.queue_lock import RunnerBusy, RunnerLock, claim_is_stale, this_claim
from sliderstudio.app.queue_store import (
    CANCELLED, FAILED, FINISHED, RUNNING, WAITING, Job, QueueState, edit_queue, read_queue,
)
from sliderstudio.engine.run_state import pid_alive, run_status

SNAPSHOT_PREFIX = ".sliderstudio-queue-"
POLL_S = 0.5               # how often the runner looks for a cancel or stop request while a job runs
PROGRESS_WRITE_S = 0.5     # progress reaches the queue file at most this often
OLD_CHILD_WAIT_S = 300.0   # a killed runner's child may still be writing its stop checkpoint
STDERR_LINES = 40


@dataclass
class Outcome:
    """How a job's training process ended, for the job's status."""

    status: str
    message: str = ""
    adapter: str = ""
    step: int = 0


def training_argv(config_path: Path, resume: Path | None) -> list[str]:
    """The app's training process (`train --events`), for this program: frozen app or `python -m`."""
    program = [sys.executable] if getattr(sys, "frozen", False) else [sys.executable, "-m", "sliderstudio"]
    return program + ["train", "--config", str(config_path), "--events",
                      "--resume_from_checkpoint", str(resume) if resume else "none"]


def snapshot_paths(job: Job) -> tuple[Path, Path]:
    """Where the job's config and dataloader snapshots are written for its run: hidden files beside
    the project's own, so every relative path in them resolves exactly as in the project."""
    config_dir = Path(job.config_file).parent
    dataloader_rel = Path(str(job.config.get("data_backend_config", "multidatabackend.json")))
    base = dataloader_rel if dataloader_rel.is_absolute() else Path(job.project) / dataloader_rel
    return (config_dir / f"{SNAPSHOT_PREFIX}{job.id}.json",
            base.parent / f"{SNAPSHOT_PREFIX}{job.id}.dataloader.json")


def write_snapshot(job: Job) -> Path:
    """Write the job's snapshot files (dataloader first: the config names it) and return the config."""
    config_path, dataloader_path = snapshot_paths(job)
    original = Path(str(job.config.get("data_backend_config", "multidatabackend.json")))
    config = {k: v for k, v in job.config.items() if k.lstrip("-") != "data_backend_config"}
    config["data_backend_config"] = str(original.parent / dataloader_path.name)
    atomic.write_json(dataloader_path, job.dataloader)
    atomic.write_json(config_path, config)
    return config_path


def remove_snapshot(job: Job) -> None:
    for path in snapshot_paths(job):
        path.unlink(missing_ok=True)


def resume_point(job: Job) -> Path | None:
    """The newest checkpoint this job wrote (at or after its first start), or None: start afresh.

    Checkpoints from an earlier run in the same output folder are older than the job's first
    start and are never picked, whatever their step."""
    if job.started is None:
        return None
    mine = [c for c in list_checkpoints(Path(job.output_dir))
            if (c / STATE).stat().st_mtime >= job.started - 1.0]
    return max(mine, key=lambda c: read_state(c).step, default=None)


def wait_for_old_child(job: Job, timeout: float = OLD_CHILD_WAIT_S) -> bool:
    """A runner killed mid-job leaves its child finishing a checkpoint; True once it is gone."""
    deadline = time.monotonic() + timeout
    while job.child_pid and pid_alive(job.child_pid) and not _zombie(job.child_pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


class QueueRunner:
    """Takes waiting (or orphaned) jobs in queue order until none is left or it is told to stop.

    `say` gets one line per thing a person would want to know (the CLI prints them)."""

    def __init__(self, path: Path, say: Callable[[str], None] | None = None):
        self.path = path
        self.say = say or (lambda line: None)
        self.lock = RunnerLock(path)
        self.stop_reason: str | None = None
        self.counts = {FINISHED: 0, FAILED: 0, CANCELLED: 0}
        self._child: subprocess.Popen | None = None
        self._child_lock = threading.Lock()
        self._stop_sent = False

    # --- the loop ------------------------------------------------------------------------------
    def run(self) -> dict[str, int]:
        """Run the queue; RunnerBusy when another process runs it. Returns jobs ended, by status."""
        try:
            self.lock.acquire()
        except RunnerBusy:
            raise RunnerBusy(self.lock.path, self._holder()) from None
        try:
            with edit_queue(self.path) as state:
                state.runner = {**this_claim(), "since": time.time()}
                state.stop_requested = False
            while self.stop_reason is None:
                job = self._claim_next()
                if job is None:
                    break
                self._run_job(job)
        finally:
            self._release()
        return self.counts

    def stop(self, reason: str) -> None:
        """Thread- and signal-safe: only sets a flag; the watcher thread sends `stop` to the child."""
        if self.stop_reason is None:
            self.stop_reason = reason

    def install_signal_handlers(self) -> None:
        for name in ("SIGTERM", "SIGINT", "SIGHUP"):
            if hasattr(signal, name):
                signal.signal(getattr(signal, name), lambda signum, _frame: self.stop(
                    f"the queue runner got {signal.Signals(signum).name}"))

    def _holder(self, wait_s: float = 3.0) -> int | None:
        """The pid of the runner holding the lock, from the queue file: a runner that has just taken
        the lock writes it a moment later, so it is looked for a few seconds."""
        deadline = time.monotonic() + wait_s
        while True:
            try:
                runner = read_queue(self.path).runner
            except Exception:       # noqa: BLE001 - damaged: the holder reports it, not this one
                runner = None
            pid = runner.get("pid") if runner else None
            live = isinstance(pid, int) and pid_alive(pid)     # a killed runner's entry is not the holder
            if live or time.monotonic() > deadline:
                return pid if live else None
            time.sleep(0.1)

    def _release(self) -> None:
        try:
            with edit_queue(self.path) as state:
                if state.runner and state.runner.get("pid") == os.getpid():
                    state.runner = None
        finally:
            self.lock.release()

    def _claim_next(self) -> Job | None:
        """The first job that is waiting, or running under a dead runner's claim; claimed here."""
        with edit_queue(self.path) as state:
            if state.stop_requested:
                self.stop("stop was requested")
                return None
            for job in state.jobs:
                orphan = job.status == RUNNING and claim_is_stale(job.claim)
                if orphan and job.cancel_requested:     # cancelled while no runner was there to stop it
                    job.status, job.claim, job.ended = CANCELLED, None, time.time()
                    job.message = f"cancelled at step {job.step}; its checkpoint is kept"
                elif job.status == WAITING or orphan:
                    job.claim, job.status = this_claim(), RUNNING
                    return job
        return None

    def _update(self, job_id: str, **changes) -> Job | None:
        with edit_queue(self.path) as state:
            job = next((j for j in state.jobs if j.id == job_id), None)
            if job is None:
                return None
            for key, value in changes.items():
                setattr(job, key, value)
            return job

    # --- one job -------------------------------------------------------------------------------
    def _run_job(self, job: Job) -> None:
        problem = self._check_runnable(job)
        if problem:
            self._end(job, Outcome(FAILED, problem, step=job.step))
            return
        resume = resume_point(job)
        self.say(f"job {job.id} ({job.name}): " + (f"resuming from {resume.name}" if resume else "starting"))
        try:
            config_path = write_snapshot(job)
            outcome = self._train(job, config_path, resume)
        except OSError as exc:
            outcome = Outcome(FAILED, f"job {job.id}: cannot start its training process: {exc}", step=job.step)
        finally:
            remove_snapshot(job)
        self._end(job, outcome)

    def _check_runnable(self, job: Job) -> str | None:
        """Why the job cannot run now (its project was deleted, another process trains it), or None."""
        if not Path(job.project).is_dir() or not Path(job.config_file).parent.is_dir():
            return f"job {job.id}: the project folder {job.project} no longer exists (deleted or moved while queued)"
        if not wait_for_old_child(job):
            return f"job {job.id}: its previous training process {job.child_pid} did not end"
        status = run_status(Path(job.output_dir))
        deadline = time.monotonic() + (OLD_CHILD_WAIT_S if job.started is not None else 0.0)
        while status.state == "running" and time.monotonic() < deadline:
            time.sleep(0.5)     # an interrupted job: its old process, if the runner died before naming it
            status = run_status(Path(job.output_dir))
        if status.state == "running":
            return (f"job {job.id}: the project is being trained by another process right now "
                    f"({status.label}); queue it again when that run has ended")
        return None

    def _train(self, job: Job, config_path: Path, resume: Path | None) -> Outcome:
        process = subprocess.Popen(
            training_argv(config_path, resume), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, encoding="utf-8", errors="replace", bufsize=1,
            env=child_environment(), start_new_session=True)
        with self._child_lock:
            self._child, self._stop_sent = process, False
        self._update(job.id, child_pid=process.pid, started=job.started or time.time(), message="")
        tail: deque[str] = deque(maxlen=STDERR_LINES)
        threads = [threading.Thread(target=self._drain, args=(process, tail), daemon=True),
                   threading.Thread(target=self._watch, args=(job.id, process), daemon=True)]
        for t in threads:
            t.start()
        try:
            outcome = self._read_events(job, process)
            returncode = process.wait()
        finally:
            with self._child_lock:
                self._child = None
        threads[0].join(timeout=5)
        if outcome is None:
            outcome = Outcome(FAILED, f"job {job.id}: {ended_without_result(returncode, list(tail))}",
                              step=job.step)
        return outcome

    def _read_events(self, job: Job, process: subprocess.Popen) -> Outcome | None:
        assert process.stdout is not None
        outcome, last_write = None, 0.0
        for line in process.stdout:
            if line.startswith('{"type":"Image"'):
                continue                      # validation pictures: the app's preview, not the queue's
            try:
                event = decode(line)
            except WireError:
                continue
            if isinstance(event, Progress):
                job.step, job.total = event.step, event.total
                if time.monotonic() - last_write >= PROGRESS_WRITE_S or event.step == event.total:
                    last_write = time.monotonic()
                    self._update(job.id, step=event.step, total=event.total)
            elif isinstance(event, Finished):
                outcome = self._finished(job, event)
            elif isinstance(event, Failed):
                outcome = Outcome(FAILED, f"job {job.id}: {event.message}", step=event.step)
        return outcome

    def _finished(self, job: Job, event: Finished) -> Outcome:
        if not event.stopped_early:
            return Outcome(FINISHED, adapter=event.adapter_path, step=event.step)
        current = read_queue(self.path).find(job.id)
        if current.cancel_requested:
            return Outcome(CANCELLED, f"cancelled at step {event.step}; its checkpoint is kept", step=event.step)
        if self.stop_reason is None:      # stopped by someone else (a signal to the child): do not loop on it
            self.stop(f"job {job.id}'s training process stopped on its own at step {event.step}")
        return Outcome(WAITING, f"interrupted at step {event.step} ({self.stop_reason}); resumes from its "
                                "checkpoint when the queue runs again", step=event.step)

    def _end(self, job: Job, outcome: Outcome) -> None:
        ended = None if outcome.status == WAITING else time.time()
        self._update(job.id, status=outcome.status, message=outcome.message, adapter=outcome.adapter,
                     step=max(outcome.step, 0) or job.step, ended=ended, claim=None, cancel_requested=False)
        if outcome.status in self.counts:
            self.counts[outcome.status] += 1
        what = outcome.adapter if outcome.status == FINISHED else outcome.message
        self.say(f"job {job.id} ({job.name}): {outcome.status}" + (f": {what}" if what else ""))

    # --- threads -------------------------------------------------------------------------------
    @staticmethod
    def _drain(process: subprocess.Popen, tail: deque[str]) -> None:
        assert process.stderr is not None
        for line in process.stderr:
            tail.append(line.rstrip())

    def _watch(self, job_id: str, process: subprocess.Popen) -> None:
        """While the child runs: a cancel of this job, a stop request or a signal sends `stop` once."""
        while process.poll() is None:
            if self.stop_reason is None:
                try:
                    state: QueueState = read_queue(self.path)
                    job = next((j for j in state.jobs if j.id == job_id), None)
                    if state.stop_requested:
                        self.stop("stop was requested")
                    elif job is not None and job.cancel_requested:
                        self._send_stop(process)
                except Exception:       # noqa: BLE001 - an unreadable file must not end the watch
                    pass
            if self.stop_reason is not None:
                self._send_stop(process)
            time.sleep(POLL_S)

    def _send_stop(self, process: subprocess.Popen) -> None:
        with self._child_lock:
            if self._stop_sent or process.stdin is None:
                return
            self._stop_sent = True
            try:
                process.stdin.write("stop\n")
                process.stdin.flush()
            except (OSError, ValueError):
                pass
