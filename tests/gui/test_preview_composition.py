"""Composed sliders in the preview pane: one dial each, their strengths in the render request,
removing one, the dial range from the adapter's calibrated range (issue #16 item 4)."""
from __future__ import annotations

import json

import pytest
import torch
from PySide6.QtWidgets import QPushButton
from safetensors.torch import save_file

from sliderstudio.gui.preview_pane import PreviewPane
from sliderstudio.gui.viewmodels.preview import PreviewViewModel, dial_range
from sliderstudio.gui.viewmodels.project import ProjectViewModel
from sliderstudio.gui.workers import preview as preview_worker
from tests.gui.fakes import FakeRenderer


class ComposingRenderer(FakeRenderer):
    """The stand-in renderer, also recording the composed sliders of every render."""

    composed: list[list[tuple[str, float]]] = []

    def __init__(self, family: str, model_path: str):
        super().__init__(family, model_path)
        self.companions: list[tuple[str, float]] = []

    def set_companions(self, items) -> None:
        self.companions = [(str(p), float(s)) for p, s in items]

    def render(self, prompt, seed, strengths, *args, **kwargs):
        ComposingRenderer.composed.append(list(self.companions))
        return super().render(prompt, seed, strengths, *args, **kwargs)


def adapter(path, calibrated=None):
    meta = {"sliderstudio.family": '"sd1x"'}
    if calibrated is not None:
        meta["sliderstudio.recommended_range"] = json.dumps(calibrated)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"unet.x.lora_A.weight": torch.zeros(1, 2)}, str(path), metadata=meta)
    return str(path)


@pytest.fixture
def pane(qtbot, small_project, monkeypatch):
    from sliderstudio.gui.workers.engine import ensure_engine

    ensure_engine()
    FakeRenderer.calls.clear()
    ComposingRenderer.composed.clear()
    monkeypatch.setattr(preview_worker, "make_renderer", ComposingRenderer)
    small_project.prompts = []
    small_project.config = small_project.config.model_copy(update={"validation_prompt": "a red circle"})
    pvm = ProjectViewModel()
    vm = PreviewViewModel(pvm, debounce_ms=50)
    widget = PreviewPane(vm)
    qtbot.addWidget(widget)
    pvm.set_project(small_project)
    yield widget
    vm.shutdown()


def test_two_dials_drive_two_strengths_into_the_render(pane, qtbot, tmp_path):
    a = adapter(tmp_path / "size" / "a.safetensors", [-0.5, 1.5])
    b = adapter(tmp_path / "light" / "b.safetensors")
    pane.vm.add_companion(a)
    pane.vm.add_companion(b)
    assert len(pane.companion_dials) == 2
    pane.companion_dials[0].setValue(0.8)
    pane.companion_dials[1].setValue(-0.5)
    with qtbot.waitSignal(pane.vm.sweepRendered, timeout=5000):
        pass
    qtbot.wait(150)
    request = pane.vm.request("all")
    assert request.companions == ((a, 0.8), (b, -0.5))
    assert ComposingRenderer.composed[-1] == [(a, 0.8), (b, -0.5)]   # what the renderer was given
    # removing one: the next render composes only the other
    ComposingRenderer.composed.clear()
    remove = pane.findChild(QPushButton, "companionRemove0")
    with qtbot.waitSignal(pane.vm.sweepRendered, timeout=5000):
        remove.click()
    assert [c.path for c in pane.vm.companions] == [b] and len(pane.companion_dials) == 1
    assert ComposingRenderer.composed and ComposingRenderer.composed[-1] == [(b, -0.5)]


def test_dial_range_from_metadata_else_one_and_wider(pane, tmp_path):
    a = adapter(tmp_path / "a" / "a.safetensors", [-0.5, 1.5])
    b = adapter(tmp_path / "b" / "b.safetensors")
    pane.vm.add_companion(a)
    pane.vm.add_companion(b)
    first, second = pane.companion_dials
    assert (first.minimum(), first.maximum()) == (-0.5, 1.5)
    assert (second.minimum(), second.maximum()) == (-1.0, 1.0)
    pane.findChild(QPushButton, "companionWider1").click()
    assert (pane.companion_dials[1].minimum(), pane.companion_dials[1].maximum()) == (-2.0, 2.0)
    assert pane.vm.companions[0].calibrated and not pane.vm.companions[1].calibrated


