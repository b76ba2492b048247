"""Issue #16 item 1: the training levers that keep an image-pair slider even, and their mechanics.

Fast checks: the fused step (positive, paired negative and anchor in ONE forward with a per-sample
strength) gives the same predictions, loss and gradients as separate forwards, for PEFT LoRA and
LyCORIS; the anchor weight; the cycle step mode in a real run; pairing of multi-intensity buckets;
the demo's intensity levels; the independent pixel metric. Slow: the demo's image slider meets the
targets on held-out prompts and seeds.
"""
import json

import numpy as np
import pytest
import torch

from sliderstudio.adapters import adapters
from sliderstudio.kernel.errors import ConfigError
from sliderstudio.adapters.lycoris_adapter import attach_lycoris
from sliderstudio.config.lycoris_config import parse_lycoris_config
from sliderstudio.engine.sampler import MicroBatch
from sliderstudio.adapters.slider_adapter import PeftSlider
from sliderstudio.engine.slider_step import SliderStep, StepData
from sliderstudio.adapters.targets import resolve_on_module
from sliderstudio.families.loading import load_pipeline
from sliderstudio.families.registry import get_family
from sliderstudio.toy.world import ShapeSpec, render
from tests.conftest import make_project


def peft_slider(path):
    family = get_family("sd1x")
    pipe = load_pipeline(family, str(path))
    unet = family.denoiser(pipe)
    adapters.attach_lora(unet, resolve_on_module(unet, family.presets["slider"]).module_names, 4, 4, seed=0)
    adapters.activate(unet, adapters.SLIDER)
    torch.manual_seed(0)
    for n, p in unet.named_parameters():
        if "lora_B" in n:
            p.data.normal_(0, 0.05)
    return family, pipe, unet, PeftSlider(unet, "unet")


def lycoris_slider(path, algo="lokr"):
    family = get_family("sd1x")
    pipe = load_pipeline(family, str(path))
    unet = family.denoiser(pipe)
    spec = parse_lycoris_config({"algo": algo, "linear_dim": 4, "linear_alpha": 4, "factor": 4}, "t.json")
    slider, _ = attach_lycoris(unet, "unet", spec, ("slider", family.presets["slider"]), 0)
    slider.activate()
    torch.manual_seed(0)
    for p in slider.parameters():
        p.data.add_(torch.randn_like(p) * 0.02)
    return family, pipe, unet, slider


def step_with(family, pipe, unet, adapter, preserve_weight=1.0, shapes=None):
    captions = ("a red circle on a blue background", "a green square on a white background")
    conds = dict(zip(captions, family.encode_prompts(pipe, list(captions))))
    g = torch.Generator().manual_seed(1)
    shapes = shapes or {}
    latents = {(b, i): torch.randn(*shapes.get(b, (4, 8, 8)), generator=g) for b in "pnz" for i in range(2)}
    data = StepData(latents=latents, captions={(b, i): captions[i] for b in "pnz" for i in range(2)},
                    conditioning=conds, image_size={b: 32 for b in "pnz"})
    return SliderStep(family, unet, family.noise_schedule(pipe), data, seed=0, device=torch.device("cpu"),
                      dtype=torch.float32, adapter=adapter, preserve_weight=preserve_weight)


CYCLE = [MicroBatch(3, 0, "p", "positive", 0.5, (0, 1), ("a", "b")),
         MicroBatch(4, 0, "n", "negative", -0.5, (0, 1), ("a", "b"), paired=True),
         MicroBatch(5, 0, "z", "neutral", -0.5, (0, 1), ("a", "b"), preserve=True)]


def grads_of(params, loss):
    for p in params:
        p.grad = None
    loss.backward()
    return [p.grad.clone() for p in params]


def separate_loss(step, mbs):
    return sum(step.loss(mb) for mb in mbs) / len(mbs)


@pytest.mark.parametrize("kind", ["peft", "lycoris"])
def test_fused_cycle_equals_separate_forwards(tiny_models, kind):
    family, pipe, unet, slider = (peft_slider if kind == "peft" else lycoris_slider)(tiny_models["sd1x"])
    step = step_with(family, pipe, unet, slider)
    params = slider.parameters()
    assert step.fusable(CYCLE)
    fused = step.fused_loss(CYCLE)
    fused_grads = grads_of(params, fused)
    separate = separate_loss(step, CYCLE)
    separate_grads = grads_of(params, separate)
    assert fused.item() > 0
    assert fused.item() == pytest.approx(separate.item(), rel=1e-5)
    assert any(g.abs().sum() > 0 for g in fused_grads)
    for a, b in zip(fused_grads, separate_grads):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-7)
    assert slider.multipliers() == [1.0] * len(slider.multipliers())  # nothing left scaled


