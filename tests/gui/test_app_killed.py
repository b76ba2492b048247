"""Kill the app mid-run (SIGTERM, then SIGKILL): its training process notices within seconds, keeps a
checkpoint at the last step it finished and ends; the next start of the app offers Resume, and
Resume continues from that step.

The app is the real one (MainWindow, the QThread worker, `python -m sliderstudio train --events` on
the bundled toy model) in its own process, driven by the small script APP below, so that it can be
killed like a user's app. The last start is an in-process window, checked with pytest-qt.
"""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from PySide6.QtWidgets import QToolButton

from sliderstudio.engine.checkpoints import latest_checkpoint
from sliderstudio.kernel.process_guard import PROCESS_LOG
from sliderstudio.gui.main_window import MainWindow
from tests.process_waits import ended, metric_steps, wait_for

ROOT = Path(__file__).resolve().parents[2]
# "Within a few seconds": from the app's death to the checkpoint on disk (the step in flight, the
# checkpoint write). About 1 s on a quiet 2-core machine, 2–6 s with ten other processes busy; a
# process that never noticed would train on for minutes.
NOTICE_S = 10.0

APP = r'''
import sys
from PySide6.QtCore import QTimer
from sliderstudio.gui.app import make_application

app = make_application()
from sliderstudio.gui.main_window import MainWindow

window = MainWindow()
window.training_vm.logAppended.connect(lambda level, message: print(message, flush=True))
window.training_vm.runFailed.connect(lambda message, details: app.exit(3))   # fail the test fast
window.project_vm.open(sys.argv[1])
window.show()
pane = window.training_pane


def go():
    """"train": click Train. "resume": wait for the Resume offer, then click it, as a user would."""
    if sys.argv[2] == "train":
        pane.train_button.click()
    elif not pane.resume_offer.isHidden():
        print("offer:", pane.resume_offer_label.text(), "|", pane.resume_offer_button.text(), flush=True)
        pane.resume_offer_button.click()
    else:
        QTimer.singleShot(100, go)


QTimer.singleShot(0, go)
sys.exit(app.exec())
'''


def toy_project(root: Path) -> Path:
    from sliderstudio.toy.demo_project import write_demo_project

    write_demo_project(root, pairs=2, max_train_steps=400)
    cfg = json.loads((root / "config.json").read_text())
    cfg.update(checkpointing_steps=100, validation_steps=0)
    (root / "config.json").write_text(json.dumps(cfg))
    return root


def start_app(root: Path, mode: str, log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", APP, str(root), mode], cwd=ROOT, stdout=log.open("w"),
                            stderr=subprocess.STDOUT, text=True)






def training_pid(out: Path, not_pid: int = 0) -> int:
    """The training process's pid, from its heartbeat (written at its first step)."""
    try:
        beat = json.loads((out / "run.json").read_text())
    except (FileNotFoundError, ValueError):
        return 0
    return beat["pid"] if beat["state"] == "running" and beat["pid"] != not_pid else 0




def kill_app_mid_run(app: subprocess.Popen, log: Path, out: Path, how: signal.Signals, at_step: int,
                     not_pid: int = 0) -> tuple[int, float, float]:
    """Wait for `at_step`, kill the app `how`; return the training pid and the seconds from the
    kill to the checkpoint on disk and to the training process's end."""
    wait_for(lambda: len(metric_steps(out)) >= at_step or app.poll() is not None, 300, f"step {at_step}")
    assert app.poll() is None, "the app ended before it was killed:\n" + log.read_text()[-3000:]
    pid = wait_for(lambda: training_pid(out, not_pid), 30, "the training process's heartbeat")
    killed = time.time()
    app.send_signal(how)
    assert app.wait(timeout=30) == -how
    wait_for(lambda: ended(pid), 60, f"training process {pid} to end")
    gone = time.time() - killed
    checkpoint = latest_checkpoint(out)
    kept = (checkpoint / "state.json").stat().st_mtime - killed if checkpoint else float("inf")
    return pid, kept, gone


def assert_kept_last_step(out: Path) -> int:
    steps = metric_steps(out)
    assert steps == list(range(1, len(steps) + 1))            # contiguous: nothing lost, nothing repeated
    checkpoint = latest_checkpoint(out)
    assert checkpoint is not None and checkpoint.name == f"checkpoint-{steps[-1]:06d}"
    assert json.loads((checkpoint / "state.json").read_text())["step"] == steps[-1]
    beat = json.loads((out / "run.json").read_text())
    assert beat["state"] == "ended" and beat["step"] == steps[-1]
    return steps[-1]


