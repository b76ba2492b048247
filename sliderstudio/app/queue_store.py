"""The training queue on disk: jobs, their order and status, in one JSON file in the user data folder.

The file is the only shared state between the app's Queue pane, `sliderstudio queue …` and the
runner (app/queue_runner.py), so each of them can start, crash or be closed without the others
losing anything. Every change is a read-modify-write under the edit lock (app/queue_lock.py),
published with an atomic rename, so a reader never sees half a file and a crash mid-write leaves
the previous queue.

A job keeps a snapshot of its project's config (with the overrides given at `add`) and of its
dataloader list, taken when it was added: editing the project afterwards changes the next job you
add, not the one waiting. Images, prompt library and LyCORIS preset are read when the job runs.

A file that cannot be read as a queue is moved aside (never overwritten) and named in the error;
a file from a newer Slider Studio is left exactly as it is.
"""
from __future__ import annotations

import json
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Iterator

from sliderstudio.kernel import atomic
from sliderstudio.kernel.config_files import json_syntax_error
from sliderstudio.kernel.errors import InputError
from sliderstudio.app.queue_lock import claim_is_stale, edit_lock
from sliderstudio.kernel.user_data import user_data_dir

SCHEMA = 1
QUEUE_NAME = "queue.json"
WAITING, RUNNING, FINISHED, FAILED, CANCELLED = "waiting", "running", "finished", "failed", "cancelled"
STATUSES = (WAITING, RUNNING, FINISHED, FAILED, CANCELLED)
ENDED = (FINISHED, FAILED, CANCELLED)


class QueueFileError(InputError):
    """The queue file is damaged or from a newer version; the message names it and what is wrong."""


class NewerQueueFile(QueueFileError):
    """Written by a newer Slider Studio: left exactly as it is (never set aside, never rewritten)."""


def queue_file() -> Path:
    """<user data>/queue/queue.json (SLIDERSTUDIO_DATA_DIR moves it, for tests and portable installs)."""
    return user_data_dir() / "queue" / QUEUE_NAME


@dataclass
class Job:
    """One queued training run. `step`/`total` follow the run; `started` is its first start (a later
    start resumes from a checkpoint written after it); `claim` is the runner that has it."""

    id: str
    project: str
    config_file: str
    output_dir: str
    config: dict[str, Any]
    dataloader: Any
    overrides: dict[str, Any] = field(default_factory=dict)
    status: str = WAITING
    step: int = 0
    total: int = 0
    adapter: str = ""
    message: str = ""
    added: float = 0.0
    started: float | None = None
    ended: float | None = None
    claim: dict | None = None
    child_pid: int | None = None
    cancel_requested: bool = False

    @property
    def name(self) -> str:
        return Path(self.project).name

    @property
    def label(self) -> str:
        """The status in words, as `queue list` and the app's pane show it."""
        if self.status == RUNNING and claim_is_stale(self.claim):
            return f"interrupted at step {self.step} — resumes from its checkpoint when the queue runs"
        if self.status == RUNNING:
            return f"running — step {self.step} of {self.total}" if self.total else "running — starting"
        if self.status == FINISHED:
            return f"finished — {self.adapter}"
        if self.status in (FAILED, CANCELLED):
            return f"{self.status} — {self.message}" if self.message else self.status
        return f"waiting — {self.message}" if self.message else WAITING


@dataclass
class QueueState:
    jobs: list[Job] = field(default_factory=list)
    next_id: int = 1
    stop_requested: bool = False
    runner: dict | None = None     # {"pid", "host", "since"} of the process running the queue

    def find(self, job_id: str) -> Job:
        for job in self.jobs:
            if job.id == str(job_id):
                return job
        known = ", ".join(j.id for j in self.jobs) or "none"
        raise InputError(f"no such job in the queue (jobs: {known})", key="JOB", value=job_id)

    def to_dict(self) -> dict:
        return {"schema": SCHEMA, "next_id": self.next_id, "stop_requested": self.stop_requested,
                "runner": self.runner, "jobs": [asdict(j) for j in self.jobs]}


# --- reading ------------------------------------------------------------------------------------

def read_queue(path: Path) -> QueueState:
    """The queue in `path` (empty when there is none). QueueFileError when it is not a queue file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return QueueState()
    except (OSError, UnicodeDecodeError) as exc:
        raise QueueFileError(f"cannot read the queue file: {exc}", file=path) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise QueueFileError(f"not a queue file: {json_syntax_error(exc, None).message}", file=path) from None
    return parse_queue(data, path)


def parse_queue(data: Any, path: Path) -> QueueState:
    if not isinstance(data, dict) or not isinstance(data.get("schema"), int):
        raise QueueFileError("not a queue file: no schema version", file=path, key="schema")
    if data["schema"] > SCHEMA:
        raise NewerQueueFile(f"written by a newer Slider Studio (queue schema {data['schema']}; this version "
                             f"reads {SCHEMA}); update Slider Studio to use this queue. The file is left as it is",
                             file=path, key="schema", value=data["schema"])
    jobs = data.get("jobs")
    if not isinstance(jobs, list):
        raise QueueFileError("not a queue file: 'jobs' is not a list", file=path, key="jobs")
    parsed = [_parse_job(raw, i, path) for i, raw in enumerate(jobs)]
    next_id = data.get("next_id")
    next_id = next_id if isinstance(next_id, int) else 1
    next_id = max([next_id, *(int(j.id) + 1 for j in parsed if j.id.isdigit())])
    runner = data.get("runner") if isinstance(data.get("runner"), dict) else None
    return QueueState(parsed, next_id, bool(data.get("stop_requested", False)), runner)


def _parse_job(raw: Any, index: int, path: Path) -> Job:
    names = {f.name for f in fields(Job)}
    required = ("id", "project", "config_file", "output_dir", "config", "dataloader")
    if not isinstance(raw, dict) or any(k not in raw for k in required):
        raise QueueFileError(f"job {index + 1} lacks one of {', '.join(required)}", file=path, key="jobs")
    job = Job(**{k: v for k, v in raw.items() if k in names})
    if job.status not in STATUSES or not isinstance(job.config, dict):
        raise QueueFileError(f"job {job.id} has an unknown status or a config that is not an object",
                             file=path, key="status", value=job.status)
    job.id = str(job.id)
    return job


def set_aside(path: Path) -> Path:
    """Move a damaged queue file out of the way (kept for a person to look at, never overwritten)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = path.with_name(f"{path.stem}.corrupt-{stamp}{path.suffix}")
    n = 1
    while target.exists():
        target = path.with_name(f"{path.stem}.corrupt-{stamp}-{n}{path.suffix}")
        n += 1
    path.rename(target)
    return target


