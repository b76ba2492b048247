"""Text-pair sliders (SPEC §2.6): the target math by value, the sampler cycle, text-only and mixed runs, bad input."""
import json

import pytest
import torch
import torch.nn.functional as F

from conftest import make_project
from sliderstudio.cli import main
from sliderstudio.adapters.adapter_io import read_metadata
from sliderstudio.config.config import TrainConfig
from sliderstudio.engine.sampler import SamplerBucket, SliderSampler
from sliderstudio.config.text_pairs import TextPair
from sliderstudio.engine.sampler import text_sampler_entries
from sliderstudio.engine.text_slider import PairData, TextSlider, text_target

pytestmark = pytest.mark.filterwarnings("ignore")
ADAPTER = "pytorch_lora_weights.safetensors"
PAIR = {"positive": "a big red circle", "negative": "a small red circle", "neutral": "a red circle",
        "anchors": ["a blue square"], "guidance": 2.0, "samples": 3}


def test_target_moves_the_neutral_prediction_along_positive_minus_negative():
    neutral, pos, neg = torch.tensor([1.0, 2.0]), torch.tensor([3.0, 0.0]), torch.tensor([1.0, 1.0])
    assert torch.equal(text_target(neutral, pos, neg, 0.5, 2.0), torch.tensor([3.0, 1.0]))
    assert torch.equal(text_target(neutral, pos, neg, -0.5, 2.0), torch.tensor([-1.0, 3.0]))  # mirrored
    assert torch.equal(text_target(neutral, pos, neg, 0.0, 2.0), neutral)


def test_sampler_cycles_text_pairs_with_image_buckets_and_pairs_the_mirrored_batch():
    entries, pair_map = text_sampler_entries([TextPair(id="size", positive="a big x", negative="a small x",
                                                       samples=2, strength=0.75)])
    image = [SamplerBucket("pos", "positive", 0.5, 1.0, 0, ("a", "b")),
             SamplerBucket("neg", "negative", -0.5, 1.0, 0, ("a", "b")),
             SamplerBucket("neu", "neutral", 0.0, 1.0, 0, ("n",))]
    sampler = SliderSampler(image + entries, seed=3, pair_map={"pos": "neg", **pair_map})
    order = sampler.take(sampler.epoch_length())
    ids = [mb.bucket_id for mb in order]
    assert sorted(set(ids)) == ["neg", "neu", "pos", "text:size+", "text:size-"]
    assert ids.count("text:size+") == ids.count("text:size-") == 2
    for i, mb in enumerate(order):
        if mb.bucket_id == "text:size-":   # right after its + batch: same render, same noise (paired)
            prev = order[i - 1]
            assert prev.bucket_id == "text:size+" and mb.paired and mb.items == prev.items
            assert mb.strength == -0.75 and prev.strength == 0.75
    assert [mb.role for mb in order[:3]] == ["positive", "negative", "neutral"]
    assert 0.75 in sampler.magnitudes          # neutral batches also preserve at the text pair's strength


@pytest.fixture(scope="module")
def tiny_step(tiny_models):
    """A real SliderStep on the tiny SD 1.x UNet with a LoRA slider, for value checks of the text loss."""
    from sliderstudio.adapters import adapters
    from sliderstudio.adapters.slider_adapter import PeftSlider
    from sliderstudio.engine.slider_step import SliderStep, StepData
    from sliderstudio.families.loading import load_pipeline
    from sliderstudio.families.registry import get_family

    family = get_family("sd1x")
    pipe = load_pipeline(family, str(tiny_models["sd1x"]), torch.float32, "cpu")
    unet = family.denoiser(pipe)
    config = adapters.attach_lora(unet, ["attn1.to_q", "attn1.to_v", "conv_in"], 2, 2.0, 0.0, adapters.SLIDER, 0)
    adapter = PeftSlider(unet, "unet", config, family.pipeline_class)
    adapter.activate([])
    step = SliderStep(family, unet, family.noise_schedule(pipe), StepData({}, {}, {}, {}), 0,
                      torch.device("cpu"), torch.float32, adapter=adapter)
    prompts = ["a red circle", "a big red circle", "a small red circle", "a blue square"]
    conds = dict(zip(prompts, family.encode_prompts(pipe, prompts)))
    pair = TextPair(id="p", positive=prompts[1], negative=prompts[2], neutral=prompts[0], anchors=[prompts[3]],
                    guidance=3.0, negative_guidance=1.5, anchor_weight=0.5, samples=2)
    renders = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    data = PairData(pair, conds[prompts[0]], conds[prompts[1]], conds[prompts[2]], [conds[prompts[3]]], renders, 64)
    step.text = TextSlider({"text:p+": data, "text:p-": data})
    return step, data


