"""The memory line next to Train: the planner's text for the current config and card, computed off the UI
thread, and the question Train asks before a run that won't fit (apply the fitting options / anyway / cancel)."""
from __future__ import annotations

import pytest

from sliderstudio.config.config import TrainConfig
from sliderstudio.gui.memory_line import ANYWAY, APPLY, CANCEL, MemoryLine
from sliderstudio.gui.settings import AppSettings
from sliderstudio.gui.training_pane import TrainingPane
from sliderstudio.gui.viewmodels.memory import TOY_LINE, MemoryViewModel
from sliderstudio.gui.viewmodels.project import ProjectViewModel
from sliderstudio.gui.viewmodels.training import TrainingViewModel
from sliderstudio.gui.workers.tasks import TaskRunner

FLUX = {"model_family": "flux", "pretrained_model_name_or_path": "black-forest-labs/FLUX.1-dev",
        "resolution": 1024, "mixed_precision": "bf16", "lora_rank": 16}


@pytest.fixture
def setup(qtbot, small_project):
    tasks = TaskRunner()
    pvm = ProjectViewModel()
    memory = MemoryViewModel(pvm, tasks, card_gb=48)
    training = TrainingViewModel(pvm, tasks)
    line = MemoryLine(memory, pvm)
    pane = TrainingPane(training, pvm, memory_line=line)
    qtbot.addWidget(pane)
    pvm.set_project(small_project)
    yield pane, line, memory, pvm, tasks
    tasks.wait()


def wait_line(qtbot, line: MemoryLine, text: str) -> None:
    qtbot.waitUntil(lambda: text in line.label.text(), timeout=60000)


def test_line_follows_config_and_card(setup, qtbot):
    pane, line, memory, pvm, _ = setup
    wait_line(qtbot, line, TOY_LINE)  # the project starts on the bundled toy model
    pvm.update_config(**FLUX)
    wait_line(qtbot, line, "won't fit 48 GB: try gradient_checkpointing True")
    assert line.label.text() == "≈ 48.4 GiB — won't fit 48 GB: try gradient_checkpointing True (≈ 32.0 GiB)"
    pvm.update_config(gradient_checkpointing=True)
    wait_line(qtbot, line, "fits 48 GB")
    assert line.label.text() == "≈ 32.0 GiB on the device — fits 48 GB"
    line.card.setCurrentIndex(line.card.findData(12.0))
    wait_line(qtbot, line, "12 GB")
    assert memory.card_gb == 12 and "won't fit 12 GB" in line.label.text()


def test_train_asks_and_applies_the_fitting_options(setup, qtbot, monkeypatch):
    pane, line, memory, pvm, _ = setup
    started = []
    monkeypatch.setattr(pane.vm, "start", lambda resume=False: started.append(resume) or True)
    pvm.update_config(**FLUX)
    wait_line(qtbot, line, "won't fit 48 GB")
    asked = []
    line.ask = lambda advice: asked.append(advice.changes) or CANCEL
    pane.train_button.click()
    assert asked == [{"gradient_checkpointing": True}] and started == []  # cancelled: nothing starts
    line.ask = lambda advice: APPLY
    pane.train_button.click()
    assert started == [False] and pvm.config.gradient_checkpointing is True
    wait_line(qtbot, line, "fits 48 GB")
    line.ask = lambda advice: pytest.fail("a plan that fits must not ask")
    pane.train_button.click()
    assert started == [False, False]


def test_train_anyway_keeps_the_config(setup, qtbot, monkeypatch):
    pane, line, memory, pvm, _ = setup
    started = []
    monkeypatch.setattr(pane.vm, "start", lambda resume=False: started.append(resume) or True)
    pvm.update_config(**FLUX)
    line.card.setCurrentIndex(line.card.findData(8.0))
    wait_line(qtbot, line, "won't fit 8 GB")
    line.ask = lambda advice: ANYWAY
    pane.train_button.click()
    assert started == [False] and pvm.config.gradient_checkpointing is False


def test_card_size_setting_round_trips(tmp_path):
    settings = AppSettings(path=tmp_path / "settings.json", card_gb=16.0)
    settings.save()
    assert AppSettings.load(tmp_path / "settings.json").card_gb == 16.0
    (tmp_path / "settings.json").write_text('{"card_gb": "lots"}')
    assert AppSettings.load(tmp_path / "settings.json").card_gb == 0.0  # damaged: the detected card is used


def test_bad_plan_shows_why(setup, qtbot, monkeypatch):
    _, line, memory, pvm, _ = setup
    wait_line(qtbot, line, TOY_LINE)
    pvm.update_config(**FLUX, base_model_precision="nf4-bnb")  # needs CUDA; this machine has none
    wait_line(qtbot, line, "memory estimate unavailable")
    assert "base_model_precision" in line.label.text() and memory.advice is None
    assert isinstance(pvm.config, TrainConfig)


def test_card_detected_on_the_worker_when_none_is_set(qtbot, small_project):
    tasks = TaskRunner()
    pvm = ProjectViewModel()
    memory = MemoryViewModel(pvm, tasks)  # no stored size: the first plan detects it (no GPU here: 24 GB)
    line = MemoryLine(memory, pvm)
    qtbot.addWidget(line)
    assert line.card.currentIndex() == -1
    pvm.set_project(small_project)
    pvm.update_config(**FLUX)
    wait_line(qtbot, line, "24 GB")
    assert memory.card_gb == 24.0 and line.card.currentText() == "24 GB"
    tasks.wait()


def test_the_window_does_not_import_torch_on_the_ui_thread():
    import subprocess
    import sys

    code = "import sys, sliderstudio.gui.main_window; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], env={**__import__("os").environ,
                                                             "QT_QPA_PLATFORM": "offscreen"}).returncode == 0
