"""Training pane with a stand-in trainer in a real training process: progress, Stop within one step,
Resume, errors reported by the trainer, and a process that dies without a word."""
from __future__ import annotations

import pytest

from sliderstudio.gui.training_pane import TrainingPane
from sliderstudio.gui.viewmodels.project import ProjectViewModel
from sliderstudio.gui.viewmodels.training import IDLE, TrainingViewModel, format_eta
from tests.gui.fakes import stop_seen_at, use_fake_training_process
from tests.gui.heartbeat import Heartbeat


@pytest.fixture
def pane(qtbot, small_project, monkeypatch):
    use_fake_training_process(monkeypatch)
    from sliderstudio.gui.workers.tasks import TaskRunner

    tasks = TaskRunner()
    pvm = ProjectViewModel()
    vm = TrainingViewModel(pvm, tasks)
    widget = TrainingPane(vm, pvm)
    qtbot.addWidget(widget)
    pvm.set_project(small_project)
    qtbot.waitUntil(lambda: not tasks.busy, timeout=60000)   # the resume check (imports the engine)
    yield widget
    vm.stop()
    vm.wait()
    tasks.wait()


def test_train_button_runs_to_the_end_with_progress(pane, qtbot):
    vm = pane.vm
    seen = []
    vm.progressChanged.connect(lambda p: seen.append(p.step))
    pane.show()                      # measure a realistic, painted window (fonts loaded at startup)
    qtbot.waitExposed(pane)
    pane.append_log("info", "ready")
    qtbot.wait(300)                  # the first paint (fonts, plot axes) is startup, not training
    beat = Heartbeat()
    with qtbot.waitSignal(vm.runFinished, timeout=10000) as finished:
        pane.train_button.click()
        assert not pane.train_button.isEnabled() and pane.stop_button.isEnabled()
    qtbot.waitUntil(lambda: vm.state == IDLE, timeout=5000)
    adapter, stopped = finished.args
    assert seen == list(range(1, 31))
    assert stopped is False and adapter.endswith("output/pytorch_lora_weights.safetensors")
    assert (pane.pvm.project.output_dir / "pytorch_lora_weights.safetensors").read_bytes() == b"adapter"
    assert pane.progress.value() == 30 and pane.progress.maximum() == 30
    assert pane.status.text().startswith("Finished at step 30")
    assert vm.losses[-1] == pytest.approx(1 / 30)
    qtbot.waitUntil(lambda: pane.plot.raw.getData()[0] is not None and len(pane.plot.raw.getData()[0]) == 30,
                    timeout=2000)
    assert "fake trainer started" in pane.log.toPlainText()
    beat.stop()
    beat.assert_responsive()
    assert pane.train_button.isEnabled() and not pane.stop_button.isEnabled()


def test_stop_mid_run_keeps_a_checkpoint_and_resume_continues(pane, qtbot):
    vm = pane.vm
    with qtbot.waitSignal(vm.progressChanged, timeout=5000, check_params_cb=lambda p: p.step == 5):
        pane.train_button.click()
    requested_at = vm.last_progress.step
    with qtbot.waitSignal(vm.runFinished, timeout=5000) as finished:
        pane.stop_button.click()
        assert pane.status.text().startswith("Stopping")
    qtbot.waitUntil(lambda: vm.state == IDLE, timeout=5000)
    stopped_at = stop_seen_at(pane.log.toPlainText())
    assert finished.args[1] is True
    assert stopped_at - requested_at <= 1                    # within one step of the request
    assert f"checkpoint-{stopped_at:06d}" in finished.args[0]
    qtbot.waitUntil(lambda: not vm._tasks.busy, timeout=10000)   # the resume check after the run
    assert pane.resume_button.isEnabled()
    with qtbot.waitSignal(vm.runFinished, timeout=10000) as resumed:
        pane.resume_button.click()
    qtbot.waitUntil(lambda: vm.state == IDLE, timeout=5000)
    assert resumed.args[1] is False
    assert f"resumed at step {stopped_at}" in pane.log.toPlainText()
    assert vm.steps[-1] == 30


def test_worker_exception_is_shown_and_the_app_stays_usable(pane, qtbot, monkeypatch):
    use_fake_training_process(monkeypatch, fail_at=3)
    with qtbot.waitSignal(pane.vm.runFailed, timeout=5000) as failed:
        pane.train_button.click()
    qtbot.waitUntil(lambda: pane.vm.state == IDLE, timeout=5000)
    assert failed.args[0] == "RuntimeError: boom at step 3"
    assert not pane.error.isHidden()
    assert pane.error_label.text() == "Training failed: RuntimeError: boom at step 3"
    assert "Traceback" in pane.log.toPlainText()
    assert pane.train_button.isEnabled()
    use_fake_training_process(monkeypatch)                    # and the next run works
    with qtbot.waitSignal(pane.vm.runFinished, timeout=10000):
        pane.train_button.click()
    assert pane.error.isHidden()


def test_input_error_reported_by_the_trainer_is_shown_once(pane, qtbot, monkeypatch):
    use_fake_training_process(monkeypatch, kind="ReportingFailTrainer")
    messages = []
    pane.vm.runFailed.connect(lambda m, _d: messages.append(m))
    pane.train_button.click()
    qtbot.waitUntil(lambda: pane.vm.state == IDLE and bool(messages), timeout=5000)
    assert messages == ["data/more, key 'more.instance_data_dir': bucket 'more' has no usable images"]
    assert "no usable images" in pane.error_label.text()


def test_schedule_fields_edit_the_config_and_lock_while_training(pane, qtbot):
    pane.fields["max_train_steps"].setValue(12)
    assert pane.pvm.config.max_train_steps == 12
    assert "<code>max_train_steps</code>" in pane.fields["max_train_steps"].toolTip()
    pane.train_button.click()
    assert not pane.fields["learning_rate"].isEnabled()
    assert not pane.pvm.dirty                               # saved before the run
    with qtbot.waitSignal(pane.vm.runFinished, timeout=10000):
        pass


def test_eta_format():
    assert [format_eta(s) for s in (5, 65, 3725, float("inf"), float("nan"))] == \
        ["0:05", "1:05", "1:02:05", "—", "—"]


def test_a_training_process_that_dies_is_reported_and_the_app_stays_usable(pane, qtbot, monkeypatch):
    use_fake_training_process(monkeypatch, die_at=4)
    with qtbot.waitSignal(pane.vm.runFailed, timeout=10000) as failed:
        pane.train_button.click()
    qtbot.waitUntil(lambda: pane.vm.state == IDLE, timeout=5000)
    assert failed.args[0] == ("the training process was killed by SIGKILL (the system may have run out of "
                              "memory); the last checkpoint is kept")
    assert "C code writing to fd 1" in failed.args[1]          # the process's stderr is in the details
    assert pane.vm.steps == [1, 2, 3]
    assert pane.error_label.text().startswith("Training failed: the training process was killed")
    use_fake_training_process(monkeypatch)
    with qtbot.waitSignal(pane.vm.runFinished, timeout=10000):
        pane.train_button.click()
    assert pane.error.isHidden()


def test_stop_pressed_before_the_process_is_up_still_stops_it(pane, qtbot):
    with qtbot.waitSignal(pane.vm.runFinished, timeout=10000) as finished:
        pane.train_button.click()
        pane.stop_button.click()
    qtbot.waitUntil(lambda: pane.vm.state == IDLE, timeout=5000)
    assert finished.args[1] is True and stop_seen_at(pane.log.toPlainText()) == 0
    assert pane.vm.steps == []