def test_the_two_halves_of_one_forward_are_the_forwards_at_plus_and_minus_s(tiny_models):
    family, pipe, unet, slider = peft_slider(tiny_models["sd1x"])
    step = step_with(family, pipe, unet, slider)
    pos, neg = CYCLE[0], CYCLE[1]
    parts = [(*step.noised(mb), step.conds(mb)) for mb in (pos, neg)]
    assert torch.equal(parts[0][0] - parts[1][0], parts[0][0] - parts[1][0])
    with torch.no_grad():
        both = step._forward(parts, [0.5, 0.5, -0.5, -0.5], 32)
        alone = []
        for mb in (pos, neg):
            noisy, t, _, cond = step.inputs(mb)
            with slider.strength(mb.strength):
                alone.append(family.predict(unet, noisy, t, cond))
    assert torch.allclose(both[:2], alone[0], atol=1e-5) and torch.allclose(both[2:], alone[1], atol=1e-5)
    assert not torch.allclose(alone[0], alone[1], atol=1e-3)  # the halves really differ
    # a paired negative shares its positive's noise and timesteps
    assert torch.equal(step.noise_for(pos, torch.Size((2, 4, 8, 8)))[1], step.noise_for(neg, torch.Size((2, 4, 8, 8)))[1])


def test_not_fusable_falls_back(tiny_models):
    family, pipe, unet, slider = peft_slider(tiny_models["sd1x"])
    step = step_with(family, pipe, unet, slider, shapes={"z": (4, 8, 12)})
    assert step.fusable(CYCLE[:2]) and not step.fusable(CYCLE)  # the anchor's latents differ in shape
    assert not step.fusable(CYCLE[:1])
    slider.batched = False  # e.g. a DoRA-style LyCORIS adapter: not linear in its strength
    assert not step.fusable(CYCLE[:2])


def test_anchor_weight_scales_only_the_neutral_loss(tiny_models):
    family, pipe, unet, slider = peft_slider(tiny_models["sd1x"])
    one, three = step_with(family, pipe, unet, slider), step_with(family, pipe, unet, slider, preserve_weight=3.0)
    with torch.no_grad():
        assert three.loss(CYCLE[2]).item() == pytest.approx(3 * one.loss(CYCLE[2]).item(), rel=1e-6)
        assert torch.equal(three.loss(CYCLE[0]), one.loss(CYCLE[0]))
        expected = (one.loss(CYCLE[0]) + one.loss(CYCLE[1]) + 3 * one.loss(CYCLE[2])) / 3
        assert three.fused_loss(CYCLE).item() == pytest.approx(expected.item(), rel=1e-5)


def test_cycle_mode_trains_a_whole_cycle_per_step(tmp_path, tiny_models):
    from sliderstudio.engine.project import load_project
    from sliderstudio.engine.trainer import Trainer

    root = make_project(tmp_path / "p", tiny_models["sd1x"],
                        config={"max_train_steps": 4, "slider_step_mode": "cycle", "slider_preserve_weight": 0.5})
    Trainer(load_project(root)).run()
    rows = [json.loads(x) for x in (root / "output" / "metrics.jsonl").read_text().splitlines()]
    # 3 pairs and 2 neutral images: the epoch's third cycle has no neutral left, and the next
    # step opens at the next epoch's positive instead of borrowing it
    assert [row["buckets"] for row in rows] == [["pos", "neg", "neu"], ["pos", "neg", "neu"], ["pos", "neg"],
                                                 ["pos", "neg", "neu"]]
    for row in rows:
        assert row["strengths"][:2] == [0.5, -0.5] and all(abs(x) == 0.5 for x in row["strengths"][2:])


def test_bad_step_mode_and_anchor_weight_are_config_errors(tmp_path, tiny_models):
    from sliderstudio.engine.project import load_project

    for key, value in (("slider_step_mode", "both"), ("slider_preserve_weight", -1)):
        root = make_project(tmp_path / key, tiny_models["sd1x"], config={key: value})
        with pytest.raises(ConfigError) as err:
            load_project(root)
        assert key in str(err.value)


