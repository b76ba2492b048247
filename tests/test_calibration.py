"""Calibrated strength (issue #16 item 3) and the collapse detector (item 5).

The collapse detector is checked on real collapsed renders of the toy model (tests/data/collapse:
the demo's noise image at -1, a slider pushed to -5 and +8), on constructed ones (uniform noise,
a blank image, two shapes) and on good images. The range finder is checked on constructed
responses whose answer is known, then end to end: a short toy slider is trained, its adapter (and
its checkpoint's) carries the calibration, and the recommended range is re-measured independently.
"""
from __future__ import annotations

import json
import math
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sliderstudio.engine.calibration import (
    Sweep, capture_latents, find_range, measure, read_calibration, recommended_range, split_latents,
)
from sliderstudio.engine.response_measures import breakdown_reason, image_stats
from sliderstudio.families.registry import get_family
from sliderstudio.toy.metrics import TOY_METER, measure_image, sweep_metrics
from sliderstudio.toy.world import ShapeSpec, random_specs, render

DATA = Path(__file__).parent / "data" / "collapse"
STRENGTHS = [-3.0, -2.0, -1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0, 3.0]


def _noise(seed: int = 0, px: int = 32) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (px, px, 3)).astype(np.uint8))


def _two_shapes() -> Image.Image:
    """A red circle and a yellow square on one blue background: two shapes where one is asked for."""
    a = np.asarray(render(ShapeSpec("circle", "red", "blue", 0.3, 0.3, 0.3), 64)).copy()
    b = np.asarray(render(ShapeSpec("square", "yellow", "blue", 0.3, 0.7, 0.7), 64))
    second = np.linalg.norm(b.astype(float) - a[0, 0].astype(float), axis=2) > 40
    a[second] = b[second]
    return Image.fromarray(a)


# ----------------------------------------------------------------------------------- collapse

@pytest.mark.parametrize("name", ["noise_green_triangle_seed1_-1.png", "noise_red_circle_seed0_-5.png",
                                  "broken_yellow_square_seed0_+8.png"])
def test_real_collapsed_renders_are_collapsed(name):
    assert measure_image(Image.open(DATA / name)).collapsed == "noise"


@pytest.mark.parametrize("image, reason", [
    (_noise(), "noise"),
    (Image.new("RGB", (32, 32), (128, 128, 128)), "blank"),
    (_two_shapes(), "mess"),
])
def test_constructed_collapses_are_named(image, reason):
    assert measure_image(image).collapsed == reason


@pytest.mark.parametrize("name", ["good_green_triangle_seed1_0.png", "good_tiny_triangle_seed0_-1.png",
                                  "good_big_square_seed1_+1.png"])
def test_good_renders_are_not_collapsed(name):
    m = measure_image(Image.open(DATA / name))
    assert m.collapsed is None and m.blob_share == 1.0


def test_ground_truth_shapes_never_collapse():
    specs = random_specs(7, 60)
    assert [measure_image(render(s, 32)).collapsed for s in specs] == [None] * 60


def test_a_sweep_lists_its_collapsed_strengths():
    good = [render(ShapeSpec("circle", "red", "blue", size), 32) for size in (0.3, 0.4, 0.5)]
    sw = sweep_metrics([-1.0, 0.0, 0.5, 1.0], [_noise(), *good], "area")
    assert sw.collapsed == [(-1.0, "noise")]


# ----------------------------------------------------------------------------------- generic measure

def test_breakdown_check_on_renders():
    ref = image_stats(Image.open(DATA / "good_green_triangle_seed1_0.png"))
    assert breakdown_reason(image_stats(Image.open(DATA / "noise_green_triangle_seed1_-1.png")), ref) == "noise"
    assert breakdown_reason(image_stats(Image.open(DATA / "good_green_triangle_seed1_0.png")), ref) is None
    assert breakdown_reason(image_stats(Image.new("RGB", (32, 32), (240, 240, 240))), ref) == "flat"


