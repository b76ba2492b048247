"""AuraFlow: slider targets on the real module tree, slider mechanics, aliases."""
import pytest

from sliderstudio.families.auraflow import AURAFLOW
from sliderstudio.families.registry import get_family
from tests.families.family_checks import check_matches_pipeline_step
from tests.families.flow_checks import (
    check_per_sample_scale, check_slider_targets, check_zero_is_base_and_signs_oppose, pipeline_with_slider,
)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return AURAFLOW.build_tiny(tmp_path_factory.mktemp("auraflow") / "model")


def test_slider_preset_is_the_image_stream_only(model):
    report = check_slider_targets(
        AURAFLOW, model, {"attn.to_q": 4, "attn.to_k": 4, "attn.to_v": 4, "attn.to_out.0": 4},
        ["attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj", "attn.to_add_out", "context_embedder",
         "ff_context.out_projection"])
    assert {n.split(".")[0] for n in report.module_names} == {"joint_transformer_blocks", "single_transformer_blocks"}


def test_strength_zero_is_base_and_per_sample_scale(model):
    pipe, denoiser = pipeline_with_slider(AURAFLOW, model)
    check_zero_is_base_and_signs_oppose(AURAFLOW, pipe, denoiser)
    check_per_sample_scale(AURAFLOW, pipe, denoiser)


def test_training_prediction_drives_the_pipelines_own_sampler(model):
    """Timestep convention, latent layout and caption encoding agree with the diffusers pipeline."""
    check_matches_pipeline_step(AURAFLOW, model, lambda latents: latents)


@pytest.mark.parametrize("name", ["auraflow", "aura_flow", "Aura-Flow"])
def test_simpletuner_spellings(name):
    assert get_family(name) is AURAFLOW
