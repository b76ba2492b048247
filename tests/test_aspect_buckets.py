"""Aspect-ratio buckets: sizes per resolution_type, crops, minimum/maximum sizes, pairs, the sampler's
grouping, cache keys, and a real tiny training step at a non-square aspect."""
import json

import numpy as np
import pytest
from PIL import Image

from conftest import draw, make_project
from sliderstudio.engine import aspect_buckets as ab
from sliderstudio.engine.buckets import assign_targets, balance, downsample_first, load_image, scan_project
from sliderstudio.engine.caches import transform_tag
from sliderstudio.config.config import BucketConfig
from sliderstudio.engine.project import load_project
from sliderstudio.engine.sampler import SamplerBucket, SliderSampler


def rule(resolution, kind="pixel", alignment=8, crop=False, crop_aspect="square", buckets=(), seed=0):
    return ab.SizeRule(resolution, kind, alignment, crop, crop_aspect, tuple(buckets), seed)


def test_pixel_keeps_the_short_side_and_the_aspect():
    assert ab.target_size((1000, 1500), rule(512), "a") == (512, 768)
    assert ab.target_size((1500, 1000), rule(512), "a") == (768, 512)
    assert ab.target_size((640, 480), rule(512, alignment=64), "a") == (704, 512)  # 682.7 → 704


def test_area_is_megapixels_and_pixel_area_is_a_side():
    # 0.25 MP at 16:9: sqrt(250000·16/9) = 666.7 → 672, sqrt(250000·9/16) = 375 → 368
    assert ab.target_size((1600, 900), rule(0.25, "area", alignment=16), "a") == (672, 368)
    # 512² pixels at 2:1: sqrt(262144·2) = 724.1 → 728, 362.0 → 360
    assert ab.target_size((1024, 512), rule(512, "pixel_area"), "a") == (728, 360)
    assert ab.target_size((300, 300), rule(512, "pixel_area"), "a") == (512, 512)
    # older configs: a small float with 'pixel' means megapixels
    res, kind = ab.effective_resolution(BucketConfig(id="b", instance_data_dir="x", resolution=1.0), 512)
    assert (res, kind) == (1.0, "area")


def test_crop_aspects():
    assert ab.target_size((1000, 1500), rule(512, crop=True), "a") == (512, 512)  # square
    assert ab.target_size((1000, 1500), rule(512, crop=True, crop_aspect="preserve"), "a") == (512, 768)
    closest = rule(512, crop=True, crop_aspect="closest", buckets=(1.0, 0.75, 1.5))
    assert ab.bucket_aspect((1000, 1400), closest, "a") == 0.75
    assert ab.target_size((1000, 1400), closest, "a") == (512, 680)  # 512 / 0.75 = 682.7 → 680
    assert ab.target_size((2000, 1000), closest, "a") == (768, 512)
    rnd = rule(512, crop=True, crop_aspect="random", buckets=(1.0, 0.5, 2.0), seed=7)
    picks = [ab.bucket_aspect((100, 100), rnd, f"img{i}") for i in range(30)]
    assert set(picks) == {1.0, 0.5, 2.0}  # every bucket gets used
    assert picks == [ab.bucket_aspect((100, 100), rnd, f"img{i}") for i in range(30)]  # seeded by (seed, stem)


def scan_with_sizes(root, family_alignment=8):
    project = load_project(root)
    scanned = scan_project(project)
    bal = balance(project, scanned)
    assign_targets(project, scanned, bal.pair_map, family_alignment)
    return project, {s.bucket.id: s for s in scanned}, bal


def portrait_project(tmp_path, **config):
    """pos/neg pairs at 64×96 (portrait) and a square neutral bucket, crop off (SimpleTuner's default)."""
    root = make_project(tmp_path, "unused", pairs=0, neutral=2, **config)
    for i in range(2):
        for bucket, size in (("pos", 0.8), ("neg", 0.3)):
            (root / "data" / bucket).mkdir(parents=True, exist_ok=True)
            (root / "data" / bucket / f"img{i}.txt").write_text(f"a photo of a {bucket} rectangle")
            img = Image.new("RGB", (64, 96), (128, 128, 128))
            img.paste((200, 40, 40), (8, 8, 8 + int(48 * size), 8 + int(80 * size)))
            img.save(root / "data" / bucket / f"img{i}.png")
    return root