def test_pairs_match_by_intensity(tmp_path):
    from sliderstudio.engine.buckets import find_pairs, scan_project
    from sliderstudio.engine.project import load_project
    from sliderstudio.toy.demo_project import write_demo_project

    root = write_demo_project(tmp_path / "p", pairs=2, levels=(0.25, 0.5, 1.0))
    pairs = find_pairs(scan_project(load_project(root), check_images=False))
    assert pairs == {"bigger_025": "smaller_025", "bigger_050": "smaller_050", "bigger": "smaller"}
    strengths = {b["id"]: b["slider_strength"] for b in json.loads((root / "multidatabackend.json").read_text())}
    # the size concept's own mapping: intensity m at 0.6·m^0.7 (docs/TRAINING.md, "World 6")
    assert strengths == {"bigger_025": 0.2274, "smaller_025": -0.2274, "bigger_050": 0.3693, "smaller_050": -0.3693,
                         "bigger": 0.6, "smaller": -0.6, "neutral": 0.0}


def test_demo_levels_step_evenly_in_area(tmp_path):
    import random

    from sliderstudio.toy.demo_project import CONCEPTS, write_demo_project

    pairs = CONCEPTS["size"].make_pairs(random.Random(3), (0.5, 1.0))
    area = lambda s: s.size ** 2  # noqa: E731 - area is proportional to size² for one kind
    (half_big, half_small), (big, small) = pairs
    mid = (area(big) + area(small)) / 2
    assert area(half_big) == pytest.approx(mid + (area(big) - mid) / 2, rel=1e-3)
    assert area(half_small) == pytest.approx(mid - (mid - area(small)) / 2, rel=1e-3)
    assert {(p.kind, p.colour, p.background, p.cx, p.cy) for pair in pairs for p in pair} == \
        {(big.kind, big.colour, big.background, big.cx, big.cy)}
    with pytest.raises(ValueError, match="levels"):
        write_demo_project(tmp_path / "bad", levels=(0.5, 1.5))


def test_demo_size_widths_set_the_full_pairs_sizes(tmp_path):
    """The data lever of docs/TRAINING.md: the full pair's widths come from `size_widths` (default
    SMALL_WIDTHS / BIG_WIDTHS); only the size concept has them."""
    from PIL import Image

    from sliderstudio.toy.metrics import measure_image
    from sliderstudio.toy.demo_project import write_demo_project

    def full_pair_areas(root):
        big = [measure_image(Image.open(p)).area for p in sorted((root / "data" / "bigger").glob("*.png"))]
        small = [measure_image(Image.open(p)).area for p in sorted((root / "data" / "smaller").glob("*.png"))]
        return big, small

    default = write_demo_project(tmp_path / "d", pairs=3, levels=(1.0,))
    narrow = write_demo_project(tmp_path / "n", pairs=3, levels=(1.0,), size_widths=((0.38, 0.39), (0.6, 0.61)))
    (big_d, small_d), (big_n, small_n) = full_pair_areas(default), full_pair_areas(narrow)
    assert all(bd > bn for bd, bn in zip(big_d, big_n)) and all(sd < sn for sd, sn in zip(small_d, small_n))
    with pytest.raises(ValueError, match="size concept only"):
        write_demo_project(tmp_path / "b", concept="brightness", size_widths=((0.2, 0.3), (0.7, 0.8)))


def test_strength_power_maps_intensity_to_trained_strength():
    from sliderstudio.toy.demo_project import data_backends

    strengths = {b["id"]: b["slider_strength"] for b in data_backends("size", (0.25, 0.5, 1.0), full_strength=1.0,
                                                                          strength_power=1.5)}
    assert strengths == {"bigger_025": 0.125, "smaller_025": -0.125, "bigger_050": 0.3536, "smaller_050": -0.3536,
                         "bigger": 1.0, "smaller": -1.0, "neutral": 0.0}
    with pytest.raises(ValueError, match="strength_power"):
        data_backends("size", (0.5, 1.0), strength_power=0.0)


