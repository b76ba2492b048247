"""The device panel: device name and memory from the run, the validation gallery (from the run and from
disk), and the live-run buttons (Pause/Resume, Sample now, Save now) sent to a real training process.

Fast tests drive the stand-in trainer (tests/gui/fakes.py: CommandingTrainer) behind the product's own
CLI, wire and worker; one test drives the real trainer on the bundled toy model end to end.
"""
from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import pytest
from PIL import Image

from sliderstudio.kernel.events import EVENT_TYPES, Command, Device, Image as ImageEvent, unhandled
from sliderstudio.gui.device_panel import EMPTY_GALLERY, PAUSE_TEXT, RESUME_TEXT, DevicePanel
from sliderstudio.gui.viewmodels.device import (
    DeviceViewModel, list_validation_files, parse_validation_path,
)
from sliderstudio.gui.viewmodels.project import ProjectViewModel
from sliderstudio.gui.viewmodels.training import IDLE, TrainingViewModel
from sliderstudio.gui.workers.tasks import TaskRunner
from sliderstudio.gui.workers.training import TrainingWorker
from tests.gui.fakes import use_fake_training_process

FAKE_MEMORY = "device: 6.0 GiB used, 10.0 GiB free of 16.0 GiB · this run: 3.0 GiB held by torch"


@pytest.fixture
def panel(qtbot, small_project, monkeypatch):
    use_fake_training_process(monkeypatch, kind="CommandingTrainer", total=400, step_seconds=0.02)
    tasks = TaskRunner()
    pvm = ProjectViewModel()
    training = TrainingViewModel(pvm, tasks)
    widget = DevicePanel(DeviceViewModel(training, pvm, tasks))
    qtbot.addWidget(widget)
    pvm.set_project(small_project)
    qtbot.waitUntil(lambda: not tasks.busy, timeout=60000)
    yield widget
    training.stop()
    training.wait()
    tasks.wait()


def captions(widget: DevicePanel) -> dict[int, list[str]]:
    return {step: [t.caption.text() for t in row.thumbs] for step, row in sorted(widget.rows.items())}


def write_png(path: Path, grey: int = 128) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (24, 24), (grey,) * 3).save(path)
    return path


def test_before_a_run_the_panel_shows_dashes_and_no_live_buttons(panel):
    assert panel.device_name.text() == "—" and panel.memory_text.text() == "—"
    assert panel.memory_bar.format() == "—"
    assert not any(b.isEnabled() for b in (panel.pause_button, panel.sample_button, panel.save_button))
    assert panel.empty.text() == EMPTY_GALLERY and not panel.empty.isHidden() and panel.rows == {}
    # commands with no live run are refused, not queued for a later one
    assert panel.vm.sample_now() is False and panel.vm.save_now() is False and panel.vm.toggle_pause() is False
    assert TrainingWorker(panel.vm._pvm.project).send(Command.PAUSE) is False


def test_device_events_reach_the_panel_and_stay_labelled_after_the_run(panel, qtbot, monkeypatch):
    use_fake_training_process(monkeypatch, kind="CommandingTrainer", total=20, step_seconds=0.02)
    training = panel.vm.training
    with qtbot.waitSignal(training.runFinished, timeout=15000):
        training.start()
        qtbot.waitUntil(lambda: panel.device_name.text() == "Fake GPU (cuda:0)", timeout=10000)
        assert panel.memory_text.text() == FAKE_MEMORY
        assert (panel.memory_bar.value(), panel.memory_bar.maximum()) == (6 * 1024, 16 * 1024)
        assert panel.memory_bar.format() == "6.0 of 16.0 GiB used (%p%)"
        assert panel.sample_button.isEnabled() and panel.save_button.isEnabled()
    qtbot.waitUntil(lambda: training.state == IDLE, timeout=5000)
    assert panel.device_name.text() == "Fake GPU (cuda:0) · last run"
    assert not panel.sample_button.isEnabled() and not panel.pause_button.isEnabled()


def record_commands(monkeypatch) -> list[str]:
    """The command lines the app writes to training processes' stdin (still written)."""
    sent: list[str] = []
    real = TrainingWorker._send

    def send(self, line: str) -> bool:
        sent.append(line)
        return real(self, line)

    monkeypatch.setattr(TrainingWorker, "_send", send)
    return sent


@dataclasses.dataclass(frozen=True)
class Rebooted:
    """An event type a later version might add."""

    step: int


