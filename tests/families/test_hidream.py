"""HiDream: slider targets on the real module tree, per-sample scale, the pipeline's conventions."""
import pytest
import torch

from sliderstudio.families.hidream import render_area
from sliderstudio.families.loading import load_pipeline
from sliderstudio.families.registry import get_family
from tests.families.family_checks import (
    PROMPT, all_module_names, block_counts, check_matches_pipeline_step, check_per_sample_scale, entry_counts,
    slider_report,
)

FAMILY = get_family("hidream")


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return FAMILY.build_tiny(tmp_path_factory.mktemp("hidream") / "model")


def test_aliases():
    assert get_family("HiDream-I1") is FAMILY


def test_slider_preset_is_image_attention_only(model):
    report = slider_report(FAMILY, model)
    counts = entry_counts(report)
    assert counts == {"attn1.to_q": 2, "attn1.to_k": 2, "attn1.to_v": 2, "attn1.to_out": 2}
    assert block_counts(report.module_names) == {"double_stream_blocks": 4, "single_stream_blocks": 4}
    everything = all_module_names(FAMILY, model)
    text_stream = [n for n in everything if n.endswith(("to_q_t", "to_k_t", "to_v_t", "to_out_t"))]
    assert len(text_stream) == 4 and not set(text_stream) & set(report.module_names)
    assert not any("caption_projection" in n or "ff_t" in n for n in report.module_names)


def test_training_mode_layout_is_folded_back(model):
    pipe = load_pipeline(FAMILY, str(model))
    denoiser = FAMILY.denoiser(pipe)
    cond = FAMILY.collate(FAMILY.encode_prompts(pipe, [PROMPT, "a dog"]), torch.device("cpu"), torch.float32, 64)
    x, t = torch.randn(2, 4, 8, 8), torch.tensor([300.0, 700.0])
    with torch.no_grad():
        inference = FAMILY.predict(denoiser, x, t, cond)
        denoiser.train()
        training = FAMILY.predict(denoiser, x, t, cond)
        denoiser.eval()
    assert training.shape == x.shape and torch.allclose(training, inference, atol=1e-5)


def test_render_keeps_the_requested_size(model):
    pipe = load_pipeline(FAMILY, str(model))
    assert FAMILY.render(pipe, [PROMPT], 0, 1, 1.0, 64)[0].size == (64, 64)
    assert FAMILY.default_size(pipe) == 128 * pipe.vae_scale_factor  # restored after the render


def test_per_sample_scale_matches_separate_forwards(model):
    check_per_sample_scale(FAMILY, model)


def test_prediction_matches_the_pipelines_denoising_step(model):
    check_matches_pipeline_step(FAMILY, model, to_ours=lambda latents: latents, size_context=render_area)
