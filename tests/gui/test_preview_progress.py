"""Preview progress: which image (the base first) and which denoising step, in order, with the right
counts; the base image painted ahead of the batch and reused; how many CPU threads a render gets."""
from __future__ import annotations

import pytest

from sliderstudio.gui.preview_pane import PreviewPane
from sliderstudio.gui.viewmodels.preview import PreviewViewModel
from sliderstudio.gui.viewmodels.project import ProjectViewModel
from sliderstudio.gui.workers import preview as preview_worker
from sliderstudio.gui.workers.preview import (
    PreviewWorker, RenderProgress, RenderRequest, preview_threads, render_plan,
)
from tests.gui.fakes import FakeRenderer

STEPS = 4


class OneByOneRenderer(FakeRenderer):
    """An adapter that cannot batch strengths: core renders them one after another and reports
    the steps summed over the images (render_strengths), which the worker must split back."""

    def render(self, prompt, seed, strengths, steps=20, guidance=2.0, start_fraction=0.0, size=None,
               on_step=None):
        images = []
        for k, strength in enumerate(strengths):
            hook = (lambda done, total, k=k: on_step(done + k * total, total * len(strengths))) if on_step else None
            images += super().render(prompt, seed, [strength], steps, guidance, start_fraction, size, hook)
        return images


@pytest.fixture
def pane(qtbot, small_project, monkeypatch):
    from sliderstudio.gui.workers.engine import ensure_engine

    ensure_engine()
    FakeRenderer.calls.clear()
    FakeRenderer.loaded.clear()
    monkeypatch.setattr(preview_worker, "make_renderer", FakeRenderer)
    small_project.prompts = []
    small_project.config = small_project.config.model_copy(
        update={"validation_prompt": "a red circle", "validation_num_inference_steps": STEPS})
    adapter = small_project.output_dir / "pytorch_lora_weights.safetensors"
    adapter.parent.mkdir(parents=True)
    adapter.write_bytes(b"x")
    pvm = ProjectViewModel()
    vm = PreviewViewModel(pvm, debounce_ms=50)
    widget = PreviewPane(vm)
    qtbot.addWidget(widget)
    pvm.set_project(small_project)
    yield widget
    vm.shutdown()


def record(vm: PreviewViewModel, pane: PreviewPane) -> list[tuple]:
    """Every progress, partial and final result in arrival order, with what the pane showed then."""
    seen: list[tuple] = []

    def progress(p: RenderProgress) -> None:
        seen.append(("progress", p.stage, p.first, p.last, p.total, p.step, p.steps, p.base))

    def partial(result) -> None:
        seen.append(("partial", [image is not None for image in result.images], pane.status.text()))

    vm.progressed.connect(progress)
    vm.partialRendered.connect(partial)
    vm.sweepRendered.connect(lambda r: seen.append(("done", len(r.images))))
    return seen


def steps_of(first: int, last: int, total: int, base: bool) -> list[tuple]:
    return [("progress", "render", first, last, total, step, STEPS, base) for step in range(STEPS + 1)]


def test_base_first_then_the_batch_with_step_progress_in_order(pane, qtbot):
    seen = record(pane.vm, pane)
    with qtbot.waitSignal(pane.vm.sweepRendered, timeout=10000):
        pane.vm.render_now("all")
    base_slot = [False, False, False, False, True, False, False]      # strengths A, B, -1, -0.5, 0, 0.5, 1
    assert seen == ([("progress", "load", 0, 0, 0, 0, 0, False)]
                    + steps_of(1, 1, 7, base=True)
                    + [("partial", base_slot, "rendering base image 1 of 7, step 4/4")]
                    + steps_of(2, 7, 7, base=False)
                    + [("done", 7)])
    assert FakeRenderer.calls[0]["strengths"] == [0.0] and len(FakeRenderer.calls) == 2


def test_the_base_image_is_painted_before_the_batch_finishes(pane, qtbot):
    painted = []
    pane.vm.partialRendered.connect(lambda _r: painted.append(
        (pane.sweep_images[2].pixmap().isNull(), pane.sweep_images[0].pixmap().isNull())))
    with qtbot.waitSignal(pane.vm.sweepRendered, timeout=10000):
        pane.vm.render_now("all")
    assert painted == [(False, True)]              # the 0 slot shown; the −1 slot still empty then
    assert pane.status.text().startswith("A = -1.00, B = +1.00")
    assert "rendering" not in pane.status.text()


def test_the_base_is_reused_for_the_next_checkpoint(pane, qtbot):
    with qtbot.waitSignal(pane.vm.sweepRendered, timeout=10000):
        pane.vm.render_now("all")
    FakeRenderer.calls.clear()
    seen = record(pane.vm, pane)
    with qtbot.waitSignal(pane.vm.sweepRendered, timeout=10000):
        pane.vm.on_checkpoint("checkpoint-000100")
    assert [c["strengths"] for c in FakeRenderer.calls] == [[-1.0, 1.0, -1.0, -0.5, 0.5, 1.0]]
    assert seen[0][0] == "partial" and seen[1:] == steps_of(2, 7, 7, base=False) + [("done", 7)]
    FakeRenderer.calls.clear()
    pane.vm.seed = 5                                # another seed: another base image
    with qtbot.waitSignal(pane.vm.sweepRendered, timeout=10000):
        pane.vm.render_now("all")
    assert [c["strengths"] for c in FakeRenderer.calls] == [[0.0], [-1.0, 1.0, -1.0, -0.5, 0.5, 1.0]]