def test_paired_negative_takes_the_positives_size(tmp_path):
    root = portrait_project(tmp_path)
    # the negative counterpart of img1 is square: it still trains at the positive's 64×96
    Image.new("RGB", (80, 80), (90, 90, 90)).save(root / "data" / "neg" / "img1.png")
    project, scanned, bal = scan_with_sizes(root)
    assert bal.pair_map == {"pos": "neg"}
    assert scanned["pos"].targets == [(64, 96), (64, 96)]
    assert scanned["neg"].targets == [(64, 96), (64, 96)]
    assert scanned["neu"].targets == [(64, 64), (64, 64)]
    assert load_image(scanned["neg"].images[1], scanned["neg"].bucket, (64, 96), 0).size == (64, 96)


def test_minimum_image_size_skips_with_a_reason_in_each_unit(tmp_path):
    root = make_project(tmp_path, "unused", pairs=1, buckets=[
        {"id": "pos", "instance_data_dir": "data/pos", "slider_strength": 1, "minimum_image_size": 60},
        {"id": "neg", "instance_data_dir": "data/neg", "slider_strength": -1, "minimum_image_size": 0.005,
         "resolution_type": "area"},
        {"id": "neu", "instance_data_dir": "data/neu", "minimum_image_size": 70, "resolution_type": "pixel_area"}])
    draw(root / "data" / "pos" / "tiny.png", 0.5, px=40)      # short side 40 < 60 px
    draw(root / "data" / "neg" / "tiny.png", 0.5, px=64)      # 64² = 0.0041 MP < 0.005
    scanned = {s.bucket.id: s for s in scan_project(load_project(root))}
    pos, neg, neu = scanned["pos"], scanned["neg"], scanned["neu"]
    assert pos.stems == ["img0"] and "tiny" not in neg.stems
    reason = {p.path.name: p.reason for p in pos.problems}["tiny.png"]
    assert "minimum_image_size" in reason and "40" in reason and "(skipped)" in reason
    assert any("megapixels" in p.reason for p in neg.problems)
    assert neu.count == 0 and "square root of the area" in neu.problems[0].reason  # 64 < 70 in pixel_area


def test_aspect_ratio_limits_skip_with_a_reason(tmp_path):
    root = make_project(tmp_path, "unused", pairs=1, buckets=[
        {"id": "pos", "instance_data_dir": "data/pos", "slider_strength": 1,
         "minimum_aspect_ratio": 0.5, "maximum_aspect_ratio": 2.0}])
    Image.new("RGB", (30, 90), (9, 9, 9)).save(root / "data" / "pos" / "tall.png")    # 0.33
    Image.new("RGB", (90, 30), (9, 9, 9)).save(root / "data" / "pos" / "wide.png")    # 3.0
    Image.new("RGB", (80, 40), (9, 9, 9)).save(root / "data" / "pos" / "ok.png")      # 2.0: kept
    pos = scan_project(load_project(root))[0]
    assert pos.stems == ["img0", "ok"]
    reasons = {p.path.name: p.reason for p in pos.problems}
    assert "0.33 is under minimum_aspect_ratio 0.5" in reasons["tall.png"]
    assert "3.00 is over maximum_aspect_ratio 2" in reasons["wide.png"]


def test_maximum_image_size_downsamples_first():
    bucket = BucketConfig(id="b", instance_data_dir="x", maximum_image_size=150, target_downsample_size=100)
    assert downsample_first(Image.new("RGB", (400, 200)), bucket).size == (200, 100)
    assert downsample_first(Image.new("RGB", (280, 140)), bucket).size == (280, 140)  # under the maximum
    area = BucketConfig(id="b", instance_data_dir="x", resolution_type="area", maximum_image_size=0.04,
                        target_downsample_size=0.01)
    w, h = downsample_first(Image.new("RGB", (400, 200)), area).size  # 0.08 MP → 0.01 MP
    assert (w, h) == (141, 71)


def test_crop_styles_cut_where_they_say(tmp_path):
    arr = np.zeros((64, 128, 3), dtype=np.uint8)
    arr[:, :32] = (255, 0, 0)      # red left quarter
    arr[:, 96:] = (0, 0, 255)      # blue right quarter
    Image.fromarray(arr).save(tmp_path / "wide.png")
    from sliderstudio.engine.buckets import ImageRecord

    record = ImageRecord(tmp_path / "wide.png", "wide", "")
    corner = load_image(record, BucketConfig(id="b", instance_data_dir="x", crop=True, crop_style="corner"), 64, 0)
    center = load_image(record, BucketConfig(id="b", instance_data_dir="x", crop=True), 64, 0)
    squash = load_image(record, BucketConfig(id="b", instance_data_dir="x", crop=False), 64, 0)
    kept = load_image(record, BucketConfig(id="b", instance_data_dir="x", crop=False), (128, 64), 0)
    assert corner.getpixel((2, 32))[0] > 200 and center.getpixel((2, 32))[0] < 50  # the red strip is cut off
    assert squash.size == (64, 64) and squash.getpixel((2, 32))[0] > 200          # resized, nothing cut
    assert np.array_equal(np.asarray(kept), arr)                                  # already at its bucket size


