"""A/B preview with a stand-in renderer: debounced dials, coalesced renders, sweep, adapters."""
from __future__ import annotations

import pytest

from sliderstudio.gui.preview_pane import PreviewPane
from sliderstudio.gui.viewmodels.preview import PreviewViewModel
from sliderstudio.gui.viewmodels.project import ProjectViewModel
from sliderstudio.gui.workers import preview as preview_worker
from tests.gui.fakes import FakeRenderer


@pytest.fixture
def pane(qtbot, small_project, monkeypatch):
    from sliderstudio.gui.workers.engine import ensure_engine

    ensure_engine()           # the app imports the engine at start-up; not part of a render's time
    FakeRenderer.calls.clear()
    FakeRenderer.loaded.clear()
    monkeypatch.setattr(preview_worker, "make_renderer", FakeRenderer)
    small_project.prompts = []
    small_project.config = small_project.config.model_copy(update={"validation_prompt": "a red circle"})
    pvm = ProjectViewModel()
    vm = PreviewViewModel(pvm, debounce_ms=50)
    widget = PreviewPane(vm)
    qtbot.addWidget(widget)
    pvm.set_project(small_project)
    yield widget
    vm.shutdown()


def grey(label) -> int:
    return label.pixmap().toImage().pixelColor(5, 5).red()


def give_adapter(pane) -> None:
    """A final adapter in the project's output folder (the stand-in renderer only records it)."""
    adapter = pane.vm.project_vm.project.output_dir / "pytorch_lora_weights.safetensors"
    adapter.parent.mkdir(parents=True, exist_ok=True)
    adapter.write_bytes(b"x")


def test_full_render_fills_ab_and_sweep(pane, qtbot):
    give_adapter(pane)
    with qtbot.waitSignal(pane.vm.sweepRendered, timeout=5000):
        pane.vm.render_now("all")
    # the base (strength 0) first, on its own; then the other six strengths in one batched call
    assert [c["strengths"] for c in FakeRenderer.calls] == [[0.0], [-1.0, 1.0, -1.0, -0.5, 0.5, 1.0]]
    call = FakeRenderer.calls[-1]
    assert call["prompt"] == "a red circle" and pane.prompt.currentText() == "a red circle"
    assert [grey(pane.ab_images[s]) for s in "AB"] == [68, 188]
    assert [grey(label) for label in pane.sweep_images] == [68, 98, 128, 158, 188]
    assert pane.status.text().startswith("A = -1.00, B = +1.00")


def test_without_an_adapter_every_strength_is_one_base_image(pane, qtbot):
    with qtbot.waitSignal(pane.vm.sweepRendered, timeout=5000):
        pane.vm.render_now("all")
    assert [c["strengths"] for c in FakeRenderer.calls] == [[0.0]]       # one image, not seven
    assert [grey(pane.ab_images[s]) for s in "AB"] == [128, 128]
    assert [grey(label) for label in pane.sweep_images] == [128] * 5
    assert pane.adapter_label.text().startswith("adapter: (none yet")   # no output yet: base model


def test_dragging_a_dial_renders_once_when_it_rests(pane, qtbot):
    give_adapter(pane)
    with qtbot.waitSignal(pane.vm.sweepRendered, timeout=5000):
        pane.vm.render_now("all")
    FakeRenderer.calls.clear()
    for value in (0.1, 0.2, 0.3, 0.4, 0.55):
        pane.dials["A"].setValue(value)
        qtbot.wait(10)
    with qtbot.waitSignal(pane.vm.abRendered, timeout=5000):
        pass
    qtbot.wait(150)
    assert [c["strengths"] for c in FakeRenderer.calls] == [[0.55, 1.0]]   # only the resting value
    assert grey(pane.ab_images["A"]) == int(128 + 60 * 0.55)