# --- changing -----------------------------------------------------------------------------------

@contextmanager
def edit_queue(path: Path) -> Iterator[QueueState]:
    """Read, let the caller change, write back atomically; all under the edit lock.

    A damaged file is moved aside and reported (QueueFileError naming both files); the change is
    not made, and the next command starts from an empty queue. A newer-version file is untouched."""
    with edit_lock(path):
        try:
            state = read_queue(path)
        except QueueFileError as exc:
            if isinstance(exc, NewerQueueFile) or not path.exists():
                raise
            aside = set_aside(path)
            raise QueueFileError(f"{exc.message}; it was moved aside to {aside} and the next queue command "
                                 "starts an empty queue", file=path) from None
        yield state
        atomic.write_json(path, state.to_dict())


def load_queue(path: Path) -> QueueState:
    """For commands that only read (`queue list`, the app's pane): a damaged file is set aside as by
    edit_queue, so each face reports it once and then works on."""
    try:
        return read_queue(path)
    except NewerQueueFile:
        raise
    except QueueFileError:
        with edit_queue(path):
            pass          # re-read under the lock: sets the damaged file aside and raises
        return read_queue(path)   # it was fixed in between by another writer


def snapshot_job(project_path: str | Path, overrides: dict[str, Any], job_id: str) -> Job:
    """A job for the project as it is now: its config (with `overrides`) and dataloader list.

    The project is loaded and checked first, so a bad config is refused at `add` (exit 2), not
    found in the middle of the night."""
    from sliderstudio.engine.project import load_project, locate_config, merge_overrides, read_config, read_json

    project = load_project(project_path, overrides)
    config_path = locate_config(project_path)
    raw = read_config(config_path)
    config = merge_overrides(raw, overrides) if overrides else raw
    return Job(id=job_id, project=str(project.root), config_file=str(config_path),
               output_dir=str(project.output_dir.resolve()), config=json.loads(json.dumps(config, default=str)),
               dataloader=read_json(project.dataloader_path), overrides=dict(overrides), added=time.time())


def add_job(path: Path, project_path: str | Path, overrides: dict[str, Any] | None = None) -> Job:
    """Append a job (snapshot taken before the lock: loading a project may take a moment)."""
    job = snapshot_job(project_path, overrides or {}, "0")
    with edit_queue(path) as state:
        job.id = str(state.next_id)
        state.next_id += 1
        state.jobs.append(job)
    return job


def move_job(path: Path, job_id: str, position: int) -> QueueState:
    """Put the job at 1-based `position` in the order the runner takes waiting jobs."""
    with edit_queue(path) as state:
        job = state.find(job_id)
        if not 1 <= position <= len(state.jobs):
            raise InputError(f"position must be between 1 and {len(state.jobs)}", key="--to", value=position)
        state.jobs.remove(job)
        state.jobs.insert(position - 1, job)
    return state


def move_job_by(path: Path, job_id: str, delta: int) -> QueueState:
    """Move the job `delta` places (−1 up, +1 down) in the order as the file holds it now; nothing at
    either end. Why not move_job with a position computed by the caller: the app's list can be a poll
    behind the file (the CLI or another window moved a job), and a position from it would move the
    job somewhere else than one place."""
    with edit_queue(path) as state:
        job = state.find(job_id)
        index = state.jobs.index(job) + delta
        if 0 <= index < len(state.jobs):
            state.jobs.remove(job)
            state.jobs.insert(index, job)
    return state


def cancel_job(path: Path, job_id: str) -> Job:
    """A waiting job is cancelled at once; a running one is stopped by its runner (with a checkpoint)."""
    with edit_queue(path) as state:
        job = state.find(job_id)
        if job.status in ENDED:
            raise InputError(f"job {job.id} is already {job.status}: nothing to cancel", key="JOB", value=job_id)
        if job.status == WAITING or claim_is_stale(job.claim):   # nobody runs it: cancelled now
            job.message = "cancelled before it ran" if job.status == WAITING and not job.step else \
                f"cancelled at step {job.step}; its checkpoint is kept"
            job.status, job.claim, job.ended = CANCELLED, None, time.time()
        else:
            job.cancel_requested = True
    return job


def request_stop(path: Path) -> None:
    """Ask whichever process runs the queue to stop after keeping a checkpoint of the running job."""
    with edit_queue(path) as state:
        state.stop_requested = True