def sized_bucket(sizes, id="p", role="positive", strength=1.0, stems=None):
    stems = tuple(stems or (f"{id}{i}" for i in range(len(sizes))))
    return SamplerBucket(id, role, strength, 1.0, 0, stems, tuple(sizes))


def test_sampler_batches_hold_one_size_and_keep_the_cycle():
    mixed = [(64, 96), (64, 64), (64, 96), (64, 64), (96, 64), (64, 96), (64, 64)]
    make = lambda seed: SliderSampler([sized_bucket(mixed), sized_bucket(mixed, "n", "negative", -1),
                                       sized_bucket([(64, 64)] * 6, "z", "neutral", 0)], seed, batch_size=2)
    first = make(3).take(30)
    assert [mb.role for mb in first[:9]] == ["positive", "negative", "neutral"] * 3
    for mb in first:
        bucket_sizes = mixed if mb.role != "neutral" else [(64, 64)] * 6
        assert {bucket_sizes[i] for i in mb.items} == {mb.size}
    epoch = make(3).take(make(3).epoch_length())
    assert sorted(i for mb in epoch if mb.bucket_id == "p" for i in mb.items) == list(range(7))
    assert [(mb.bucket_id, mb.items) for mb in first] == [(mb.bucket_id, mb.items) for mb in make(3).take(30)]
    assert [(mb.bucket_id, mb.items) for mb in first] != [(mb.bucket_id, mb.items) for mb in make(4).take(30)]


def test_one_size_batches_exactly_as_before():
    plain = [SamplerBucket("p", "positive", 1, 1, 0, tuple(f"p{i}" for i in range(7))),
             SamplerBucket("n", "negative", -1, 1, 0, tuple(f"n{i}" for i in range(7)))]
    sized = [sized_bucket([(64, 64)] * 7), sized_bucket([(64, 64)] * 7, "n", "negative", -1)]
    a, b = SliderSampler(plain, 5, batch_size=3).take(12), SliderSampler(sized, 5, batch_size=3).take(12)
    assert [(m.bucket_id, m.items) for m in a] == [(m.bucket_id, m.items) for m in b]
    assert a[0].size is None and b[0].size == (64, 64)


def test_paired_negative_batch_has_the_positives_size():
    sizes = [(64, 96), (64, 64), (64, 96), (64, 64)]
    stems = ["a", "b", "c", "d"]
    s = SliderSampler([sized_bucket(sizes, stems=stems), sized_bucket(sizes, "n", "negative", -1, stems)], 1, batch_size=2,
                      pair_map={"p": "n"})
    for pos, neg in zip(*[iter(s.take(8))] * 2):
        assert neg.paired and neg.size == pos.size and neg.stems == pos.stems


def test_cache_tag_keys_on_the_size():
    square = transform_tag(64, False, "center", 0)
    assert square == transform_tag((64, 64), False, "center", 0)  # square sizes keep their old tags
    assert square != transform_tag((64, 96), False, "center", 0) != transform_tag((96, 64), False, "center", 0)
    assert square != transform_tag(64, False, "center", 0, (1024.0, 512.0, "pixel"))


def test_plan_shows_the_aspect_bucket_of_each_micro_batch(tmp_path, capsys):
    from sliderstudio.cli import main

    root = portrait_project(tmp_path)
    draw(root / "data" / "pos" / "zz.png", 0.5, px=30)
    (root / "multidatabackend.json").write_text(json.dumps([
        {"id": "pos", "instance_data_dir": "data/pos", "slider_strength": 0.5, "minimum_image_size": 32},
        {"id": "neg", "instance_data_dir": "data/neg", "slider_strength": -0.5},
        {"id": "neu", "instance_data_dir": "data/neu"}]))
    assert main(["plan", "--config", str(root), "--batches", "3"]) == 0
    out = capsys.readouterr()
    rows = [line.split() for line in out.out.strip().splitlines()[1:]]
    assert [(r[1], r[5]) for r in rows] == [("pos", "64x96"), ("neg", "64x96"), ("neu", "64x64")]
    assert "zz.png: smaller than minimum_image_size" in out.err


