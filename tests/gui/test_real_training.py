"""The whole flow on a real (tiny) model: Train button → progress → adapter → preview follows it.

Uses the bundled toy model when this installation has it, else the session's tiny SD 1.x
(the same diffusers code path). Also the UI-stall measurement for a real torch run.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from sliderstudio.gui.main_window import MainWindow
from sliderstudio.gui.viewmodels.training import IDLE
from tests.conftest import make_project
from tests.gui.heartbeat import Heartbeat


def model_for_test(tiny_models) -> str:
    from sliderstudio.kernel.resources import toy_model_dir

    return "sliderstudio:toy" if (toy_model_dir() / "model_index.json").exists() else str(tiny_models["sd1x"])


@pytest.fixture
def window(qtbot, tmp_path, tiny_models):
    root = make_project(tmp_path / "run", model_for_test(tiny_models),
                        config={"max_train_steps": 6, "checkpointing_steps": 3, "validation_steps": 6,
                                "validation_prompt": "a photo of a red square", "resolution": 32,
                                "validation_num_inference_steps": 2, "validation_resolution": 32})
    win = MainWindow()
    qtbot.addWidget(win)
    win.resize(1400, 900)
    win.show()
    qtbot.waitExposed(win)
    with qtbot.waitSignal(win.arch_vm.familiesLoaded, timeout=60000):
        pass                                   # the engine (torch, diffusers) is imported by now
    assert win.open_project(root)
    qtbot.waitUntil(lambda: not win.preview_vm.busy and win.preview_vm.last is not None, timeout=60000)
    yield win
    win.shutdown()


def test_train_button_trains_saves_and_previews(window, qtbot):
    training, preview = window.training_vm, window.preview_vm
    steps, checkpoints, samples = [], [], []
    training.progressChanged.connect(lambda p: steps.append((p.step, p.total)))
    training.checkpointSaved.connect(checkpoints.append)
    training.sampleRendered.connect(lambda event, image: samples.append((event.step, image)))
    preview.preview_steps = 2
    preview.steps = 2
    sweeps = []
    preview.sweepRendered.connect(sweeps.append)
    beat = Heartbeat()
    with qtbot.waitSignal(training.runFinished, timeout=170000) as finished:
        window.training_pane.train_button.click()
    beat.stop()
    qtbot.waitUntil(lambda: training.state == IDLE, timeout=10000)
    adapter, stopped = finished.args
    output = window.project_vm.project.output_dir
    assert steps == [(i, 6) for i in range(1, 7)]
    assert stopped is False and Path(adapter) == output / "pytorch_lora_weights.safetensors"
    assert Path(adapter).stat().st_size > 1000
    assert [Path(c).name for c in checkpoints] == ["checkpoint-000003"]
    assert [step for step, _ in samples] == [6] and not samples[0][1].isNull()
    assert window.training_pane.progress.value() == 6
    assert "adapter saved" in window.training_pane.log.toPlainText()
    # the preview follows the finished adapter: a full render (A, B and the 5-strength sweep) of it,
    # then, when its calibrated range is narrower than the dials, the A/B images again within that range
    qtbot.waitUntil(lambda: preview.adapter == adapter and not preview.busy
                    and any(r.adapter == adapter for r in sweeps), timeout=60000)
    assert [len(r.images) for r in sweeps if r.adapter == adapter] == [7]
    assert preview.last.adapter == adapter
    assert preview.main_lo <= min(preview.strength_a, preview.strength_b)
    assert max(preview.strength_a, preview.strength_b) <= preview.main_hi
    pixmap = window.preview_pane.ab_images["B"].pixmap()
    assert pixmap is not None and not pixmap.isNull()
    assert window.preview_pane.adapter_label.text().endswith("pytorch_lora_weights.safetensors")
    beat.assert_responsive()