# ----------------------------------------------------------------------------------- range finder

def _responses(values: list[float]) -> np.ndarray:
    return np.array([values])


def test_range_stops_where_the_response_saturates():
    # rises evenly to +-1.5, then flat: saturates at +-2
    r = [-1.5, -1.5, -1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 1.52, 1.52]
    lo, hi, sat, brk = find_range(STRENGTHS, _responses(r), np.zeros((1, 11), bool))
    assert (lo, hi) == (-1.5, 1.5)
    assert sat == {"negative": -2.0, "positive": 2.0} and brk == {"negative": None, "positive": None}


def test_range_stops_before_a_broken_render_and_a_reversal():
    r = [-2.0, -1.6, -1.4, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 1.2, 2.0]  # turns back at +2
    broken = np.zeros((1, 11), bool)
    broken[0, STRENGTHS.index(-1.5)] = True
    lo, hi, sat, brk = find_range(STRENGTHS, _responses(r), broken)
    assert (lo, hi) == (-1.0, 1.5)
    assert brk["negative"] == -1.5 and sat["positive"] == 2.0


def test_one_sweep_going_backwards_ends_the_range():
    good = [-3.0, -2.0, -1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0, 3.0]
    bad = list(good)
    bad[STRENGTHS.index(1.0)] = 0.2  # this sweep falls from 0.5 to 0.2 at +1
    lo, hi, _, _ = find_range(STRENGTHS, np.array([good, bad]), np.zeros((2, 11), bool))
    assert (lo, hi) == (-3.0, 0.5)


def test_a_sweep_that_dips_by_a_hair_ends_the_range():
    """Measured on the world-6 demo slider: one sweep's area went 0.678 → 0.674 from +1.5 to +2 while the
    other kept growing. The range promises a rising response, so it ends before the dip."""
    good = [-3.0, -2.0, -1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0, 3.0]
    flat = list(good)
    flat[STRENGTHS.index(2.0)] = flat[STRENGTHS.index(1.5)] - 0.004
    lo, hi, sat, _ = find_range(STRENGTHS, np.array([good, flat]), np.zeros((2, 11), bool))
    assert (lo, hi) == (-3.0, 1.5) and sat["positive"] == 2.0


def test_a_slider_that_does_nothing_gets_no_range():
    lo, hi, sat, _ = find_range(STRENGTHS, np.zeros((1, 11)), np.zeros((1, 11), bool))
    assert (lo, hi) == (0.0, 0.0) and sat == {"negative": -0.5, "positive": 0.5}


# ----------------------------------------------------------------------------------- measure()

def _toy_sweep(prompt: str, seed: int, grow: float = 1.0, noise_at: float | None = None) -> Sweep:
    """A size slider drawn exactly: area rises with the strength (times `grow`), noise at `noise_at`."""
    images = []
    for s in STRENGTHS:
        area = 0.2 + grow * 0.1 * max(min(s, 1.5), -1.5)
        size = math.sqrt(max(area, 0.01) / (math.pi / 4))
        images.append(_noise(seed) if s == noise_at else render(ShapeSpec("circle", "red", "blue", size), 32))
    return Sweep(prompt, seed, list(STRENGTHS), images)


def test_toy_measure_finds_range_attribute_and_polarity():
    sweeps = [_toy_sweep("a red circle", 0), _toy_sweep("a red circle", 1, noise_at=-3.0)]
    cal = measure(sweeps, meter=TOY_METER, expected={"area": 0.25, "brightness": 0.0, "hue": 0.0})
    assert cal.measure == "attribute:area"
    assert cal.recommended == (-1.5, 1.5)
    assert cal.saturates["positive"] == 2.0 and cal.breaks["negative"] is None  # -2 saturates before -3 breaks
    assert cal.polarity == "positive" and cal.evidence["attribute"]["slider_moves"] == 1.0
    point = {p.strength: p for p in cal.curve}
    assert point[-3.0].broken == 1 and point[-3.0].reasons == ["noise"] and point[0.0].pixel == 0.0
    assert cal.images == 22 and [sw["seed"] for sw in cal.sweeps] == [0, 1]


