"""Lumina2: slider targets on the real module tree, per-sample scale, the pipeline's conventions."""
import pytest

from sliderstudio.adapters.targets import resolve_targets
from sliderstudio.families.registry import get_family
from tests.families.family_checks import (
    all_module_names, block_counts, check_matches_pipeline_step, check_per_sample_scale, entry_counts, slider_report,
)

FAMILY = get_family("lumina2")


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return FAMILY.build_tiny(tmp_path_factory.mktemp("lumina2") / "model")


def test_aliases():
    assert get_family("lumina") is FAMILY and get_family("Lumina-2") is FAMILY


def test_slider_preset_is_image_and_joint_attention_only(model):
    report = slider_report(FAMILY, model)
    counts = entry_counts(report)
    assert all(counts[f"layers.*.attn.{p}"] == 2 for p in ("to_q", "to_k", "to_v", "to_out.0"))
    assert all(counts[f"noise_refiner.*.attn.{p}"] == 1 for p in ("to_q", "to_k", "to_v", "to_out.0"))
    assert report.total == 12 and block_counts(report.module_names) == {"layers": 8, "noise_refiner": 4}
    everything = all_module_names(FAMILY, model)
    assert "context_refiner.0.attn.to_q" in everything and "time_caption_embed.caption_embedder.1" in everything
    assert not any(n.startswith(("context_refiner", "time_caption_embed")) for n in report.module_names)


def test_general_list_matches_nothing(model):
    assert resolve_targets(FAMILY, str(model), "reference", strict=False).total == 0


def test_per_sample_scale_matches_separate_forwards(model):
    check_per_sample_scale(FAMILY, model)


def test_prediction_matches_the_pipelines_denoising_step(model):
    check_matches_pipeline_step(FAMILY, model, to_ours=lambda latents: latents)
