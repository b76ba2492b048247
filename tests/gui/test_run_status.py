"""The app tells live runs from dead ones by the worker and the heartbeat, and asks before closing mid-run."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from PySide6.QtWidgets import QMessageBox

from sliderstudio.engine import checkpoints
from sliderstudio.gui.main_window import MainWindow
from tests.gui.fakes import stop_seen_at, use_fake_training_process


def heartbeat(output, pid, step=3, total=10, state="running"):
    output.mkdir(parents=True, exist_ok=True)
    (output / "run.json").write_text(json.dumps({"pid": pid, "state": state, "step": step, "total": total,
                                                 "updated": time.time()}))


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.fixture
def window(qtbot, monkeypatch):
    use_fake_training_process(monkeypatch)
    win = MainWindow()
    qtbot.addWidget(win)
    yield win
    win.shutdown(store=False)


def test_a_dead_run_shows_stopped_at_step_with_resume(window, small_project, qtbot):
    out = small_project.output_dir
    checkpoints.write_checkpoint(out, checkpoints.LoopState(2, 4, 0, 10), lambda f: (f / "a").write_text("x"))
    heartbeat(out, dead_pid(), step=3)
    window.open_project(small_project.root)
    pane = window.training_pane
    qtbot.waitUntil(lambda: pane.status.text() == "Last run: stopped at step 3 — Resume from step 2", timeout=20000)
    assert pane.resume_button.isEnabled() and window.training_vm.resume_available


def test_a_run_live_in_another_process_blocks_a_second_one(window, small_project, qtbot):
    heartbeat(small_project.output_dir, os.getpid(), step=5)
    window.open_project(small_project.root)
    vm = window.training_vm
    qtbot.waitUntil(lambda: vm.run_status.state == "running", timeout=20000)
    assert window.training_pane.status.text() == "Last run: running — step 5 of 10"
    assert not vm.start()
    assert "being trained by another process" in vm.last_error and not vm.running
    heartbeat(small_project.output_dir, os.getpid(), step=10, state="finished")   # the other run ends
    qtbot.waitUntil(lambda: vm.run_status.state == "finished", timeout=20000)
    assert vm.start()
    qtbot.waitUntil(lambda: not vm.running, timeout=20000)


def test_closing_during_training_asks_then_stops_and_keeps_the_checkpoint(window, small_project, qtbot,
                                                                          monkeypatch):
    use_fake_training_process(monkeypatch, step_seconds=0.05)
    window.open_project(small_project.root)
    vm = window.training_vm
    qtbot.waitUntil(lambda: vm.run_status.state == "none" and not window.tasks.busy, timeout=20000)
    assert vm.start()
    qtbot.waitUntil(lambda: vm.last_progress is not None and vm.last_progress.step >= 3, timeout=20000)
    answers = []

    def ask(*args, **kwargs):
        answers.append(args[2])
        return QMessageBox.StandardButton.No if len(answers) == 1 else QMessageBox.StandardButton.Yes

    monkeypatch.setattr(QMessageBox, "question", ask)
    assert not window.close()                        # "No": the window stays and training goes on
    assert vm.running and "Training is running (step" in answers[0]
    step_before = vm.last_progress.step
    qtbot.waitUntil(lambda: vm.last_progress.step > step_before, timeout=20000)
    assert window.close()                            # "Yes": stop after the current step, checkpoint kept
    latest = checkpoints.latest_checkpoint(small_project.output_dir)
    assert latest is not None                        # close() waited for the process to write it
    qtbot.waitUntil(lambda: not vm.running, timeout=5000)
    assert latest.name == f"checkpoint-{stop_seen_at(window.training_pane.log.toPlainText()):06d}"
