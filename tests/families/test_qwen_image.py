"""Qwen-Image: slider targets on the real module tree, per-sample scale, the pipeline's conventions."""
import pytest
import torch

from sliderstudio.families.qwen_image import pack, unpack
from sliderstudio.families.registry import get_family
from tests.families.family_checks import (
    all_module_names, check_matches_pipeline_step, check_per_sample_scale, entry_counts, slider_report,
)

FAMILY = get_family("qwen_image")
CONTEXT_STREAM = ("add_q_proj", "add_k_proj", "add_v_proj", "to_add_out", "txt_in", "txt_mlp", "txt_mod")


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return FAMILY.build_tiny(tmp_path_factory.mktemp("qwen_image") / "model")


def test_aliases():
    assert get_family("qwenimage") is FAMILY and get_family("Qwen-Image") is FAMILY


def test_slider_preset_is_the_image_stream_only(model):
    report = slider_report(FAMILY, model)
    counts = entry_counts(report)
    assert all(counts[f"attn.{p}"] == 2 for p in ("to_q", "to_k", "to_v", "to_out.0")) and counts["proj_out"] == 1
    assert report.total == 9
    everything = all_module_names(FAMILY, model)
    assert "transformer_blocks.0.attn.add_q_proj" in everything and "transformer_blocks.0.attn.to_add_out" in everything
    assert not any(part in n for n in report.module_names for part in CONTEXT_STREAM)


def test_packing_round_trips():
    x = torch.randn(2, 4, 8, 6)
    assert pack(x).shape == (2, 12, 16) and torch.equal(unpack(pack(x), 8, 6), x)


def test_template_prefix_is_dropped_exactly(model):
    from sliderstudio.families.loading import load_pipeline

    pipe = load_pipeline(FAMILY, str(model))
    # "a red square" + "<|im_end|>", "\n", "<|im_start|>", "assistant", "\n": the 34 template tokens are gone.
    assert FAMILY.encode_prompts(pipe, ["a red square"])[0].kwargs["encoder_hidden_states"].shape[1] == 3 + 5


def test_per_sample_scale_matches_separate_forwards(model):
    check_per_sample_scale(FAMILY, model)


def test_prediction_matches_the_pipelines_denoising_step(model):
    check_matches_pipeline_step(FAMILY, model, to_ours=lambda latents: unpack(latents, 8, 8))
