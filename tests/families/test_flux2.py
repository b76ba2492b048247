"""Flux.2 (dev and Klein): slider targets on the real module tree (the single-block `to_out` is a
bare Linear, the double-block one a ModuleList), latent normalisation, slider mechanics, and the
whole selfcheck on the Klein layout too."""
import pytest
import torch

from sliderstudio.adapters.targets import resolve_targets
from sliderstudio.families.flux2 import FLUX2, build_tiny_flux2_klein, tokens, untokens
from sliderstudio.families.loading import load_pipeline
from sliderstudio.families.registry import get_family
from tests.families.family_checks import check_matches_pipeline_step
from tests.families.flow_checks import (
    check_per_sample_scale, check_slider_targets, check_zero_is_base_and_signs_oppose, pipeline_with_slider,
)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return FLUX2.build_tiny(tmp_path_factory.mktemp("flux2") / "model")


@pytest.fixture(scope="module")
def klein(tmp_path_factory):
    return build_tiny_flux2_klein(tmp_path_factory.mktemp("klein") / "model")


def test_slider_preset_is_the_image_stream_only(model):
    report = check_slider_targets(
        FLUX2, model,
        {"attn.to_q": 2, "attn.to_k": 2, "attn.to_v": 2, "attn.to_out.0": 2, "attn.to_qkv_mlp_proj": 2,
         "single_transformer_blocks.*.attn.to_out": 2},
        ["attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj", "attn.to_add_out", "context_embedder",
         "ff_context.linear_in", "double_stream_modulation_txt.linear"])
    skeleton = FLUX2.skeleton(model)
    assert type(skeleton.get_submodule("transformer_blocks.0.attn.to_out")).__name__ == "ModuleList"
    assert "transformer_blocks.0.attn.to_out" not in report.module_names
    assert "single_transformer_blocks.1.attn.to_out" in report.module_names


def test_bare_to_out_entry_would_report_the_module_list_as_unsupported(model):
    report = resolve_targets(FLUX2, str(model), ["attn.to_out"])
    assert report.entries[0].count == 2 and report.entries[0].unsupported == {"ModuleList": 2}


def test_latents_are_patchified_and_batch_normalised(model):
    pipe = load_pipeline(FLUX2, str(model))
    pixels = torch.rand(1, 3, 64, 64) * 2 - 1
    latents = FLUX2.encode_images(pipe, pixels)
    assert latents.shape == (1, 16, 4, 4)
    raw = pipe.vae.encode(pixels).latent_dist.mode()
    mean, var = pipe.vae.bn.running_mean, pipe.vae.bn.running_var
    expected = (pipe._patchify_latents(raw) - mean.view(1, -1, 1, 1)) / torch.sqrt(
        var.view(1, -1, 1, 1) + pipe.vae.config.batch_norm_eps)
    assert torch.allclose(latents, expected, atol=1e-6)
    seq = tokens(latents)
    assert seq.shape == (1, 16, 16) and torch.equal(untokens(seq, 4, 4), latents)


@pytest.mark.parametrize("layout", ["dev", "klein"])
def test_strength_zero_is_base_and_per_sample_scale(model, klein, layout):
    pipe, denoiser = pipeline_with_slider(FLUX2, model if layout == "dev" else klein)
    assert type(pipe).__name__ == ("Flux2Pipeline" if layout == "dev" else "Flux2KleinPipeline")
    check_zero_is_base_and_signs_oppose(FLUX2, pipe, denoiser)
    check_per_sample_scale(FLUX2, pipe, denoiser)


@pytest.mark.parametrize("layout", ["dev", "klein"])
def test_training_prediction_drives_the_pipelines_own_sampler(model, klein, layout):
    """σ timestep, token layout, ids and caption encoding agree with the diffusers pipeline's own loop."""
    check_matches_pipeline_step(FLUX2, model if layout == "dev" else klein, lambda seq: untokens(seq, 4, 4))


def test_klein_passes_the_whole_selfcheck(klein, tmp_path):
    from sliderstudio.app.selfcheck import check_preview, check_training, write_tiny_project

    adapter = check_training(write_tiny_project(tmp_path / "project", klein, FLUX2), klein, FLUX2)
    reloaded, zero_is_base_and_signs_differ = check_preview(FLUX2, klein, adapter)
    assert reloaded and zero_is_base_and_signs_differ


@pytest.mark.parametrize("name", ["flux2", "flux.2", "FLUX.2-dev", "flux2-klein"])
def test_simpletuner_spellings(name):
    assert get_family(name) is FLUX2