@pytest.fixture
def shapes(monkeypatch):
    """Latent shapes of every micro-batch a real run feeds the denoiser, by bucket."""
    from sliderstudio.engine.slider_step import SliderStep

    seen: list[tuple[str, tuple[int, ...], object]] = []
    original = SliderStep.inputs

    def spy(self, mb):
        noisy, timesteps, target, cond = original(self, mb)
        seen.append((mb.bucket_id, tuple(noisy.shape), self.data.collate_size(mb)))
        return noisy, timesteps, target, cond

    monkeypatch.setattr(SliderStep, "inputs", spy)
    return seen


@pytest.mark.parametrize("family", ["sd1x", "sdxl"])
def test_a_portrait_bucket_trains_at_its_aspect(tmp_path, tiny_models, shapes, family):
    from sliderstudio.kernel.events import Log
    from sliderstudio.engine.trainer import Trainer

    root = portrait_project(tmp_path, family=family, config={"max_train_steps": 3})
    (root / "config.json").write_text(json.dumps({**json.loads((root / "config.json").read_text()),
                                                  "pretrained_model_name_or_path": str(tiny_models[family])}))
    events = []
    Trainer(load_project(root), events.append).run()
    assert (root / "output" / "pytorch_lora_weights.safetensors").exists()
    by_bucket = {bucket: (shape, size) for bucket, shape, size in shapes}
    assert by_bucket["pos"] == ((1, 4, 12, 8), (96, 64))   # 64×96 pixels → 8×12 latents; SDXL gets (h, w)
    assert by_bucket["neg"] == ((1, 4, 12, 8), (96, 64))
    assert by_bucket["neu"] == ((1, 4, 8, 8), 64)
    logs = [e.message for e in events if isinstance(e, Log)]
    assert any("aspect buckets: pos: 64x96 ×2; neg: 64x96 ×2; neu: 64x64 ×2" in m for m in logs)


def test_changed_bucket_size_misses_the_cache(tmp_path, tiny_models, shapes):
    from sliderstudio.kernel.events import Log
    from sliderstudio.engine.trainer import Trainer

    root = portrait_project(tmp_path, config={"max_train_steps": 1})
    (root / "config.json").write_text(json.dumps({**json.loads((root / "config.json").read_text()),
                                                  "pretrained_model_name_or_path": str(tiny_models["sd1x"])}))

    def cache_line(overrides=None):
        events = []
        Trainer(load_project(root, overrides), events.append).run()
        return next(e.message for e in events if isinstance(e, Log) and e.message.startswith("cache "))

    assert "0 latents reused, 6 encoded" in cache_line()
    assert "6 latents reused, 0 encoded" in cache_line()
    assert "0 latents reused, 6 encoded" in cache_line({"resolution": 48})  # 48x72 and 48x48: all new sizes
    assert shapes[-1][1][2:] in ((9, 6), (6, 6))


QUICK_FAMILIES = ("flux", "qwen_image", "ltxvideo")  # packed 2×2 tokens, img_shapes, 32× VAE with video latents
ALL_FAMILIES = ("auraflow", "chroma", "cosmos", "flux", "flux2", "hidream", "kandinsky5", "ltxvideo", "lumina2",
                "qwen_image", "sd1x", "sd2x", "sd3", "sdxl", "stable_cascade", "wan", "z_image")


@pytest.mark.parametrize("family_id", [f if f in QUICK_FAMILIES else pytest.param(f, marks=pytest.mark.slow)
                                       for f in ALL_FAMILIES])
def test_every_family_predicts_at_a_non_square_aspect(tmp_path, family_id):
    """A portrait aspect bucket (2:3 at the family's alignment) through encode → noise → predict."""
    import torch

    from sliderstudio.families.loading import load_pipeline
    from sliderstudio.families.registry import get_family

    family = get_family(family_id)
    pipe = load_pipeline(family, str(family.build_tiny(tmp_path / "model")), torch.float32, torch.device("cpu"))
    w, h = 2 * max(family.size_alignment, 16), 3 * max(family.size_alignment, 16)
    latents = family.encode_images(pipe, torch.rand(2, 3, h, w) * 2 - 1)
    assert latents.shape[-2] > latents.shape[-1]  # the latent is portrait too
    cond = family.collate(family.encode_prompts(pipe, ["a photo", "a photo"]), torch.device("cpu"), torch.float32,
                          (h, w))
    schedule = family.noise_schedule(pipe)
    generator = torch.Generator().manual_seed(0)
    timesteps = family.sample_timesteps(schedule, 2, generator)
    noisy, target = family.noisy_and_target(schedule, latents, torch.randn(latents.shape, generator=generator),
                                            timesteps)
    with torch.no_grad():
        prediction = family.predict(family.denoiser(pipe), noisy, timesteps, cond)
    assert prediction.shape == target.shape == latents.shape
