"""The Queue pane: add the open project (unsaved edits included), reorder, cancel, follow jobs added by
the CLI, report a damaged queue file, and show a real run's progress (Run starts the same runner as
`sliderstudio queue run`; Stop leaves the job waiting with its checkpoint)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from sliderstudio.config.config import TrainConfig
from sliderstudio.app.queue_store import add_job, queue_file, read_queue
from sliderstudio.gui.main_window import MainWindow
from sliderstudio.gui.queue_pane import QueuePane
from sliderstudio.gui.viewmodels.project import ProjectViewModel
from sliderstudio.gui.viewmodels.queue import QueueViewModel
from sliderstudio.gui.workers.tasks import TaskRunner
from sliderstudio.toy.demo_project import write_demo_project

TIMEOUT_MS = 600_000      # a real run on a 2-core machine shared with other test runs


def toy(root: Path, steps: int) -> Path:
    write_demo_project(root, pairs=2, max_train_steps=steps)
    cfg = json.loads((root / "config.json").read_text())
    cfg.update(validation_steps=0)
    if "slider_calibration" in TrainConfig.model_fields:
        cfg["slider_calibration"] = False
    (root / "config.json").write_text(json.dumps(cfg))
    return root


@pytest.fixture
def pane(qtbot):
    tasks, pvm = TaskRunner(), ProjectViewModel()
    vm = QueueViewModel(pvm, tasks)
    widget = QueuePane(vm)
    qtbot.addWidget(widget)
    vm.set_active(True)
    yield widget
    vm.set_active(False)
    if vm.runner_pid is not None:
        vm.stop()
    vm.wait_runner()
    tasks.wait()
    pvm.flush()


def rows(pane: QueuePane) -> list[tuple[str, str]]:
    return [(pane.table.item(r, 1).text(), pane.table.item(r, 3).text()) for r in range(pane.table.rowCount())]


def test_add_reorder_cancel_and_jobs_from_the_cli(qtbot, pane, tmp_path):
    pvm, path = pane.vm._pvm, pane.vm.path
    assert path == queue_file() and str(path).startswith(str(tmp_path))      # the test's own data folder
    pane.add_button.click()                             # nothing open: refused, and said why
    assert "open a project first" in pane.status.text()
    pvm.open(toy(tmp_path / "a", 4))
    pvm.update_config(max_train_steps=7)                # unsaved: Add saves it first
    pane.add_button.click()
    qtbot.waitUntil(lambda: rows(pane) == [("1", "waiting")], timeout=30000)
    assert read_queue(path).jobs[0].config["max_train_steps"] == 7
    pvm.open(toy(tmp_path / "b", 4))
    pane.add_button.click()
    qtbot.waitUntil(lambda: len(rows(pane)) == 2, timeout=30000)
    add_job(path, tmp_path / "a")                       # the CLI adds one: the pane follows the file
    qtbot.waitUntil(lambda: [r[0] for r in rows(pane)] == ["1", "2", "3"], timeout=30000)
    assert [pane.table.item(r, 2).text() for r in range(3)] == ["a", "b", "a"]

    pane.select_job("3")
    assert pane.up_button.isEnabled() and pane.cancel_button.isEnabled()
    pane.up_button.click()
    qtbot.waitUntil(lambda: [r[0] for r in rows(pane)] == ["1", "3", "2"], timeout=30000)
    assert pane.selected_job() == "3"                   # the selection follows the job
    pane.up_button.click()
    qtbot.waitUntil(lambda: [j.id for j in read_queue(path).jobs] == ["3", "1", "2"], timeout=30000)
    pane.select_job("1")
    pane.down_button.click()
    qtbot.waitUntil(lambda: [r[0] for r in rows(pane)] == ["3", "2", "1"], timeout=30000)
    pane.cancel_button.click()
    qtbot.waitUntil(lambda: rows(pane)[2] == ("1", "cancelled — cancelled before it ran"), timeout=30000)
    assert not pane.cancel_button.isEnabled()           # an ended job: nothing to cancel
    assert pane.run_button.isEnabled() and not pane.stop_button.isEnabled()


def test_a_damaged_queue_file_is_named_in_the_pane(qtbot, pane):
    path = pane.vm.path
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{ not json")
    pane.vm.refresh()
    qtbot.waitUntil(lambda: "invalid JSON" in pane.status.text(), timeout=30000)
    assert str(path) in pane.status.text() and "moved aside" in pane.status.text()
    assert list(path.parent.glob("queue.corrupt-*.json"))


def test_run_shows_progress_and_stop_keeps_the_job_waiting(qtbot, pane, tmp_path):
    pane.vm._pvm.open(toy(tmp_path / "long", 2000))
    pane.add_button.click()
    qtbot.waitUntil(lambda: rows(pane) == [("1", "waiting")], timeout=30000)
    pane.run_button.click()
    qtbot.waitUntil(lambda: not pane.run_button.isEnabled() and pane.stop_button.isEnabled(), timeout=5000)
    bar = lambda: pane.table.cellWidget(0, 4)                                         # noqa: E731
    qtbot.waitUntil(lambda: bar().value() >= 3, timeout=TIMEOUT_MS)
    assert rows(pane)[0][1].startswith("running — step ") and rows(pane)[0][1].endswith(" of 2000")
    assert bar().maximum() == 2000 and bar().format() == f"{bar().value()} / 2000"
    assert "Running in process" in pane.status.text()
    pane.stop_button.click()
    qtbot.waitUntil(lambda: pane.vm.runner_pid is None, timeout=TIMEOUT_MS)
    qtbot.waitUntil(lambda: rows(pane)[0][1].startswith("waiting — interrupted at step"), timeout=30000)
    job = read_queue(pane.vm.path).jobs[0]
    assert 3 <= job.step < 2000 and job.claim is None
    assert (tmp_path / "long" / "output" / "checkpoints" / f"checkpoint-{job.step:06d}").is_dir()
    assert pane.run_button.isEnabled() and not pane.stop_button.isEnabled()


def test_the_window_has_the_queue_as_a_dock_under_view(qtbot, tmp_path):
    window = MainWindow()
    qtbot.addWidget(window)
    window.show()
    action = next(a for a in window.menuBar().actions() if a.text() == "&View").menu().actions()[-1]
    assert action.text() == "Queue" and window.queue_dock.isHidden()
    assert not window.queue_vm._timer.isActive()         # hidden: it does not follow the file
    action.trigger()
    qtbot.waitUntil(lambda: window.queue_dock.isVisible() and window.queue_vm._timer.isActive(), timeout=5000)
    window.shutdown(store=False)