def test_strengths_rendered_one_by_one_report_each_image(pane, qtbot, monkeypatch):
    monkeypatch.setattr(preview_worker, "make_renderer", OneByOneRenderer)
    pane.vm.sweep = ()                              # the two dials only: A = -1, B = +1
    seen = record(pane.vm, pane)
    with qtbot.waitSignal(pane.vm.abRendered, timeout=10000):
        pane.vm.render_now("ab")
    progress = [s for s in seen if s[0] == "progress" and s[1] == "render"]
    assert [(p[2], p[3], p[5]) for p in progress] == (
        [(1, 2, 0)] + [(1, 1, step) for step in range(1, STEPS + 1)] + [(2, 2, step) for step in range(1, STEPS + 1)])
    assert {p[4] for p in progress} == {2}


def test_progress_text():
    assert RenderProgress(1, "render", 1, 1, 7, 3, 8, base=True).text() == "rendering base image 1 of 7, step 3/8"
    assert RenderProgress(1, "render", 2, 7, 7, 5, 8).text() == "rendering images 2–7 of 7 (one batch), step 5/8"
    assert RenderProgress(1, "render", 3, 3, 7, 1, 8).text() == "rendering image 3 of 7, step 1/8"
    assert RenderProgress(1, "load").text().startswith("loading the engine and the model")


def test_render_plan():
    sweep = (-1.0, 1.0, -1.0, -0.5, 0.0, 0.5, 1.0)
    assert render_plan(sweep, has_adapter=True) == [[4], [0, 1, 2, 3, 5, 6]]
    assert render_plan(sweep, has_adapter=False) == [[4]]                     # every slot is the base
    assert render_plan((0.0, 1.0, 0.0), has_adapter=True) == [[0], [1]]      # one base for both zeros
    assert render_plan((-1.0, 1.0), has_adapter=True) == [[0, 1]]            # no base among the dials
    assert render_plan((-1.0, 1.0), has_adapter=False) == [[0]]
    assert render_plan((), has_adapter=True) == []


@pytest.mark.parametrize("training, load, cores, expected", [
    (True, 0.0, 2, 1),          # our own training process has the cores
    (False, 0.3, 2, None),      # idle: torch's default
    (False, 1.2, 2, 1),         # one core busy elsewhere
    (False, 9.0, 2, 1),         # oversubscribed: never more than one
    (False, 4.0, 16, 12),       # the idle cores
    (False, 1.0, 1, 1),
])
def test_preview_threads(training, load, cores, expected):
    assert preview_threads(training, load, cores) == expected


def test_a_cancelled_render_stops_within_a_step(qtbot, monkeypatch):
    """Closing the window cancels a render at its next step instead of waiting for it to end."""
    monkeypatch.setattr(preview_worker, "make_renderer", FakeRenderer)
    monkeypatch.setattr(preview_worker, "find_latest", lambda _d: None)
    worker = PreviewWorker()
    steps: list[int] = []
    results = []

    def on_progress(p: RenderProgress) -> None:
        if p.stage == "render":
            steps.append(p.step)
        if p.step == 2:
            worker.cancel()

    worker.progressed.connect(on_progress)
    worker.rendered.connect(results.append)
    request = RenderRequest("sd1x", "m", "out", None, "p", 0, 10, 2.0, 0.0, (-1.0, 1.0), "ab", 1)
    worker.render(request)                            # on this thread: every signal is direct
    assert steps == [0, 1, 2] and "RenderCancelled" in results[0].error
    worker.render(request)                            # a cancelled worker renders nothing more
    assert len(results) == 1


def test_the_toy_model_reports_every_denoising_step(qtbot, monkeypatch):
    """The real pipeline's callback_on_step_end, through engine.preview, reaches the pane's signal."""
    monkeypatch.setattr(preview_worker, "find_latest", lambda _d: None)
    worker = PreviewWorker()
    seen: list[tuple] = []
    worker.progressed.connect(lambda p: seen.append((p.stage, p.first, p.last, p.total, p.step, p.steps, p.base)))
    results = []
    worker.rendered.connect(results.append)
    worker.render(RenderRequest("sd1x", "sliderstudio:toy", "out", None, "a red circle on a blue background",
                                0, 3, 2.0, 0.0, (-1.0, 0.0, 1.0), "all", 1, threads=1))
    assert results[0].error is None, results[0].details
    assert seen == [("load", 0, 0, 0, 0, 0, False)] + [("render", 1, 1, 1, s, 3, True) for s in range(4)]
    images = results[0].images
    assert len(images) == 3 and images[0] is images[1] is images[2] and images[0].width() == 32