def test_killing_the_app_mid_run_keeps_the_last_step_and_the_next_start_resumes(tmp_path, qtbot):
    root = toy_project(tmp_path / "proj")
    out = root / "output"
    # 1. SIGTERM to the app while it trains
    app = start_app(root, "train", tmp_path / "app1.log")
    try:
        first_pid, kept_term, gone_term = kill_app_mid_run(app, tmp_path / "app1.log", out, signal.SIGTERM,
                                                           at_step=4)
    finally:
        app.kill()
    stopped_at = assert_kept_last_step(out)
    assert 0 < kept_term < NOTICE_S and stopped_at >= 4
    reasons = [line.split("checkpoint: ")[1] for line in (out / PROCESS_LOG).read_text().splitlines()
               if "stopping after the step in flight" in line]
    assert len(reasons) == 1 and ("the app" in reasons[0]), reasons

    # 2. the next start of the app offers Resume; the user takes it; then the app is killed with SIGKILL
    app = start_app(root, "resume", tmp_path / "app2.log")
    try:
        _, kept_kill, gone_kill = kill_app_mid_run(app, tmp_path / "app2.log", out, signal.SIGKILL,
                                                   at_step=stopped_at + 3, not_pid=first_pid)
    finally:
        app.kill()
    offer = [line for line in (tmp_path / "app2.log").read_text().splitlines() if line.startswith("offer:")]
    assert offer == [f"offer: The last run stopped at step {stopped_at} of 400 before it finished. Resume "
                     f"continues from its checkpoint at step {stopped_at}. | ↻ Resume from step {stopped_at}"]
    killed_at = assert_kept_last_step(out)
    assert 0 < kept_kill < NOTICE_S and killed_at >= stopped_at + 3
    reasons += [line.split("checkpoint: ")[1] for line in (out / PROCESS_LOG).read_text().splitlines()
                if "stopping after the step in flight" in line][1:]
    assert len(reasons) == 2 and "the app" in reasons[1], reasons

    # 3. a third start (in this process): the offer is there, and Resume continues from killed_at
    window = MainWindow()
    qtbot.addWidget(window)
    try:
        assert window.open_project(root)
        pane, vm = window.training_pane, window.training_vm
        qtbot.waitUntil(lambda: not pane.resume_offer.isHidden(), timeout=30000)
        assert f"stopped at step {killed_at} of 400" in pane.resume_offer_label.text()
        assert pane.resume_offer_button.text() == f"↻ Resume from step {killed_at}"
        steps = []
        vm.progressChanged.connect(lambda p: steps.append(p.step))
        pane.resume_offer_button.click()
        assert pane.resume_offer.isHidden()                  # the offer is taken
        qtbot.waitUntil(lambda: len(steps) >= 2, timeout=300000)
        vm.stop()
        assert vm.wait(120000)
    finally:
        window.shutdown(store=False)
    assert steps[:2] == [killed_at + 1, killed_at + 2]
    print(f"\nSIGTERM of the app: checkpoint at step {stopped_at} after {kept_term:.2f} s, process gone after "
          f"{gone_term:.2f} s; SIGKILL: checkpoint at step {killed_at} after {kept_kill:.2f} s, gone after "
          f"{gone_kill:.2f} s; noticed by: {reasons}")


def write_run(out: Path, state: str, step: int, checkpoint_step: int | None) -> None:
    """A run's files as a killed (or finished) run leaves them: run.json of a dead process, a checkpoint."""
    from sliderstudio.engine import checkpoints

    if checkpoint_step is not None:
        checkpoints.write_checkpoint(out, checkpoints.LoopState(checkpoint_step, checkpoint_step, 0, 40),
                                     lambda folder: (folder / "a").write_text("x"))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (out / "run.json").write_text(json.dumps({"pid": dead.pid, "state": state, "step": step, "total": 40,
                                              "updated": time.time()}))


def test_the_resume_offer_shows_only_for_an_unfinished_run_with_a_checkpoint_and_can_be_hidden(
        small_project, qtbot):
    out = small_project.output_dir
    window = MainWindow()
    qtbot.addWidget(window)
    pane, vm = window.training_pane, window.training_vm
    try:
        write_run(out, "ended", 13, 13)
        assert window.open_project(small_project.root)
        # the first status check imports the engine's checkpoint module (torch): slow on a busy machine
        qtbot.waitUntil(lambda: not pane.resume_offer.isHidden(), timeout=120000)
        assert pane.resume_offer_label.text() == ("The last run stopped at step 13 of 40 before it finished. "
                                                  "Resume continues from its checkpoint at step 13.")
        assert pane.resume_offer_button.text() == "↻ Resume from step 13"
        pane.resume_offer.findChild(QToolButton).click()          # ✕: hidden, and stays hidden
        polls = []
        vm.runStatusChanged.connect(polls.append)
        qtbot.waitUntil(lambda: len(polls) >= 1, timeout=20000)   # the next status poll (every 3 s)
        assert pane.resume_offer.isHidden() and pane.resume_button.isEnabled()
        write_run(out, "finished", 40, None)                       # the run finished: nothing to offer
        qtbot.waitUntil(lambda: vm.run_status.state == "finished", timeout=20000)
        assert pane.resume_offer.isHidden() and vm.resume_offer is None
        (out / "run.json").write_text("{}")                        # a bare checkpoint, no heartbeat
        for folder in (out / "checkpoints").iterdir():
            folder.rename(folder.with_name("checkpoint-000021"))
        qtbot.waitUntil(lambda: vm.run_status.resumable_step == 21, timeout=20000)
        assert not pane.resume_offer.isHidden() and "checkpoint at step 21" in pane.resume_offer_label.text()
    finally:
        window.shutdown(store=False)