def test_requests_while_busy_are_coalesced_to_the_newest(pane, qtbot):
    vm = pane.vm
    vm.render_now("all")
    for seed in (1, 2, 3):
        vm.seed = seed
        vm.render_now("ab")
    qtbot.waitUntil(lambda: not vm.busy, timeout=5000)
    # no adapter: each render is its seed's base image; seeds 1 and 2 were never rendered
    assert [(c["seed"], len(c["strengths"])) for c in FakeRenderer.calls] == [(0, 1), (3, 1)]


def test_start_fraction_is_saved_and_used(pane, qtbot):
    pane.start.setValue(0.3)
    with qtbot.waitSignal(pane.vm.sweepRendered, timeout=5000):
        pass
    assert pane.vm.project_vm.config.slider_start_fraction == 0.3
    assert FakeRenderer.calls[-1]["start_fraction"] == 0.3
    assert "<code>slider_start_fraction</code>" in pane.start.toolTip()


def test_latest_adapter_is_loaded_and_followed(pane, qtbot):
    output = pane.vm.project_vm.project.output_dir
    first = output / "checkpoints" / "checkpoint-000002" / "pytorch_lora_weights.safetensors"
    first.parent.mkdir(parents=True)
    (first.parent / "state.json").write_text("{}")
    first.write_bytes(b"x")
    with qtbot.waitSignal(pane.vm.adapterChanged, timeout=5000):
        pane.vm.on_checkpoint(str(first.parent))
    assert FakeRenderer.loaded == [str(first)]
    assert pane.adapter_label.text() == "adapter: checkpoint-000002/pytorch_lora_weights.safetensors"
    final = output / "pytorch_lora_weights.safetensors"
    final.write_bytes(b"y")
    with qtbot.waitSignal(pane.vm.adapterChanged, timeout=5000):
        pane.vm.on_run_finished(str(final))
    assert FakeRenderer.loaded[-1] == str(final)
    pane.follow.setChecked(False)
    count = len(FakeRenderer.calls)
    pane.vm.on_checkpoint("x")
    qtbot.wait(100)
    assert len(FakeRenderer.calls) == count                # not following: no re-render


def test_render_errors_are_shown(pane, qtbot, monkeypatch, tmp_path):
    def broken(*_a, **_k):
        raise RuntimeError("no such model")

    monkeypatch.setattr(preview_worker, "make_renderer", broken)
    monkeypatch.setenv("SLIDERSTUDIO_LOG_DIR", str(tmp_path / "logs"))
    pane.vm._worker._renderer = None
    with qtbot.waitSignal(pane.vm.failed, timeout=5000):
        pane.vm.render_now("all")
    status = pane.status.text()  # the type, where in Slider Studio it happened, the message, the log file
    assert status.startswith("✗ Preview failed: unexpected RuntimeError at sliderstudio/gui/workers/preview.py:")
    logs = list((tmp_path / "logs").glob("crash-*.log"))
    assert len(logs) == 1 and status.endswith(f" in _prepare: no such model (full traceback: {logs[0]})")
    assert "RuntimeError: no such model" in logs[0].read_text()


def test_renders_during_a_training_run_use_one_cpu_thread(pane):
    """Two processes whose thread pools each want every core spin against each other (a 40-step
    toy run took 152-202 s instead of 15-18 s); while training runs, the preview takes one thread."""
    vm = pane.vm
    assert vm.request("all").threads is None
    vm.on_training_state("running")
    assert vm.request("all").threads == 1 and vm.request("ab").threads == 1
    vm.on_run_finished("adapter.safetensors", False)          # the run is over before its thread ends
    assert vm.request("all").threads is None


def test_cpu_threads_sets_and_restores_torch_threads():
    import torch

    from sliderstudio.gui.workers.preview import cpu_threads

    before = torch.get_num_threads()
    with cpu_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError), cpu_threads(1):
        raise RuntimeError("a failed render")
    assert torch.get_num_threads() == before
    with cpu_threads(None):
        assert torch.get_num_threads() == before
