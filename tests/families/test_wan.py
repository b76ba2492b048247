"""Wan: the slider preset reaches the visual path only, images train as one-frame clips, and a batch with
per-sample slider scales equals separate forwards of the transformer."""
import pytest
import torch

from sliderstudio.adapters.targets import resolve_targets, text_path_modules
from sliderstudio.families.loading import load_pipeline
from sliderstudio.families.registry import get_family
from sliderstudio.app.selfcheck import attach_random_slider, per_sample_scale_error

FAMILY = get_family("wan")
EXPECTED = {"attn1.to_q": 2, "attn1.to_k": 2, "attn1.to_v": 2, "attn1.to_out.0": 2, "patch_embedding": 1,
            "proj_out": 1, "condition_embedder.time_embedder.linear_1": 1,
            "condition_embedder.time_embedder.linear_2": 1, "condition_embedder.time_proj": 1}


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return FAMILY.build_tiny(tmp_path_factory.mktemp("wan") / "model")


def test_simpletuner_spellings_resolve():
    assert get_family("wan2.1") is FAMILY and get_family("Wan") is FAMILY


def test_slider_preset_counts_per_entry_and_visual_path_only(model):
    report = resolve_targets(FAMILY, str(model), "slider")
    assert {e.pattern: e.count for e in report.entries} == EXPECTED
    assert report.total == sum(EXPECTED.values())
    assert text_path_modules(report.module_names) == []
    assert not any(part in n for n in report.module_names for part in (".attn2.", "text_embedder", "add_k_proj"))


def test_cross_attention_exists_but_is_not_selected(model):
    names = {n for n, _ in FAMILY.skeleton(model).named_modules()}
    cross = {n for n in names if ".attn2." in n or ".text_embedder." in n}
    assert {"blocks.0.attn2.to_k", "condition_embedder.text_embedder.linear_1"} <= cross
    assert cross.isdisjoint(resolve_targets(FAMILY, str(model), "slider").module_names)


def test_images_encode_to_one_frame_latents(model):
    pipe = load_pipeline(FAMILY, str(model))
    latents = FAMILY.encode_images(pipe, torch.rand(2, 3, 32, 32) * 2 - 1)
    assert latents.shape == (2, 4, 1, 8, 8)


def test_per_sample_scale_matches_separate_forwards(model):
    pipe = load_pipeline(FAMILY, str(model))
    attach_random_slider(FAMILY, pipe)
    error, effect = per_sample_scale_error(FAMILY, pipe)
    assert effect > 1e-4
    assert error < 1e-5