def _predictions(step, data, mb, strength):
    """The four predictions computed independently, one prompt per forward."""
    latents = data.renders[list(mb.items)]
    noise, t = step.noise_for(mb, latents.shape)
    noisy, _ = step.family.noisy_and_target(step.schedule, latents, noise, t)
    out = {}
    for name, cond in (("n", data.neutral), ("p", data.positive), ("m", data.negative), ("a", data.anchors[0])):
        batch = step.family.collate([cond] * len(mb.items), step.device, step.dtype, 64)
        with torch.no_grad(), step.adapter.strength(strength):
            out[name] = step.family.predict(step.denoiser, noisy, t, batch).float()
    return out


def test_text_loss_by_value_on_a_tiny_model(tiny_step):
    from sliderstudio.engine.sampler import MicroBatch

    step, data = tiny_step
    plus = MicroBatch(4, 0, "text:p+", "positive", 1.0, (0, 1), ("render000", "render001"))
    minus = MicroBatch(5, 0, "text:p-", "negative", -1.0, (0, 1), ("render000", "render001"), paired=True)
    with torch.no_grad():
        for p in step.adapter.parameters():     # a slider that does something
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    for mb in (plus, minus):
        base = _predictions(step, data, mb, 0.0)
        slid = _predictions(step, data, mb, mb.strength)
        eta = 3.0 if mb.strength > 0 else 1.5                     # negative_guidance for the − direction
        target = base["n"] + mb.strength * eta * (base["p"] - base["m"])
        expected = F.mse_loss(slid["n"], target) + 0.5 * F.mse_loss(slid["a"], base["a"])
        got = step.loss(mb)
        assert got.requires_grad
        assert torch.allclose(got.detach(), expected, rtol=1e-4, atol=1e-7), (float(got), float(expected))
    # the mirrored batch sees the same noisy input as the one it follows
    assert torch.equal(step.noise_for(minus, data.renders[:2].shape)[0], step.noise_for(plus, data.renders[:2].shape)[0])


def test_text_loss_gradient_reaches_only_the_slider(tiny_step):
    from sliderstudio.engine.sampler import MicroBatch

    step, _ = tiny_step
    step.denoiser.zero_grad(set_to_none=True)
    step.loss(MicroBatch(0, 0, "text:p+", "positive", 1.0, (1,), ("render001",))).backward()
    with_grad = {n for n, p in step.denoiser.named_parameters() if p.grad is not None}
    assert with_grad and all("lora_" in n for n in with_grad)


def _text_project(tmp_path, tiny_models, buckets=None, pair=None, **config):
    return make_project(tmp_path / "proj", tiny_models["sd1x"], buckets=buckets,
                        config={"slider_text_pairs": [pair or PAIR], **config})


