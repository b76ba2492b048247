"""The app's architecture picker takes the family the chosen model's files name (model_index.json)."""
from __future__ import annotations

from sliderstudio.gui.viewmodels.architecture import ArchitectureViewModel
from sliderstudio.gui.viewmodels.project import ProjectViewModel
from sliderstudio.gui.workers.tasks import TaskRunner


def test_choosing_an_sdxl_folder_switches_the_family(qtbot, small_project, tiny_models):
    tasks = TaskRunner()
    pvm = ProjectViewModel()
    small_project.config = small_project.config.model_copy(
        update={"pretrained_model_name_or_path": str(tiny_models["sd1x"]), "model_family": "sd1x"})
    vm = ArchitectureViewModel(pvm, tasks, debounce_ms=20)
    notices: list[str] = []
    vm.notice.connect(notices.append)
    pvm.set_project(small_project)
    tasks.wait()
    assert pvm.config.model_family == "sd1x" and not notices  # the files agree: nothing changes
    with qtbot.waitSignal(vm.familyDetected, timeout=30000) as signal:
        assert pvm.update_config(pretrained_model_name_or_path=str(tiny_models["sdxl"])) is None
    assert signal.args == ["sdxl"] and pvm.config.model_family == "sdxl"
    assert any("Model family set to 'sdxl'" in n and "model_index.json" in n for n in notices)
    tasks.wait()


def test_a_model_that_cannot_tell_keeps_the_users_family(qtbot, small_project, tmp_path):
    tasks = TaskRunner()
    pvm = ProjectViewModel()
    small_project.config = small_project.config.model_copy(update={"model_family": "flux"})
    vm = ArchitectureViewModel(pvm, tasks, debounce_ms=20)
    pvm.set_project(small_project)
    pvm.update_config(pretrained_model_name_or_path=str(tmp_path / "not-there"))
    tasks.wait()
    qtbot.wait(50)
    assert pvm.config.model_family == "flux"