def test_the_app_has_a_handler_for_every_event_type(panel):
    handlers = panel.vm.training.handlers
    assert unhandled(handlers) == [] and set(handlers) == set(EVENT_TYPES.values())
    try:                                   # an event type declared without the app saying how it shows it
        EVENT_TYPES["Rebooted"] = Rebooted
        assert unhandled(handlers) == ["Rebooted"]
    finally:
        del EVENT_TYPES["Rebooted"]


def test_pause_sample_save_resume_through_the_buttons(panel, qtbot, monkeypatch):
    sent = record_commands(monkeypatch)
    training, out = panel.vm.training, panel.vm._pvm.project.output_dir
    steps: list[int] = []
    training.progressChanged.connect(lambda p: steps.append(p.step))
    with qtbot.waitSignal(training.progressChanged, timeout=15000, check_params_cb=lambda p: p.step == 5):
        training.start()
    with qtbot.waitSignal(training.pausedChanged, timeout=5000) as paused:
        panel.pause_button.click()
        assert not panel.pause_button.isEnabled()          # until the trainer confirms
    held, at = paused.args
    assert held is True and at >= 5
    assert panel.pause_button.text() == RESUME_TEXT and panel.pause_button.isEnabled()
    assert panel.note.text() == f"paused at step {at}"
    count = len(steps)
    qtbot.wait(500)
    assert len(steps) == count and steps[-1] == at             # no step while paused
    panel.sample_button.click()
    qtbot.waitUntil(lambda: at in panel.rows, timeout=5000)
    assert captions(panel) == {at: ["+1.00\nbig", "-1.00\nbig"]}
    assert panel.rows[at].header.text() == f"step {at}" and panel.empty.isHidden()
    assert sorted(p.name for p in (out / "validation" / f"step-{at:06d}").iterdir()) == ["big_s+1.00.png",
                                                                                            "big_s-1.00.png"]
    assert panel.note.text() == f"sampled at step {at}"
    with qtbot.waitSignal(training.checkpointSaved, timeout=5000) as saved:
        panel.save_button.click()
    assert Path(saved.args[0]) == out / "checkpoints" / f"checkpoint-{at:06d}"
    assert (Path(saved.args[0]) / "state.json").exists()
    assert panel.note.text() == f"checkpoint saved: checkpoint-{at:06d}"
    with qtbot.waitSignal(training.pausedChanged, timeout=5000) as resumed:
        panel.pause_button.click()
    assert resumed.args == [False, at] and panel.pause_button.text() == PAUSE_TEXT
    qtbot.waitUntil(lambda: steps[-1] >= at + 3, timeout=5000)   # steps continue
    with qtbot.waitSignal(training.checkpointSaved, timeout=5000) as running_save:
        panel.save_button.click()                               # while running: the step it was served at
    step = int(Path(running_save.args[0]).name.removeprefix("checkpoint-"))
    assert step >= at + 3 and Path(running_save.args[0]).is_dir()
    with qtbot.waitSignal(training.runFinished, timeout=5000):
        training.stop()
    # every command the trainer accepts is sent by the app (core/events.Command), in the order clicked
    assert sent == ["pause", "sample_now", "save_now", "resume", "save_now", "stop"]
    assert set(sent) == {c.value for c in Command}


def test_stop_while_paused_ends_the_run_and_resets_the_button(panel, qtbot):
    training = panel.vm.training
    with qtbot.waitSignal(training.progressChanged, timeout=15000, check_params_cb=lambda p: p.step == 2):
        training.start()
    with qtbot.waitSignal(training.pausedChanged, timeout=5000):
        panel.pause_button.click()
    with qtbot.waitSignal(training.runFinished, timeout=5000) as finished:
        training.stop()
    qtbot.waitUntil(lambda: training.state == IDLE, timeout=5000)
    assert finished.args[1] is True
    assert training.paused is False and panel.pause_button.text() == PAUSE_TEXT
    assert not panel.pause_button.isEnabled()