def test_toy_measure_reversed_slider():
    cal = measure([_toy_sweep("p", 0, grow=-1.0)], meter=TOY_METER, expected={"area": 0.25})
    assert cal.polarity == "reversed" and cal.recommended == (-1.5, 1.5)


def test_generic_measure_uses_latents_and_finds_the_break():
    """Distances grow with |s| (a blend towards another image), noise at +3: the range ends at +2."""
    a = np.asarray(render(ShapeSpec("circle", "red", "blue", 0.5), 32), float)
    b = np.asarray(render(ShapeSpec("square", "red", "blue", 0.7), 32), float)
    images, latents = [], []
    for s in STRENGTHS:
        t = min(abs(s), 2.0) / 3.0
        images.append(_noise() if s == 3.0 else Image.fromarray(((1 - t) * a + t * b).astype(np.uint8)))
        latents.append(np.full((4, 4, 4), 1.0) + min(abs(s), 2.0))
    cal = measure([Sweep("p", 0, list(STRENGTHS), images, latents)],
                  loss_evidence={"margin": -0.4})
    assert cal.measure == "latent distance"
    assert cal.breaks["positive"] == 3.0 and cal.curve[-1].reasons == ["noise"]
    assert cal.recommended == (-2.0, 2.0) and cal.saturates["negative"] == -3.0  # flat past |s| = 2
    assert cal.polarity == "reversed"


def test_capture_latents_records_and_restores():
    class Vae(torch.nn.Module):
        def decode(self, z, scale=1.0):
            return z * scale

    pipe = type("Pipe", (), {})()
    pipe.vae = Vae()
    with capture_latents(pipe) as record:
        pipe.vae.decode(torch.ones(2, 4, 3, 3), scale=2.0)
        pipe.vae.decode(torch.zeros(1, 4, 3, 3))
    assert "decode" not in vars(pipe.vae)  # the class method is back
    latents = split_latents(record, 3)
    assert len(latents) == 3 and latents[0].shape == (4, 3, 3) and latents[2].sum() == 0
    assert split_latents(record, 2) is None
    with capture_latents(object()) as nothing:
        pass
    assert nothing == []


# ----------------------------------------------------------------------------------- end to end

