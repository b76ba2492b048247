"""The training queue's file, commands and locks, without training: add / list / move / cancel through
the CLI, the config snapshot, the bad-input paths (damaged or newer queue file, unknown job, bad
override), the resume point, claims and the runner lock. Runs with real training are in
tests/test_queue_runner.py."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sliderstudio.cli import main
from sliderstudio.engine.checkpoints import LoopState, write_checkpoint
from sliderstudio.engine.project import load_project
from sliderstudio.app.queue_lock import RunnerBusy, RunnerLock, claim_is_stale, this_claim
from sliderstudio.app.queue_runner import remove_snapshot, resume_point, write_snapshot
from sliderstudio.app.queue_store import (
    CANCELLED, RUNNING, SCHEMA, WAITING, Job, add_job, edit_queue, move_job, move_job_by, queue_file, read_queue,
)
from sliderstudio.kernel.errors import InputError
from sliderstudio.toy.demo_project import write_demo_project


@pytest.fixture
def qfile(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("SLIDERSTUDIO_DATA_DIR", str(tmp_path / "data"))
    return queue_file()


def toy(root: Path, steps: int = 4) -> Path:
    write_demo_project(root, pairs=2, max_train_steps=steps)
    return root


def dead_pid() -> int:
    done = subprocess.Popen([sys.executable, "-c", "pass"])
    done.wait()
    return done.pid


def listed(capsys) -> list[dict]:
    capsys.readouterr()
    assert main(["queue", "list", "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_a_move_by_one_place_reads_the_order_the_file_holds_then(tmp_path, qfile):
    """The app's Up/Down: relative to the file when the move runs, so a list a poll behind (the CLI moved
    a job meanwhile) still moves the job exactly one place; nothing at either end."""
    project = toy(tmp_path / "p")
    for _ in range(3):
        add_job(qfile, project, {})
    order = lambda: [j.id for j in read_queue(qfile).jobs]   # noqa: E731
    move_job(qfile, "3", 1)                                   # another face reorders: 3, 1, 2
    assert [j.id for j in move_job_by(qfile, "1", +1).jobs] == ["3", "2", "1"]
    move_job_by(qfile, "1", +1)                               # already last: nothing
    move_job_by(qfile, "3", -1)                               # already first: nothing
    assert order() == ["3", "2", "1"]
    assert [j.id for j in move_job_by(qfile, "2", -1).jobs] == ["2", "3", "1"]
    with pytest.raises(InputError, match="no such job in the queue") as err:
        move_job_by(qfile, "9", 1)
    assert err.value.value == "9"


def test_add_list_move_cancel_round_trip(tmp_path, qfile, capsys):
    a, b = toy(tmp_path / "a"), toy(tmp_path / "b")
    assert main(["queue", "add", str(a)]) == 0
    assert main(["queue", "add", str(b), "--config-override", "max_train_steps=9",
                 "--config-override", "output_dir=out-b"]) == 0
    assert main(["queue", "add", str(a), "--config-override", "seed=5"]) == 0
    jobs = listed(capsys)
    assert [(j["id"], j["status"]) for j in jobs] == [("1", WAITING), ("2", WAITING), ("3", WAITING)]
    assert jobs[1]["config"]["max_train_steps"] == 9 and jobs[1]["output_dir"] == str((b / "out-b").resolve())
    assert jobs[2]["config"]["seed"] == 5 and jobs[0]["config"]["seed"] == 0
    assert main(["queue", "move", "3", "--to", "1"]) == 0
    assert [j["id"] for j in listed(capsys)] == ["3", "1", "2"]
    assert main(["queue", "cancel", "1"]) == 0
    jobs = listed(capsys)
    assert [(j["id"], j["status"]) for j in jobs] == [("3", WAITING), ("1", CANCELLED), ("2", WAITING)]
    assert main(["queue", "list"]) == 0
    text = capsys.readouterr().out
    assert "job    1" in text and "cancelled" in text and text.index("job    3") < text.index("job    1")
    data = json.loads(qfile.read_text())
    assert data["schema"] == SCHEMA and data["next_id"] == 4


def test_unknown_job_bad_position_and_bad_override_exit_2(tmp_path, qfile, capsys):
    a = toy(tmp_path / "a")
    assert main(["queue", "add", str(a)]) == 0
    before = qfile.read_bytes()
    capsys.readouterr()
    assert main(["queue", "cancel", "42"]) == 2
    assert "key 'JOB'" in capsys.readouterr().err
    assert main(["queue", "move", "42", "--to", "1"]) == 2
    assert main(["queue", "move", "1", "--to", "5"]) == 2
    assert "between 1 and 1" in capsys.readouterr().err
    assert main(["queue", "add", str(a), "--config-override", "seed"]) == 2
    assert "'--config-override'" in capsys.readouterr().err
    assert main(["queue", "add", str(tmp_path / "nowhere")]) == 2
    assert "nowhere" in capsys.readouterr().err
    assert main(["queue", "add", str(a), "--config-override", "max_train_steps=-3"]) == 2   # refused at add
    assert qfile.read_bytes() == before                 # nothing half-written by any refused command
    assert main(["queue", "cancel", "1"]) == 0
    assert main(["queue", "cancel", "1"]) == 2          # already cancelled
    assert "already cancelled" in capsys.readouterr().err


def test_a_damaged_queue_file_is_set_aside_and_named(tmp_path, qfile, capsys):
    qfile.parent.mkdir(parents=True)
    qfile.write_text('{"schema": 1, "jobs": [ {"id": "1"')
    assert main(["queue", "list"]) == 2
    err = capsys.readouterr().err
    assert str(qfile) in err and "invalid JSON" in err and "moved aside" in err
    aside = list(qfile.parent.glob("queue.corrupt-*.json"))
    assert len(aside) == 1 and aside[0].read_text() == '{"schema": 1, "jobs": [ {"id": "1"'
    assert str(aside[0]) in err
    assert not qfile.exists()
    assert main(["queue", "list"]) == 0                  # the next command starts an empty queue
    assert "empty" in capsys.readouterr().out
    qfile.write_text(json.dumps({"schema": 1, "jobs": [{"id": "1", "status": "waiting"}]}))
    assert main(["queue", "add", str(toy(tmp_path / "a"))]) == 2      # a job lacking its fields
    assert "job 1 lacks" in capsys.readouterr().err
    assert len(list(qfile.parent.glob("queue.corrupt-*.json"))) == 2


def test_a_queue_file_from_a_newer_version_is_left_alone(tmp_path, qfile, capsys):
    qfile.parent.mkdir(parents=True)
    newer = json.dumps({"schema": SCHEMA + 1, "jobs": [], "something": "new"})
    qfile.write_text(newer)
    for argv in (["queue", "list"], ["queue", "add", str(toy(tmp_path / "a"))], ["queue", "run"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert str(qfile) in err and f"queue schema {SCHEMA + 1}" in err and "newer Slider Studio" in err
    assert qfile.read_text() == newer
    assert not list(qfile.parent.glob("queue.corrupt-*"))


def test_the_job_keeps_the_config_it_was_added_with(tmp_path, qfile):
    root = toy(tmp_path / "a", steps=4)
    assert main(["queue", "add", str(root), "--config-override", "lora_rank=2"]) == 0
    cfg = json.loads((root / "config.json").read_text())
    cfg["max_train_steps"] = 999
    (root / "config.json").write_text(json.dumps(cfg))
    (root / "multidatabackend.json").write_text("[]")
    job = read_queue(qfile).jobs[0]
    assert job.config["max_train_steps"] == 4 and job.config["lora_rank"] == 2
    snapshot = write_snapshot(job)
    try:
        assert snapshot.parent == root and snapshot.name.startswith(".")
        project = load_project(snapshot)
        assert project.root == root.resolve() and project.output_dir == root.resolve() / "output"
        assert project.config.max_train_steps == 4 and project.config.lora_rank == 2
        assert [b.id for b in project.buckets] == [b["id"] for b in job.dataloader] and project.buckets
    finally:
        remove_snapshot(job)
    assert sorted(p.name for p in root.iterdir() if p.name.startswith(".")) == []


def test_resume_point_is_the_newest_checkpoint_of_this_job_only(tmp_path):
    out = tmp_path / "output"

    def write(step: int) -> Path:
        return write_checkpoint(out, LoopState(step, step, 0, 100), lambda folder: None)

    old = write(50)                     # an earlier run in the same folder: more steps, older
    os.utime(old / "state.json", (time.time() - 3600, time.time() - 3600))
    job = Job("1", str(tmp_path), str(tmp_path / "config.json"), str(out), {}, [])
    assert resume_point(job) is None    # never started: a fresh start
    job.started = time.time() - 60
    assert resume_point(job) is None    # started, but no checkpoint of its own yet
    write(4)
    newest = write(8)
    assert resume_point(job) == newest


def test_claims_and_the_runner_lock(tmp_path, qfile):
    assert claim_is_stale(None)
    assert claim_is_stale({"pid": dead_pid(), "host": this_claim()["host"]})
    assert not claim_is_stale(this_claim())
    assert not claim_is_stale({"pid": dead_pid(), "host": "another-machine"})   # cannot be checked here
    first, second = RunnerLock(qfile), RunnerLock(qfile)
    first.acquire()
    try:
        with pytest.raises(RunnerBusy, match="already being run by process 77"):
            second.acquire(77)
    finally:
        first.release()
    second.acquire()          # released: the next runner gets it
    second.release()


def test_cancelling_a_job_whose_runner_died_cancels_it_at_once(tmp_path, qfile, capsys):
    assert main(["queue", "add", str(toy(tmp_path / "a"))]) == 0
    with edit_queue(qfile) as state:
        job = state.jobs[0]
        job.status, job.step, job.total, job.claim = RUNNING, 7, 20, {"pid": dead_pid(), "host": this_claim()["host"]}
    assert "interrupted at step 7" in read_queue(qfile).jobs[0].label
    assert main(["queue", "cancel", "1"]) == 0
    job = read_queue(qfile).jobs[0]
    assert job.status == CANCELLED and "step 7" in job.message and job.claim is None


def test_the_runner_leaves_a_job_claimed_by_a_live_process_and_fails_a_deleted_project(tmp_path, qfile):
    """No training starts here: job 1 belongs to a live process, job 2's and 3's projects are gone."""
    from sliderstudio.app.queue_runner import QueueRunner
    from sliderstudio.app.queue_store import FAILED

    for name in ("a", "b", "c"):
        assert main(["queue", "add", str(toy(tmp_path / name))]) == 0
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live = {"pid": holder.pid, "host": this_claim()["host"]}
        with edit_queue(qfile) as state:
            state.jobs[0].status, state.jobs[0].claim, state.jobs[0].step = RUNNING, live, 3
        for name in ("b", "c"):
            for path in sorted((tmp_path / name).rglob("*"), reverse=True):
                path.unlink() if path.is_file() else path.rmdir()
            (tmp_path / name).rmdir()
        said: list[str] = []
        counts = QueueRunner(qfile, said.append).run()
        jobs = read_queue(qfile).jobs
    finally:
        holder.kill()
        holder.wait()
    assert counts[FAILED] == 2
    assert (jobs[0].status, jobs[0].claim, jobs[0].step) == (RUNNING, live, 3)      # not taken, not touched
    assert [j.status for j in jobs[1:]] == [FAILED, FAILED]
    assert jobs[1].message == f"job 2: the project folder {tmp_path / 'b'} no longer exists (deleted or moved while queued)"
    assert said == [f"job 2 (b): failed: {jobs[1].message}", f"job 3 (c): failed: {jobs[2].message}"]
    assert read_queue(qfile).runner is None and not RunnerLock(qfile).held


def test_a_project_another_process_is_training_fails_its_job_saying_so(tmp_path, qfile):
    from sliderstudio.app.queue_runner import QueueRunner
    from sliderstudio.app.queue_store import FAILED

    root = toy(tmp_path / "a")
    assert main(["queue", "add", str(root)]) == 0
    (root / "output").mkdir()
    (root / "output" / "run.json").write_text(json.dumps(     # a live run of this project, not the queue's
        {"pid": os.getpid(), "step": 2, "total": 9, "updated": time.time(), "state": "running"}))
    QueueRunner(qfile).run()
    job = read_queue(qfile).jobs[0]
    assert job.status == FAILED
    assert job.message.startswith("job 1: the project is being trained by another process right now (running — step 2 of 9)")


def test_a_second_runner_is_refused_naming_the_one_that_holds_the_queue(tmp_path, qfile):
    from sliderstudio.app.queue_runner import QueueRunner

    holder = RunnerLock(qfile)
    holder.acquire()
    try:
        with edit_queue(qfile) as state:
            state.runner = {"pid": os.getpid(), "host": this_claim()["host"], "since": time.time()}
        with pytest.raises(RunnerBusy, match=f"already being run by process {os.getpid()} "):
            QueueRunner(qfile).run()
        with edit_queue(qfile) as state:
            state.runner = {"pid": dead_pid(), "host": this_claim()["host"], "since": time.time()}
        with pytest.raises(RunnerBusy, match="already being run by another process"):   # not a dead pid
            QueueRunner(qfile).run()
    finally:
        holder.release()
    assert read_queue(qfile).runner is not None         # the refused runner changed nothing