def test_the_gallery_loads_a_project_s_validation_folders_off_the_ui_thread(qtbot, small_project):
    out = small_project.output_dir / "validation"
    write_png(out / "step-000020" / "cat_s+1.00.png")
    write_png(out / "step-000020" / "cat_s-1.00.png")
    write_png(out / "step-000010" / "cat_1024x768_s+0.50.png")       # a size tag stays in the name
    write_png(out / "step-000010" / "notes.png")                      # not a validation image name
    write_png(out / "misc" / "cat_s+1.00.png")                        # not a step folder
    (out / "step-000030").mkdir()
    (out / "step-000030" / "torn_s+1.00.png").write_bytes(b"\x89PNG half-written")   # unreadable: skipped
    tasks, pvm = TaskRunner(), ProjectViewModel()
    vm = DeviceViewModel(TrainingViewModel(pvm, tasks), pvm, tasks)
    widget = DevicePanel(vm)
    qtbot.addWidget(widget)
    with qtbot.waitSignal(vm.galleryChanged, timeout=10000, check_params_cb=lambda: bool(vm.images)):
        pvm.set_project(small_project)
    qtbot.waitUntil(lambda: bool(widget.rows), timeout=3000)
    assert captions(widget) == {10: ["+0.50\ncat_1024x768"], 20: ["+1.00\ncat", "-1.00\ncat"]}
    assert widget.gallery_layout.indexOf(widget.rows[10]) < widget.gallery_layout.indexOf(widget.rows[20])
    assert widget.empty.isHidden()
    tasks.wait()


def test_validation_file_names_are_parsed_strictly(tmp_path):
    good = parse_validation_path(tmp_path / "validation" / "step-000120" / "my_prompt_s-0.25.png")
    assert (good.step, good.name, good.strength) == (120, "my_prompt", -0.25)
    for bad in ("step-000120/prompt.png", "step-x/prompt_s+1.00.png", "step-000120/prompt_s+1.00.jpg",
                "other/prompt_s+1.00.png"):
        assert parse_validation_path(tmp_path / bad) is None, bad
    assert list_validation_files(tmp_path / "nothing-here") == []
    for step in (3, 1, 2):
        write_png(tmp_path / "out" / "validation" / f"step-{step:06d}" / "p_s+1.00.png")
    assert [f.step for f in list_validation_files(tmp_path / "out", limit=2)] == [2, 3]   # the newest kept


def test_a_fresh_run_clears_the_gallery_and_a_resume_keeps_it(qtbot, small_project, monkeypatch):
    use_fake_training_process(monkeypatch, kind="CommandingTrainer", total=3, step_seconds=0.01)
    write_png(small_project.output_dir / "validation" / "step-000004" / "old_s+1.00.png")
    tasks, pvm = TaskRunner(), ProjectViewModel()
    training = TrainingViewModel(pvm, tasks)
    vm = DeviceViewModel(training, pvm, tasks)
    pvm.set_project(small_project)
    qtbot.waitUntil(lambda: len(vm.images) == 1 and not tasks.busy, timeout=10000)
    qimage = DevicePanel(vm).grab().toImage()                      # any QImage will do as a picture
    vm.training.sampleRendered.emit(ImageEvent(None, 9, "p", 1.0, "/x/validation/step-000009/p_s+1.00.png"),
                                    qimage)
    qtbot.waitUntil(lambda: len(vm.images) == 2, timeout=5000)
    vm.training.runStarted.emit(True)
    assert len(vm.images) == 2
    with qtbot.waitSignal(training.runFinished, timeout=15000):
        training.start()
    assert vm.images == {}
    training.wait()
    tasks.wait()


@pytest.fixture
def real_panel(qtbot, tmp_path):
    """The panel and the training view-model on the real `sliderstudio train --events` process."""
    from tests.conftest import make_project

    root = make_project(tmp_path / "run", "sliderstudio:toy",
                        config={"max_train_steps": 400, "checkpointing_steps": 0, "validation_steps": 0,
                                "validation_prompt": "a photo of a red square", "resolution": 32,
                                "validation_num_inference_steps": 2, "validation_resolution": 32})
    from sliderstudio.engine.project import load_project

    tasks, pvm = TaskRunner(), ProjectViewModel()
    training = TrainingViewModel(pvm, tasks)
    widget = DevicePanel(DeviceViewModel(training, pvm, tasks))
    qtbot.addWidget(widget)
    pvm.set_project(load_project(root))
    qtbot.waitUntil(lambda: not tasks.busy, timeout=60000)
    yield widget
    training.stop()
    training.wait()
    tasks.wait()


