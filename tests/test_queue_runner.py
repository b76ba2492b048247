"""The training queue with real training: `sliderstudio queue …` as a user types it, on the bundled toy
model. A round trip (add, move, cancel, a project deleted while queued, run, list); SIGKILL of the
runner mid-job, then `queue run` resumes that job from its checkpoint with no step lost and runs the
rest; two runners started together never run a job twice.
"""
from __future__ import annotations

import pytest

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from sliderstudio.engine.checkpoints import latest_checkpoint
from sliderstudio.config.config import TrainConfig
from sliderstudio.app.queue_lock import claim_is_stale
from sliderstudio.app.queue_store import CANCELLED, FAILED, FINISHED, RUNNING, read_queue
from sliderstudio.toy.demo_project import write_demo_project
from tests.process_waits import ended, metric_steps, wait_for

ROOT = Path(__file__).resolve().parents[1]
ADAPTER = "pytorch_lora_weights.safetensors"
# Each toy run takes ~7 s on a quiet 2-core machine, many minutes when a dozen other processes share it.
TIMEOUT = 600


def toy(root: Path, steps: int, **changes) -> Path:
    write_demo_project(root, pairs=2, max_train_steps=steps)
    cfg = json.loads((root / "config.json").read_text())
    cfg.update(validation_steps=0, **changes)
    if "slider_calibration" in TrainConfig.model_fields:   # its render sweep at each save costs minutes here
        cfg["slider_calibration"] = False
    (root / "config.json").write_text(json.dumps(cfg))
    return root


def environment(data: Path) -> dict[str, str]:
    return {**os.environ, "SLIDERSTUDIO_DATA_DIR": str(data), "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": str(ROOT)}


def queue(data: Path, *args: str, timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sliderstudio", "queue", *args], cwd=ROOT, capture_output=True,
                          text=True, env=environment(data), timeout=timeout)


def start_runner(data: Path, log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "sliderstudio", "queue", "run"], cwd=ROOT,
                            stdout=log.open("w"), stderr=subprocess.STDOUT, text=True, env=environment(data))








def test_cli_round_trip_with_a_project_deleted_while_queued(tmp_path):
    data = tmp_path / "data"
    a, gone, b = toy(tmp_path / "a", 3), toy(tmp_path / "gone", 3), toy(tmp_path / "b", 3)
    for project in (a, gone, b):
        assert queue(data, "add", str(project)).returncode == 0
    assert queue(data, "add", str(a), "--config-override", "seed=4").returncode == 0
    assert queue(data, "move", "3", "--to", "1").returncode == 0
    assert queue(data, "cancel", "4").returncode == 0
    for path in sorted(gone.rglob("*"), reverse=True):    # deleted while queued
        path.unlink() if path.is_file() else path.rmdir()
    gone.rmdir()
    run = queue(data, "run")
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.index("job 3 (b): starting") < run.stdout.index("job 1 (a): starting")
    assert "queue done: 2 finished, 1 failed" in run.stdout
    jobs = json.loads(queue(data, "list", "--json").stdout)
    assert [(j["id"], j["status"]) for j in jobs] == [("3", FINISHED), ("1", FINISHED), ("2", FAILED),
                                                      ("4", CANCELLED)]
    assert jobs[0]["adapter"] == str(b / "output" / ADAPTER) and Path(jobs[0]["adapter"]).is_file()
    assert jobs[1]["adapter"] == str(a / "output" / ADAPTER) and (jobs[1]["step"], jobs[1]["total"]) == (3, 3)
    assert jobs[2]["message"] == f"job 2: the project folder {gone} no longer exists (deleted or moved while queued)"
    assert jobs[2]["message"] in run.stdout
    assert metric_steps(a / "output") == [1, 2, 3]
    assert not [p for p in (*a.iterdir(), *b.iterdir()) if p.name.startswith(".sliderstudio-queue")]
    listing = queue(data, "list").stdout
    assert "finished — " + str(b / "output" / ADAPTER) in listing and "failed — job 2" in listing


