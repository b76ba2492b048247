"""The device panel's device choice (issue #17 item 1): what this machine has (faked: the detection function is
replaced, not Qt), the choice saved as the project's `devices` (and num_processes, one per GPU), the launch it
makes, a choice this machine cannot run named in the panel, and the choice fixed while a run is live."""
from __future__ import annotations

import json

import pytest

from sliderstudio.config import device_choice
from sliderstudio.config.device_choice import Gpu
from sliderstudio.gui.device_panel import DevicePanel
from sliderstudio.gui.viewmodels.device import DeviceViewModel
from sliderstudio.gui.viewmodels.project import ProjectViewModel
from sliderstudio.gui.viewmodels.training import TrainingViewModel
from sliderstudio.gui.workers.tasks import TaskRunner
from tests.gui.fakes import use_fake_training_process

GPUS = [Gpu(0, "NVIDIA RTX 4090", 24 * 2**30), Gpu(1, "NVIDIA RTX 4090", 24 * 2**30)]


@pytest.fixture
def parts(qtbot, small_project, monkeypatch):
    monkeypatch.setattr(device_choice, "detect_gpus", lambda: list(GPUS))
    use_fake_training_process(monkeypatch, kind="CommandingTrainer", total=200, step_seconds=0.02)
    tasks, pvm = TaskRunner(), ProjectViewModel()
    training = TrainingViewModel(pvm, tasks)
    vm = DeviceViewModel(training, pvm, tasks)
    widget = DevicePanel(vm)
    qtbot.addWidget(widget)
    pvm.set_project(small_project)
    qtbot.waitUntil(lambda: not tasks.busy and vm.gpus is not None, timeout=60000)
    yield widget, vm, pvm, training
    training.stop()
    training.wait()
    tasks.wait()


def items(widget: DevicePanel) -> list[str]:
    return [widget.devices.itemText(i) for i in range(widget.devices.count())]


def choose(widget: DevicePanel, text: str) -> None:
    """What a click on the entry does (QComboBox.activated carries the index)."""
    index = items(widget).index(text)
    widget.devices.setCurrentIndex(index)
    widget.devices.activated.emit(index)


def test_the_panel_lists_this_machines_devices(parts):
    widget, *_ = parts
    assert items(widget) == ["Automatic (a GPU when there is one)", "CPU", "GPU 0 · NVIDIA RTX 4090 · 24 GiB",
                             "GPU 1 · NVIDIA RTX 4090 · 24 GiB", "All 2 GPUs · 48 GiB"]
    assert widget.devices.currentIndex() == 0 and widget.devices.isEnabled()


def test_all_gpus_saves_the_choice_and_launches_one_process_on_each(parts):
    widget, vm, pvm, _ = parts
    choose(widget, "All 2 GPUs · 48 GiB")
    assert (pvm.config.devices, pvm.config.num_processes) == ("all", 2) and pvm.dirty
    assert widget.processes.value() == 2 and not widget.processes.isEnabled()   # one process per GPU
    pvm.save().result(timeout=30)
    saved = json.loads(pvm.project.config_path.read_text())
    assert (saved["devices"], saved["num_processes"]) == ("all", 2)
    plan = vm.launch_plan()
    assert (plan.kind, plan.processes, plan.gpu_ids) == ("cuda", 2, (0, 1))
    assert plan.environment() == {"CUDA_VISIBLE_DEVICES": "0,1"}
    assert plan.launcher_arguments() == ["--gpu_ids", "0,1"]


def test_one_gpu_trains_in_one_process_on_that_gpu(parts):
    widget, vm, pvm, _ = parts
    choose(widget, "GPU 1 · NVIDIA RTX 4090 · 24 GiB")
    assert (pvm.config.devices, pvm.config.num_processes) == ("1", 1)
    plan = vm.launch_plan()
    assert (plan.processes, plan.device, plan.environment()) == (1, "cuda:1", {})
    choose(widget, "CPU")                             # the CPU: the process count is the user's again
    assert pvm.config.devices == "cpu" and widget.processes.isEnabled()
    widget.processes.setValue(2)
    assert vm.launch_plan() == device_choice.LaunchPlan("cpu", 2, None, "cpu")


def test_a_choice_this_machine_cannot_run_is_named(parts):
    widget, vm, pvm, _ = parts
    assert pvm.update_config(devices="0,3") is None   # e.g. a project made on a bigger machine
    assert items(widget)[-1] == "0,3 (not on this machine)" and widget.devices.currentIndex() == 5
    assert "devices: GPU 3 does not exist: this machine has 2 CUDA devices (0, 1)" in widget.note.text()
    message = vm.set_devices("gpu0")                  # not a devices value: nothing changes
    assert message and message.startswith("devices:") and pvm.config.devices == "0,3"


def test_the_choice_is_fixed_while_a_run_is_live(parts, qtbot):
    widget, vm, pvm, training = parts
    training.start()
    qtbot.waitUntil(lambda: training.running and not widget.devices.isEnabled(), timeout=15000)
    assert vm.set_devices("all") == "the devices are fixed while a run is live"
    assert pvm.config.devices is None
    training.stop()
    qtbot.waitUntil(lambda: not training.running, timeout=30000)
    qtbot.waitUntil(widget.devices.isEnabled, timeout=5000)
