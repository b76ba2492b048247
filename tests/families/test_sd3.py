"""SD3 / SD3.5: slider targets on the real MMDiT module tree, slider mechanics, aliases."""
import pytest

from sliderstudio.families.registry import get_family
from sliderstudio.families.sd3 import SD3
from tests.families.family_checks import check_matches_pipeline_step
from tests.families.flow_checks import (
    check_per_sample_scale, check_slider_targets, check_zero_is_base_and_signs_oppose, pipeline_with_slider,
)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return SD3.build_tiny(tmp_path_factory.mktemp("sd3") / "model")


def test_slider_preset_is_the_image_stream_only(model):
    report = check_slider_targets(
        SD3, model,
        {"attn.to_q": 2, "attn.to_k": 2, "attn.to_v": 2, "attn.to_out.0": 2, "pos_embed.proj": 1, "proj_out": 1,
         "time_text_embed.timestep_embedder.linear_1": 1, "time_text_embed.timestep_embedder.linear_2": 1},
        context=["attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj", "attn.to_add_out", "context_embedder",
                 "ff_context.net.2", "time_text_embed.text_embedder.linear_1", "attn2.to_q", "attn2.to_out.0"])
    assert "transformer_blocks.0.attn.to_q" in report.module_names


def test_reference_list_matches_only_proj_out(model):
    from sliderstudio.adapters.targets import resolve_targets

    assert resolve_targets(SD3, str(model), "reference").module_names == ["proj_out"]


def test_strength_zero_is_base_and_per_sample_scale(model):
    pipe, denoiser = pipeline_with_slider(SD3, model)
    check_zero_is_base_and_signs_oppose(SD3, pipe, denoiser)
    check_per_sample_scale(SD3, pipe, denoiser)


def test_training_prediction_drives_the_pipelines_own_sampler(model):
    """Timestep convention, latent layout and caption encoding agree with the diffusers pipeline."""
    check_matches_pipeline_step(SD3, model, lambda latents: latents)


@pytest.mark.parametrize("name", ["sd3", "SD3.5", "stable_diffusion_3", "stable-diffusion-3", "sd3.0"])
def test_simpletuner_spellings(name):
    assert get_family(name) is SD3