def test_text_only_run_trains_and_saves_an_adapter_that_loads(tmp_path, tiny_models, capsys):
    from sliderstudio.engine.preview import PreviewRenderer
    from sliderstudio.families.registry import get_family

    root = _text_project(tmp_path, tiny_models, buckets=[])
    assert main(["train", "--config", str(root)]) == 0, capsys.readouterr().err
    err = capsys.readouterr().err
    assert "text pairs: 1 (text-1), 3 base renders" in err
    rows = [json.loads(line) for line in (root / "output" / "metrics.jsonl").read_text().splitlines()]
    assert [r["buckets"] for r in rows] == [["text:text-1+"], ["text:text-1-"]] * 3
    assert [r["strengths"] for r in rows] == [[1.0], [-1.0]] * 3
    adapter = root / "output" / ADAPTER
    meta = read_metadata(adapter)
    assert meta["text_pairs"] == [{"id": "text-1", "positive": PAIR["positive"], "negative": PAIR["negative"],
                                   "neutral": PAIR["neutral"], "anchors": PAIR["anchors"], "guidance": 2.0,
                                   "strength": 1.0}]
    renderer = PreviewRenderer(get_family("sd1x"), str(tiny_models["sd1x"]), adapter)
    base = PreviewRenderer(get_family("sd1x"), str(tiny_models["sd1x"]))
    a = renderer.render("a red circle", 0, [0.0, 1.0], 2, 1.0)
    b = base.render("a red circle", 0, [0.0], 2, 1.0)
    assert list(a[0].getdata()) == list(b[0].getdata())      # strength 0 is the base model


def test_mixed_run_cycles_image_buckets_and_the_text_pair(tmp_path, tiny_models, capsys):
    root = _text_project(tmp_path, tiny_models, max_train_steps=10)
    assert main(["train", "--config", str(root)]) == 0, capsys.readouterr().err
    rows = [json.loads(line) for line in (root / "output" / "metrics.jsonl").read_text().splitlines()]
    used = [r["buckets"][0] for r in rows]
    assert {"pos", "neg", "neu", "text:text-1+", "text:text-1-"} <= set(used)
    assert all(r["loss"] == r["loss"] for r in rows)                       # no NaN
    assert (root / "output" / ADAPTER).exists()
    assert main(["plan", "--config", str(root), "--batches", "6"]) == 0
    plan = capsys.readouterr().out
    assert "text:text-1+" in plan and "text:text-1-" in plan


@pytest.mark.parametrize("pair, key, fragment", [
    ({**PAIR, "guidance": -1}, "slider_text_pairs.0.guidance", "greater than 0"),
    ({**PAIR, "negative": PAIR["positive"]}, "slider_text_pairs.0", "positive and negative are the same prompt"),
    ({**PAIR, "positive": ""}, "slider_text_pairs.0.positive", "at least 1 character"),
    ({**PAIR, "strenght": 1.0}, "slider_text_pairs.0.strenght", "Extra inputs are not permitted"),
    ({**PAIR, "samples": 0}, "slider_text_pairs.0.samples", "greater than or equal to 1"),
    ({"negative": "a small red circle"}, "slider_text_pairs.0.positive", "Field required"),
])
def test_bad_text_pair_exits_2_naming_the_key(tmp_path, tiny_models, capsys, pair, key, fragment):
    root = _text_project(tmp_path, tiny_models, buckets=[], pair=pair)
    assert main(["train", "--config", str(root)]) == 2
    err = capsys.readouterr().err
    assert key in err and fragment in err and "config.json" in err
    assert not (root / "output" / ADAPTER).exists() and not (root / "output" / "metrics.jsonl").exists()


def test_duplicate_pair_ids_and_no_data_at_all_exit_2(tmp_path, tiny_models, capsys):
    root = make_project(tmp_path / "dup", tiny_models["sd1x"], buckets=[],
                        config={"slider_text_pairs": [{**PAIR, "id": "x"}, {**PAIR, "id": "x"}]})
    assert main(["train", "--config", str(root)]) == 2
    assert "slider_text_pairs[1]: the name 'x' is already used" in capsys.readouterr().err
    root = make_project(tmp_path / "none", tiny_models["sd1x"], buckets=[],
                        config={"slider_text_pairs": [{**PAIR, "disabled": True}]})
    assert main(["train", "--config", str(root)]) == 2
    assert "no enabled image buckets (and no text pairs in slider_text_pairs)" in capsys.readouterr().err


def test_text_pairs_round_trip_through_the_config():
    cfg = TrainConfig(slider_text_pairs=[PAIR])
    again = TrainConfig.model_validate(cfg.model_dump(exclude_defaults=True))
    assert again.slider_text_pairs == cfg.slider_text_pairs and again.slider_text_pairs[0].guidance == 2.0


