"""The device panel's process choice (issue #17 item 1): the project's num_processes, saved with it, read by
the training process (which starts that many processes through accelerate), fixed while a run is live."""
from __future__ import annotations

import json
import os

import pytest

from sliderstudio.gui.device_panel import DevicePanel
from sliderstudio.gui.viewmodels.device import DeviceViewModel
from sliderstudio.gui.viewmodels.project import ProjectViewModel
from sliderstudio.gui.viewmodels.training import TrainingViewModel
from sliderstudio.gui.workers.tasks import TaskRunner
from tests.gui.fakes import use_fake_training_process


@pytest.fixture
def parts(qtbot, small_project, monkeypatch):
    use_fake_training_process(monkeypatch, kind="CommandingTrainer", total=200, step_seconds=0.02)
    tasks, pvm = TaskRunner(), ProjectViewModel()
    training = TrainingViewModel(pvm, tasks)
    vm = DeviceViewModel(training, pvm, tasks)
    widget = DevicePanel(vm)
    qtbot.addWidget(widget)
    pvm.set_project(small_project)
    qtbot.waitUntil(lambda: not tasks.busy, timeout=60000)
    yield widget, vm, pvm, training
    training.stop()
    training.wait()
    tasks.wait()


def test_the_choice_shows_and_sets_the_projects_num_processes(parts):
    widget, vm, pvm, _ = parts
    box = widget.processes
    assert box.value() == 1 and box.isEnabled() and box.maximum() == os.cpu_count()
    box.setValue(2)
    assert pvm.config.num_processes == 2 and pvm.dirty
    pvm.save().result(timeout=30)
    assert json.loads(pvm.project.config_path.read_text())["num_processes"] == 2
    pvm.update_config(num_processes=1)          # a change from elsewhere (another pane, an undo) shows
    assert box.value() == 1


def test_a_bad_count_changes_nothing_and_says_why(parts):
    _, vm, pvm, _ = parts
    message = vm.set_processes(0)
    assert message and "num_processes" in message
    assert pvm.config.num_processes == 1


def test_the_count_is_fixed_while_a_run_is_live(parts, qtbot):
    widget, vm, pvm, training = parts
    training.start()
    qtbot.waitUntil(lambda: training.running and not widget.processes.isEnabled(), timeout=15000)
    assert vm.set_processes(2) == "the count is fixed while a run is live"
    assert pvm.config.num_processes == 1
    training.stop()
    qtbot.waitUntil(lambda: not training.running, timeout=30000)
    qtbot.waitUntil(widget.processes.isEnabled, timeout=5000)
