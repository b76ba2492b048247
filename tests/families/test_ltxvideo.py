"""LTX-Video: the slider preset reaches the visual path only, latents stay unpacked 5-D clips (packing
happens inside predict), and per-sample slider scales over a batch equal separate forwards."""
import pytest
import torch

from sliderstudio.adapters.targets import resolve_targets, text_path_modules
from sliderstudio.families.loading import load_pipeline
from sliderstudio.families.registry import get_family
from sliderstudio.app.selfcheck import attach_random_slider, per_sample_scale_error

FAMILY = get_family("ltxvideo")
EXPECTED = {"attn1.to_q": 2, "attn1.to_k": 2, "attn1.to_v": 2, "attn1.to_out.0": 2, "proj_in": 1, "proj_out": 1,
            "time_embed.emb.timestep_embedder.linear_1": 1, "time_embed.emb.timestep_embedder.linear_2": 1,
            "time_embed.linear": 1}


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return FAMILY.build_tiny(tmp_path_factory.mktemp("ltx") / "model")


def test_simpletuner_spellings_resolve():
    assert all(get_family(name) is FAMILY for name in ("ltx", "ltx-video", "LTXVideo"))


def test_slider_preset_counts_per_entry_and_visual_path_only(model):
    report = resolve_targets(FAMILY, str(model), "slider")
    assert {e.pattern: e.count for e in report.entries} == EXPECTED
    assert text_path_modules(report.module_names) == []
    assert not any(".attn2." in n or "caption_projection" in n for n in report.module_names)


def test_cross_attention_exists_but_is_not_selected(model):
    names = {n for n, _ in FAMILY.skeleton(model).named_modules()}
    cross = {n for n in names if ".attn2." in n or n.startswith("caption_projection.")}
    assert {"transformer_blocks.1.attn2.to_v", "caption_projection.linear_1"} <= cross
    assert cross.isdisjoint(resolve_targets(FAMILY, str(model), "slider").module_names)


def test_latents_are_normalised_one_frame_clips(model):
    pipe = load_pipeline(FAMILY, str(model))
    pixels = torch.rand(2, 3, 32, 32) * 2 - 1
    latents = FAMILY.encode_images(pipe, pixels)
    assert latents.shape == (2, 4, 1, 4, 4)
    raw = pipe.vae.encode(pixels.unsqueeze(2)).latent_dist.mode()
    undone = pipe._denormalize_latents(latents, pipe.vae.latents_mean, pipe.vae.latents_std,
                                       pipe.vae.config.scaling_factor)
    assert torch.allclose(undone, raw, atol=1e-5)  # exactly what the pipeline undoes before decoding


def test_per_sample_scale_matches_separate_forwards(model):
    pipe = load_pipeline(FAMILY, str(model))
    attach_random_slider(FAMILY, pipe)
    error, effect = per_sample_scale_error(FAMILY, pipe)
    assert effect > 1e-4
    assert error < 1e-5