@pytest.mark.slow
def test_runner_killed_mid_job_then_queue_run_resumes_it_from_its_checkpoint(tmp_path):
    data, total = tmp_path / "data", 40
    big, small = toy(tmp_path / "big", total, checkpointing_steps=0), toy(tmp_path / "small", 2)
    assert queue(data, "add", str(big)).returncode == 0
    assert queue(data, "add", str(small)).returncode == 0
    qfile = data / "queue" / "queue.json"
    runner = start_runner(data, tmp_path / "runner1.log")
    try:
        # metrics.jsonl gets every step (the queue file at most twice a second): the kill lands mid-run
        wait_for(lambda: len(metric_steps(big / "output")) >= 5 or runner.poll() is not None, TIMEOUT, "step 5")
        assert runner.poll() is None, (tmp_path / "runner1.log").read_text()
        child = read_queue(qfile).jobs[0].child_pid
        killed = time.monotonic()
        runner.send_signal(signal.SIGKILL)
        assert runner.wait(timeout=30) == -signal.SIGKILL
    finally:
        if runner.poll() is None:
            runner.kill()
    wait_for(lambda: ended(child), TIMEOUT, f"the orphaned training process {child} to end")
    kept_after = time.monotonic() - killed
    steps = metric_steps(big / "output")
    kept = latest_checkpoint(big / "output")
    assert steps == list(range(1, len(steps) + 1)) and len(steps) < total
    assert kept is not None and kept.name == f"checkpoint-{steps[-1]:06d}"     # no step lost
    job = read_queue(qfile).jobs[0]
    assert job.status == RUNNING and claim_is_stale(job.claim) and "interrupted at step" in job.label

    started = time.monotonic()
    second = start_runner(data, tmp_path / "runner2.log")
    try:
        wait_for(lambda: len(metric_steps(big / "output")) > len(steps) or second.poll() is not None, TIMEOUT,
                 "the resumed job's next step")
        to_resume = time.monotonic() - started
        assert second.wait(timeout=TIMEOUT) == 0
    finally:
        if second.poll() is None:
            second.kill()
    log = (tmp_path / "runner2.log").read_text()
    assert f"job 1 (big): resuming from {kept.name}" in log, log
    assert metric_steps(big / "output") == list(range(1, total + 1))          # nothing repeated, nothing lost
    jobs = read_queue(qfile).jobs
    assert [(j.status, j.step) for j in jobs] == [(FINISHED, total), (FINISHED, 2)]
    assert Path(jobs[1].adapter).is_file()
    print(f"\nqueue kill -9: stopped at step {steps[-1]} of {total}, checkpoint kept {kept_after:.1f} s after "
          f"the kill; queue run trained step {steps[-1] + 1} {to_resume:.1f} s after it started; 0 steps lost")


def test_two_runners_never_run_the_same_job_twice(tmp_path):
    data = tmp_path / "data"
    for name in ("one", "two"):
        assert queue(data, "add", str(toy(tmp_path / name, 2))).returncode == 0
    logs = [tmp_path / "runner-a.log", tmp_path / "runner-b.log"]
    runners = [start_runner(data, log) for log in logs]
    try:
        assert [r.wait(timeout=TIMEOUT) for r in runners] == [0, 0]
    finally:
        for r in runners:
            if r.poll() is None:
                r.kill()
    texts = [log.read_text() for log in logs]
    both = "".join(texts)
    assert both.count("job 1 (one): starting") == 1 and both.count("job 2 (two): starting") == 1
    busy = [t for t in texts if "the queue is already being run by process" in t]
    assert len(busy) == 1, texts              # the other one, named by its pid
    assert not [t for t in texts if "starting" not in t and t not in busy]
    jobs = read_queue(data / "queue" / "queue.json").jobs
    assert [j.status for j in jobs] == [FINISHED, FINISHED]
    assert all(metric_steps(tmp_path / name / "output") == [1, 2] for name in ("one", "two"))