def test_pixel_metric_counts_the_shape_and_flags_noise():
    from sliderstudio.toy.sweep_check import pixel_measure, prompt_colours

    assert prompt_colours("a large red circle on a blue background") == ("red", "blue")
    small = pixel_measure(render(ShapeSpec("square", "red", "blue", 0.25), 32), "red", "blue")
    big = pixel_measure(render(ShapeSpec("square", "red", "blue", 0.75), 32), "red", "blue")
    assert small.area == pytest.approx(0.25 ** 2, abs=0.02) and big.area == pytest.approx(0.75 ** 2, abs=0.03)
    assert not small.collapsed and not big.collapsed
    noise = np.random.default_rng(0).integers(0, 256, (32, 32, 3)).astype(np.uint8)
    assert pixel_measure(noise, "red", "blue").collapsed
    empty = pixel_measure(render(ShapeSpec("square", "red", "blue", 0.25), 32), "green", "blue")
    assert empty.collapsed  # the pixels off the background are not the named shape colour


def assert_meets_the_targets(root) -> None:
    """Train the project at `root`, sweep the held-out check and assert every issue #16 target."""
    from sliderstudio.engine.preview import PreviewRenderer
    from sliderstudio.engine.project import load_project
    from sliderstudio.engine.trainer import Trainer
    from sliderstudio.toy.sweep_check import check_slider

    adapter = Trainer(load_project(root)).run()
    result = check_slider(PreviewRenderer(get_family("sd1x"), "sliderstudio:toy", adapter),
                          PreviewRenderer(get_family("sd1x"), "sliderstudio:toy"))
    figures, misses = result.figures(), result.misses()
    assert misses == [], figures
    assert figures["collapsed"] == 0 and figures["name_changes"] == 0 and figures["base_identical"]
    assert figures["range"] >= 0.35 and figures["smoothness"] <= 0.3 and figures["centroid"] <= 0.05


@pytest.mark.slow
@pytest.mark.parametrize("train_seed", [0, 3])
def test_demo_image_slider_meets_the_targets(tmp_path, train_seed):
    """World 6, the demo's settings and data (docs/TRAINING.md, "World 6"): every target on each of four
    training seeds, measured smoothness 0.259 / 0.208, range 0.365 / 0.363, drift 0.037 / 0.036 for seeds
    0 / 3. Seed 3 collapsed an image at -1 and missed smoothness (0.312) with the 200 steps at lr 0.003 these
    settings replaced."""
    from sliderstudio.toy.demo_project import write_demo_project

    assert_meets_the_targets(write_demo_project(tmp_path / "demo", config={
        "validation_steps": 0, "checkpointing_steps": 0, "seed": train_seed}))


@pytest.mark.slow
@pytest.mark.parametrize("train_seed", [1, 2])
def test_demo_text_slider_meets_the_targets(tmp_path, train_seed):
    """η 2.75 / 1.75 on the family's ordinary LoRA targets (docs/TRAINING.md, "...cross-attention for text
    pairs"): every target on each of six training seeds, measured smoothness 0.262 / 0.261, range 0.381 /
    0.360, drift 0.032 / 0.030 for seeds 1 / 2. Seed 1 collapsed the red triangle on black at -1 with
    η 2.75 / 2; seed 2 reached least far with every setting."""
    from sliderstudio.toy.text_demo import write_text_project

    assert_meets_the_targets(write_text_project(tmp_path / "text", seed=train_seed))


def test_strength_zero_is_compared_at_the_same_batch_position():
    """A stand-in renderer whose images depend on their position in the batch (as the toy model's do by
    1/255): the check must compare the sweep's strength 0 with the base image at that same position."""
    import numpy as np

    from sliderstudio.toy.sweep_check import STRENGTHS, check_slider

    class ByPosition:
        def __init__(self, slider: bool):
            self.slider = slider

        def render(self, prompt, seed, strengths, steps, guidance):
            images = []
            for i, s in enumerate(strengths):
                size = 0.4 + 0.2 * s if self.slider else 0.4
                arr = np.asarray(render(ShapeSpec("square", "red", "blue", size), 32)).copy()
                arr[0, 0, 0] = min(255, int(arr[0, 0, 0]) + i)   # position-dependent rounding
                images.append(arr)
            return images

    result = check_slider(ByPosition(True), ByPosition(False), prompts=("a red square on a blue background",),
                          seeds=(1,), strengths=STRENGTHS, identity_sweeps=1)
    assert result.base_identical is True
    assert result.sweeps[0].metrics.spearman > 0.99