def test_the_main_window_shows_the_panel_under_the_training_area(qtbot, small_project, monkeypatch):
    from sliderstudio.gui.main_window import MainWindow

    use_fake_training_process(monkeypatch, kind="CommandingTrainer", total=10, step_seconds=0.01)
    win = MainWindow()
    qtbot.addWidget(win)
    assert win.open_project(small_project.root)
    assert [win.right.widget(i).objectName() for i in range(win.right.count())] == ["areaTraining", "deviceArea"]
    assert win.device_area.title() == "Device" and win.device_area.isAncestorOf(win.device_panel)
    view = next(a for a in win.menuBar().actions() if a.text() == "&View").menu()
    toggle = next(a for a in view.actions() if a.text() == "Device")
    toggle.setChecked(False)
    assert win.device_area.isHidden()
    toggle.setChecked(True)
    with qtbot.waitSignal(win.training_vm.runFinished, timeout=15000):
        win.training_pane.train_button.click()
    assert win.device_panel.device_name.text().startswith("Fake GPU (cuda:0)")
    qtbot.waitUntil(lambda: not win.training_vm.running, timeout=5000)
    win.shutdown(store=False)


def metrics_rows(output: Path) -> int:
    path = output / "metrics.jsonl"
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_the_real_trainer_pauses_samples_saves_and_resumes_from_the_panel(real_panel, qtbot, monkeypatch):
    """The real engine in its own process: Pause holds (metrics.jsonl stops growing), Sample now renders
    the current step's validation into output_dir/validation and the gallery, Save now writes that
    step's checkpoint, Resume goes on from the step held at, Stop keeps a checkpoint of the last step;
    the Device event names the CPU."""
    sent = record_commands(monkeypatch)
    panel = real_panel
    training, output = panel.vm.training, panel.vm._pvm.project.output_dir
    steps: list[int] = []
    training.progressChanged.connect(lambda p: steps.append(p.step))
    with qtbot.waitSignal(training.progressChanged, timeout=120000, check_params_cb=lambda p: p.step >= 2):
        assert training.start()
    assert panel.device_name.text().startswith("CPU (") and panel.device_name.text().endswith(" threads)")
    assert panel.memory_text.text().startswith("system RAM: ") and "resident" in panel.memory_text.text()
    assert 0 < panel.memory_bar.value() <= panel.memory_bar.maximum()
    with qtbot.waitSignal(training.pausedChanged, timeout=30000) as paused:
        panel.pause_button.click()
    held, at = paused.args
    assert held is True and panel.pause_button.text() == RESUME_TEXT
    rows = metrics_rows(output)
    time.sleep(1.0)                                 # the child trains on its own: give it the chance
    qtbot.wait(100)
    assert metrics_rows(output) == rows == at and training.last_progress.step == at
    with qtbot.waitSignal(training.sampleRendered, timeout=60000) as sampled:
        panel.sample_button.click()
    assert sampled.args[0].step == at
    folder = output / "validation" / f"step-{at:06d}"
    assert [p.name for p in folder.iterdir()] == ["validation_s+1.00.png"]
    qtbot.waitUntil(lambda: at in panel.rows, timeout=5000)
    assert [t.caption.text() for t in panel.rows[at].thumbs] == ["+1.00\nvalidation"]
    with qtbot.waitSignal(training.checkpointSaved, timeout=60000) as saved:
        panel.save_button.click()
    assert Path(saved.args[0]) == output / "checkpoints" / f"checkpoint-{at:06d}"
    assert json.loads((Path(saved.args[0]) / "state.json").read_text())["step"] == at
    held_steps = len(steps)
    with qtbot.waitSignal(training.pausedChanged, timeout=30000) as resumed:
        panel.pause_button.click()
    assert resumed.args == [False, at] and panel.pause_button.text() == PAUSE_TEXT
    qtbot.waitUntil(lambda: metrics_rows(output) >= at + 2, timeout=60000)      # steps continue
    qtbot.waitUntil(lambda: len(steps) > held_steps, timeout=10000)
    assert steps[held_steps] == at + 1                                          # from the step held at
    with qtbot.waitSignal(training.runFinished, timeout=60000) as finished:
        training.stop()
    adapter, stopped_early = finished.args
    assert stopped_early is True
    last = Path(adapter).parent                                                 # the stop's checkpoint
    assert last.parent == output / "checkpoints" and json.loads((last / "state.json").read_text())["step"] == \
        metrics_rows(output) == int(last.name.removeprefix("checkpoint-")) > at
    qtbot.waitUntil(lambda: training.state == IDLE, timeout=10000)
    assert panel.device_name.text().endswith("· last run")
    assert sent == ["pause", "sample_now", "save_now", "resume", "stop"]
