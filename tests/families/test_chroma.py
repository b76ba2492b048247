"""Chroma: slider targets on the real module tree, the text attention mask, slider mechanics."""
import pytest
import torch

from sliderstudio.families.chroma import CHROMA, joint_mask
from sliderstudio.families.flux import unpack
from sliderstudio.families.registry import get_family
from tests.families.family_checks import check_matches_pipeline_step
from tests.families.flow_checks import (
    check_per_sample_scale, check_slider_targets, check_zero_is_base_and_signs_oppose, pipeline_with_slider,
)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return CHROMA.build_tiny(tmp_path_factory.mktemp("chroma") / "model")


def test_slider_preset_is_the_image_stream_only(model):
    check_slider_targets(CHROMA, model, {"attn.to_q": 4, "attn.to_k": 4, "attn.to_v": 4, "attn.to_out.0": 2},
                         ["attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj", "attn.to_add_out",
                          "context_embedder", "ff_context.net.2", "distilled_guidance_layer.in_proj"])


def test_prompt_mask_hides_padding_but_the_first_pad_token(model):
    from sliderstudio.families.loading import load_pipeline

    pipe = load_pipeline(CHROMA, str(model))
    cond = CHROMA.encode_prompts(pipe, ["a red square"])[0]
    mask = cond.kwargs["text_mask"]
    assert mask.shape == cond.kwargs["encoder_hidden_states"].shape[:2]
    assert mask[0].sum() == 3 + 1 + 1  # three words, </s>, and the first pad token stay visible
    assert joint_mask(mask, 16).shape == (1, mask.shape[1] + 16) and joint_mask(mask, 16)[0, -16:].eq(1).all()


def test_strength_zero_is_base_and_per_sample_scale(model):
    pipe, denoiser = pipeline_with_slider(CHROMA, model)
    check_zero_is_base_and_signs_oppose(CHROMA, pipe, denoiser)
    check_per_sample_scale(CHROMA, pipe, denoiser)


def test_training_prediction_drives_the_pipelines_own_sampler(model):
    """Timestep convention, latent layout and caption encoding agree with the diffusers pipeline."""
    check_matches_pipeline_step(CHROMA, model, lambda latents: unpack(latents, 8, 8))


@pytest.mark.parametrize("name", ["chroma", "Chroma1-HD", "chroma1"])
def test_simpletuner_spellings(name):
    assert get_family(name) is CHROMA