@contextmanager
def one_thread():
    """One torch thread for the toy model's tiny matrices: on a busy 2-core machine two threads spin
    against each other (measured: 120 toy steps took 44 s with one thread, over 10x that with two)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    """A short toy size slider with a checkpoint half way; calibration renders at 10 steps."""
    from sliderstudio.kernel.events import Log
    from sliderstudio.engine.project import load_project
    from sliderstudio.engine.trainer import Trainer
    from sliderstudio.toy.demo_project import write_demo_project

    root = write_demo_project(tmp_path_factory.mktemp("cal") / "demo", max_train_steps=120)
    cfg = json.loads((root / "config.json").read_text())
    # validation on (at the end only): checkpoints are calibrated while validation is on; a third of the
    # demo's 400 steps, so at the rate the demo had for 200 (0.003) to reach a working slider
    cfg.update(checkpointing_steps=60, validation_steps=120, slider_calibration_steps=10, learning_rate=0.003)
    (root / "config.json").write_text(json.dumps(cfg))
    logs: list[str] = []
    with one_thread():
        adapter = Trainer(load_project(root), lambda e: logs.append(e.message) if isinstance(e, Log) else None).run()
    return root, adapter, logs


def test_trained_slider_carries_its_calibration(toy_run):
    root, adapter, logs = toy_run
    cal = read_calibration(adapter)
    assert cal is not None and cal["step"] == 120 and cal["measure"] == "attribute:area"
    assert cal["polarity"] == "positive"  # +1 grows the shape, as the 'bigger' bucket shows
    assert cal["evidence"]["loss"]["margin"] > 0  # and the model's own loss agrees
    lo, hi = recommended_range(adapter)
    assert (lo, hi) == tuple(cal["recommended"]) and lo <= -0.5 and hi >= 0.5
    assert [p["strength"] for p in cal["curve"]] == STRENGTHS and cal["images"] == 22
    assert sum("calibration (attribute:area): recommended range" in m for m in logs) == 2  # checkpoint + final
    checkpoint = next((root / "output" / "checkpoints").glob("*/pytorch_lora_weights.safetensors"))
    assert read_calibration(checkpoint)["step"] == 60
    comfy = adapter.with_name("pytorch_lora_weights_comfyui.safetensors")
    assert recommended_range(comfy) == (lo, hi)  # the ComfyUI file carries the keys too


def test_recommended_range_is_monotone_when_measured_again(toy_run):
    """Re-measured through another path (the preview's renderer on the saved file) at strengths the
    calibration never rendered: the area rises over the whole recommended range, nothing collapses."""
    from sliderstudio.engine.preview import PreviewRenderer
    from sliderstudio.families.registry import get_family

    _, adapter, _ = toy_run
    cal = read_calibration(adapter)
    lo, hi = recommended_range(adapter)
    points = sorted({lo, 0.75 * lo, 0.25 * lo, 0.0, 0.25 * hi, 0.75 * hi, hi})
    renderer = PreviewRenderer(get_family("sd1x"), "sliderstudio:toy", adapter)
    with one_thread():
        for prompt in cal["prompts"]:
            images = renderer.render(prompt, cal["seeds"][0], points, 10, 2.0)
            sw = sweep_metrics(points, images, "area")
            assert sw.spearman == 1.0 and sw.collapsed == [], (prompt, sw.values, sw.collapsed)


def test_calibration_off_and_without_prompts(tmp_path, tiny_models):
    """slider_calibration false writes no keys; a tiny model with prompts is calibrated by distances."""
    from sliderstudio.adapters.adapter_io import read_metadata
    from sliderstudio.engine.project import load_project
    from sliderstudio.engine.trainer import Trainer
    from tests.conftest import make_project

    base = {"max_train_steps": 2, "validation_num_inference_steps": 2, "user_prompt_library": "prompts.json",
            "slider_calibration_strengths": [-2, -1, 1, 2]}
    on = make_project(tmp_path / "on", tiny_models["sd1x"], config=base, prompts={"p": "a red square"})
    off = make_project(tmp_path / "off", tiny_models["sd1x"], prompts={"p": "a red square"},
                       config={**base, "slider_calibration": False})
    with one_thread():
        meta_on = read_metadata(Trainer(load_project(on)).run())
        meta_off = read_metadata(Trainer(load_project(off)).run())
    assert "calibration" not in meta_off and "recommended_range" not in meta_off
    cal = meta_on["calibration"]
    assert cal["measure"] == "latent distance" and [p["strength"] for p in cal["curve"]] == [-2, -1, 0, 1, 2]
    assert cal["curve"][2]["latent"] == 0.0 and cal["evidence"]["loss"]["batches"][0] >= 1
    assert meta_on["polarity"] in ("positive", "reversed", "unclear")


def test_calibration_finds_where_the_issue_slider_breaks():
    """The demo's size slider of issue #16 (400 steps, before calibration existed, trained on the
    first-run toy model): on the shipped (world-6) toy model its cyan circle on white turns to noise
    at -3 with seed 0 and holds down to -2.5 with both seeds (on the world-5 model it broke at -2
    already, on the world-2 model at -1.5). Calibrated on those two sweeps, the range stops at -2.5
    and names -3 as where it breaks."""
    from sliderstudio.engine.calibration_run import Settings, calibrate_file

    adapter = DATA / "demo_size_slider_400.safetensors"
    assert read_calibration(adapter) is None and recommended_range(adapter) is None
    settings = Settings([-3.0, -2.5, -2.0, -1.5, -1.0, -0.5, 0.0, 0.5, 1.0], ["a cyan circle on a white background"],
                        [0, 1], 20, 2.0)
    with one_thread():
        cal = calibrate_file(adapter, get_family("sd1x"), "sliderstudio:toy", settings)
    assert cal.recommended == (-2.5, 1.0)
    assert cal.breaks == {"negative": -3.0, "positive": None}
    assert [sw["broken"][:2] for sw in cal.sweeps] == [["noise", None], [None, None]]  # -3 broken once; -2.5 fine
    assert all(b is None for sw in cal.sweeps for b in sw["broken"][1:])
    assert cal.measure == "attribute:area" and cal.images == 18


def test_batched_sweeps_render_the_same_pixels():
    """Calibration renders at most `batch` strengths per call; every call starts from the same seeded
    noise, so the split changes no pixel (checked on the toy model) and only bounds the memory."""
    from sliderstudio.engine.calibration import render_sweeps
    from sliderstudio.engine.preview import PreviewRenderer

    renderer = PreviewRenderer(get_family("sd1x"), "sliderstudio:toy", DATA / "demo_size_slider_400.safetensors")
    calls: list[list[float]] = []

    def render(prompt, seed, strengths):
        calls.append(strengths)
        return renderer.render(prompt, seed, strengths, 4, 2.0)

    strengths = [-1.0, -0.5, 0.5, 1.0, 2.0]
    with one_thread():
        whole = render_sweeps(render, ["a red circle on a blue background"], [3], strengths, renderer.pipe)
        split = render_sweeps(render, ["a red circle on a blue background"], [3], strengths, renderer.pipe, batch=4)
    assert calls == [[-1.0, -0.5, 0.0, 0.5, 1.0, 2.0], [-1.0, -0.5, 0.0, 0.5], [1.0, 2.0]]
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(whole[0].images, split[0].images))
    assert len(split[0].latents) == 6 and np.array_equal(whole[0].latents[5], split[0].latents[5])


def test_calibration_out_of_memory_only_warns(tmp_path, monkeypatch):
    """The adapter is the run's result: a calibration that runs out of memory is skipped with a warning."""
    from sliderstudio.engine import calibration_run
    from sliderstudio.engine.project import load_project
    from sliderstudio.toy.demo_project import write_demo_project

    project = load_project(write_demo_project(tmp_path / "demo", max_train_steps=1))

    def out_of_memory(*_args):
        raise torch.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(calibration_run, "_calibrate_live", out_of_memory)
    logs: list[tuple[str, str]] = []
    result = calibration_run.calibrate_session(None, project, 1, lambda msg, level="info": logs.append((msg, level)))
    assert result == {}
    assert logs == [("calibration ran out of memory (6 images per render call); the adapter is saved without it: "
                     "lower slider_calibration_batch or turn slider_calibration off", "warning")]


@pytest.mark.parametrize("value, expected", [
    ([-1.5, 2.0], (-1.5, 2.0)), ([0.0, 0.0], None), ([0.5, 2.0], None), (["a", 1], None), ([1.0], None),
])
def test_recommended_range_reads_only_a_usable_dial_range(tmp_path, value, expected):
    from safetensors.torch import save_file

    path = tmp_path / "a.safetensors"
    save_file({"unet.x.lora_A.weight": torch.zeros(1, 1)}, str(path),
              metadata={"sliderstudio.recommended_range": json.dumps(value)})
    assert recommended_range(path) == expected
    assert recommended_range(tmp_path / "missing.safetensors") is None
    assert recommended_range(DATA / "good_tiny_triangle_seed0_-1.png") is None  # not safetensors
