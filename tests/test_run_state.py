"""A run is live only while its process beats; a dead one reads "stopped at step N — Resume"."""
import json
import os
import subprocess
import sys
import time

from conftest import make_project
from sliderstudio.engine.project import load_project
from sliderstudio.engine.run_state import run_status
from sliderstudio.engine.trainer import Trainer


def beat(out, **fields):
    out.mkdir(parents=True, exist_ok=True)
    (out / "run.json").write_text(json.dumps({"pid": os.getpid(), "state": "running", "step": 5, "total": 10,
                                              "updated": time.time(), **fields}))


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_live_dead_stale_and_absent(tmp_path):
    out = tmp_path / "output"
    assert run_status(out).state == "none"
    beat(out)
    assert run_status(out).state == "running" and run_status(out).label == "running — step 5 of 10"
    beat(out, pid=dead_pid())
    status = run_status(out)
    assert status.state == "stopped" and status.label == "stopped at step 5 — no checkpoint yet"
    beat(out, updated=time.time() - 3600)  # our own pid, but silent for an hour: a hung or stale run
    assert run_status(out).state == "stopped"


def test_finished_and_stopped_runs(tmp_path, tiny_models):
    from sliderstudio.kernel.events import Command, Mailbox, Progress

    root = make_project(tmp_path, tiny_models["sd1x"], config={"max_train_steps": 4, "checkpointing_steps": 2})
    mailbox = Mailbox()

    def sink(e):
        if isinstance(e, Progress) and e.step == 3:
            mailbox.send(Command.STOP)

    Trainer(load_project(root), sink, mailbox).run()
    status = run_status(root / "output")
    assert (status.state, status.step, status.resumable_step) == ("stopped", 3, 3)
    assert status.label == "stopped at step 3 — Resume from step 3"
    Trainer(load_project(root, {"resume_from_checkpoint": "latest"})).run()
    status = run_status(root / "output")
    assert (status.state, status.step, status.total) == ("finished", 4, 4)