def test_text_polarity_margin_by_value_and_its_sign_follows_the_slider(tiny_step):
    """The four losses recomputed one prompt per forward; negating every lora_B (strength s now acts
    as −s) gives exactly the opposite margin and verdict; a slider that does nothing is 'unclear'."""
    from sliderstudio.engine.calibration import decide_polarity
    from sliderstudio.engine.text_polarity import text_batches, text_loss_polarity
    from sliderstudio.families.base import Conditioning

    step, shared = tiny_step
    # the tiny random text encoder gives these prompts one embedding (positive − negative = 0 exactly), so
    # the positive prompt here is the neutral embedding moved by seeded noise: a concept the UNet sees
    moved = Conditioning({k: v + torch.randn(v.shape, generator=torch.Generator().manual_seed(0))
                          for k, v in shared.neutral.kwargs.items()})
    data = PairData(shared.pair, shared.neutral, moved, shared.neutral, shared.anchors, shared.renders, 64)
    entries, pair_map = text_sampler_entries([TextPair(id="p", positive="x big", negative="x small", samples=2)])
    sampler = SliderSampler(entries, seed=0, pair_map=pair_map)
    lora_b = [p for n, p in step.denoiser.named_parameters() if "lora_B" in n]
    saved, text = [p.detach().clone() for p in lora_b], step.text
    step.text = TextSlider({"text:p+": data, "text:p-": data})
    try:
        with torch.no_grad():
            for p in lora_b:     # a slider that does something
                p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
        got = text_loss_polarity(step, sampler)
        batches = text_batches(step, sampler)
        assert got["kind"] == "text pairs" and got["batches"] == [len(batches)] * 2 and len(batches) == 4
        expected = dict.fromkeys(("positive_at_plus", "positive_at_minus", "negative_at_plus", "negative_at_minus"), 0.0)
        for mb in batches:
            base = _predictions(step, data, mb, 0.0)
            targets = {"positive": base["n"] + 3.0 * (base["p"] - base["m"]),     # η = 3 for +1
                       "negative": base["n"] - 1.5 * (base["p"] - base["m"])}     # negative_guidance 1.5 for −1
            for name, strength in (("plus", 1.0), ("minus", -1.0)):
                pred = _predictions(step, data, mb, strength)["n"]
                for side, target in targets.items():
                    expected[f"{side}_at_{name}"] += float(F.mse_loss(pred, target)) / len(batches)
        for key, value in expected.items():
            assert got[key] == pytest.approx(value, rel=1e-3), key
        margin = (expected["positive_at_minus"] - expected["positive_at_plus"] + expected["negative_at_plus"]
                  - expected["negative_at_minus"]) / (sum(expected.values()) / 4)
        assert got["margin"] == pytest.approx(margin, rel=1e-2, abs=1e-4) and abs(margin) > 1e-3
        verdict = decide_polarity(None, 0.0, None, got)[0]
        assert verdict == ("positive" if margin > 0 else "reversed")
        with torch.no_grad():
            for p in lora_b:
                p.neg_()
        flipped = text_loss_polarity(step, sampler)
        assert flipped["margin"] == pytest.approx(-got["margin"], rel=1e-3)
        assert decide_polarity(None, 0.0, None, flipped)[0] == ("reversed" if margin > 0 else "positive")
        with torch.no_grad():
            for p in lora_b:
                p.zero_()
        assert decide_polarity(None, 0.0, None, text_loss_polarity(step, sampler))[0] == "unclear"
    finally:
        step.text = text
        with torch.no_grad():
            for p, value in zip(lora_b, saved):
                p.copy_(value)


def test_text_polarity_needs_text_pairs(tiny_step):
    from sliderstudio.engine.text_polarity import text_loss_polarity

    step, _ = tiny_step
    image_only = SliderSampler([SamplerBucket("pos", "positive", 1.0, 1.0, 0, ("a",)),
                                SamplerBucket("neg", "negative", -1.0, 1.0, 0, ("a",))], seed=0)
    assert text_loss_polarity(step, image_only) is None