@pytest.mark.parametrize("value", ["[0.5, 1.0]", "[-1, -0.5]", "[0, 0]", "\"x\"", "[1, NaN]"])
def test_bad_calibrated_ranges_fall_back_to_one(tmp_path, value):
    path = tmp_path / "c.safetensors"
    save_file({"t": torch.zeros(1)}, str(path), metadata={"sliderstudio.recommended_range": value})
    assert dial_range(path) is None
    assert dial_range(tmp_path / "missing.safetensors") is None


def test_bad_files_are_refused(pane, qtbot, tmp_path):
    with qtbot.waitSignal(pane.vm.failed, timeout=1000) as blocker:
        assert pane.vm.add_companion(str(tmp_path / "nothing.safetensors")) is None
    assert "nothing.safetensors" in blocker.args[0]
    a = adapter(tmp_path / "a.safetensors")
    pane.vm.add_companion(a)
    with qtbot.waitSignal(pane.vm.failed, timeout=1000):
        assert pane.vm.add_companion(a) is None
    assert len(pane.vm.companions) == 1


def show_adapter(pane, qtbot, calibrated=None) -> str:
    """Put a final adapter (calibrated range or none) in the project's output folder and render it."""
    path = adapter(pane.vm.project_vm.project.output_dir / "pytorch_lora_weights.safetensors", calibrated)
    with qtbot.waitSignal(pane.vm.sweepRendered, timeout=5000):
        pane.vm.render_now("all")
    return path


def test_main_dials_span_the_shown_adapters_calibrated_range(pane, qtbot):
    assert [(d.minimum(), d.maximum()) for d in pane.dials.values()] == [(-1.0, 1.0)] * 2   # nothing shown yet
    show_adapter(pane, qtbot, [-0.5, 1.5])
    assert [(d.minimum(), d.maximum()) for d in pane.dials.values()] == [(-0.5, 1.5)] * 2
    assert pane.vm.main_calibrated and "calibrated range" in pane.dials["A"].toolTip()
    # A was at -1, outside the range: clamped to its end, and the A/B images render at it
    assert pane.vm.strength_a == -0.5 and pane.dials["A"].value() == -0.5
    with qtbot.waitSignal(pane.vm.abRendered, timeout=5000):
        pass
    assert pane.vm.last.request.strengths[:2] == (-0.5, 1.0)
    pane.findChild(QPushButton, "mainWider").click()
    assert [(d.minimum(), d.maximum()) for d in pane.dials.values()] == [(-1.0, 3.0)] * 2
    assert (pane.vm.strength_a, pane.vm.strength_b) == (-0.5, 1.0)   # widening moves no dial


def test_main_dials_without_calibration_span_one(pane, qtbot):
    show_adapter(pane, qtbot, None)
    assert [(d.minimum(), d.maximum()) for d in pane.dials.values()] == [(-1.0, 1.0)] * 2
    assert not pane.vm.main_calibrated and "not calibrated" in pane.dials["B"].toolTip()
    assert (pane.vm.strength_a, pane.vm.strength_b) == (-1.0, 1.0)


def test_main_and_composed_dials_use_the_engines_rule(pane, qtbot, monkeypatch, tmp_path):
    """The GUI restates no rule: whatever engine.dial_range decides is what both kinds of dial show."""
    from sliderstudio.engine import dial_range as rule

    monkeypatch.setattr(rule, "recommended_range", lambda path: (-0.25, 0.75))
    show_adapter(pane, qtbot, [-3.0, 3.0])
    assert (pane.dials["B"].minimum(), pane.dials["B"].maximum()) == (-0.25, 0.75)
    assert pane.vm.strength_b == 0.75
    with qtbot.waitSignal(pane.vm.abRendered, timeout=5000):   # the clamped A/B render again
        pass
    assert pane.vm.last.request.strengths[:2] == (-0.25, 0.75)
    pane.vm.add_companion(adapter(tmp_path / "c" / "c.safetensors", [-2.0, 2.0]))
    assert (pane.companion_dials[0].minimum(), pane.companion_dials[0].maximum()) == (-0.25, 0.75)
