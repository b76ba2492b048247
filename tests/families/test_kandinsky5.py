"""Kandinsky 5: slider targets on the real module tree, per-sample scale, the pipeline's conventions."""
import pytest
import torch

from sliderstudio.adapters import adapter_io, adapters
from sliderstudio.adapters.targets import resolve_targets
from sliderstudio.families.kandinsky5 import allow_size
from sliderstudio.families.loading import load_pipeline
from sliderstudio.families.registry import get_family
from tests.families.family_checks import (
    PROMPT, all_module_names, batch_inputs, block_counts, check_matches_pipeline_step, check_per_sample_scale,
    entry_counts, slider_report, with_random_slider,
)

FAMILY = get_family("kandinsky5")


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return FAMILY.build_tiny(tmp_path_factory.mktemp("kandinsky5") / "model")


def test_aliases():
    assert get_family("kandinsky") is FAMILY and get_family("Kandinsky-5") is FAMILY


def test_slider_preset_is_visual_self_attention_only(model):
    report = slider_report(FAMILY, model)
    counts = entry_counts(report)
    assert all(counts[f"visual_transformer_blocks.*.self_attention.{p}"] == 2
               for p in ("to_query", "to_key", "to_value", "out_layer"))
    assert report.total == 8 and block_counts(report.module_names) == {"visual_transformer_blocks": 8}
    everything = all_module_names(FAMILY, model)
    assert "text_transformer_blocks.0.self_attention.to_query" in everything
    assert "visual_transformer_blocks.0.cross_attention.to_key" in everything
    assert not any("cross_attention" in n or n.startswith("text_") for n in report.module_names)


def test_published_list_matches_nothing(model):
    assert resolve_targets(FAMILY, str(model), "reference", strict=False).total == 0


def test_template_prefix_is_dropped_exactly(model):
    pipe = load_pipeline(FAMILY, str(model))
    # "a red square" + "<|im_end|>": the 40 template tokens are gone.
    assert FAMILY.encode_prompts(pipe, ["a red square"])[0].kwargs["encoder_hidden_states"].shape[1] == 4


def test_render_keeps_the_requested_size_and_the_pipelines_resolutions(model):
    pipe = load_pipeline(FAMILY, str(model))
    before = list(pipe.resolutions)
    assert FAMILY.render(pipe, [PROMPT], 0, 1, 1.0, 64)[0].size == (64, 64)
    assert pipe.resolutions == before


def test_per_sample_scale_matches_separate_forwards(model):
    check_per_sample_scale(FAMILY, model)


def test_prediction_matches_the_pipelines_denoising_step(model):
    check_matches_pipeline_step(FAMILY, model, to_ours=lambda latents: latents[:, 0].permute(0, 3, 1, 2),
                                size_context=allow_size)


def test_slider_file_round_trips_without_the_diffusers_lora_loader(model, tmp_path):
    """Our own file layout and loader (used where a pipeline has no LoRA mixin) give the same slider back."""
    pipe, trained = with_random_slider(FAMILY, model)
    targets = [n for n, m in trained.named_modules() if hasattr(m, "lora_A") and adapters.SLIDER in m.lora_A]
    path = adapter_io.save_lora(tmp_path / adapter_io.ADAPTER_NAME, object, "transformer",
                                adapters.slider_state_dict(trained), trained.peft_config[adapters.SLIDER],
                                {"targets": targets, "rank": 2, "alpha": 2})
    fresh = FAMILY.denoiser(load_pipeline(FAMILY, str(model)))
    adapter_io.load_into(fresh, "transformer", path, adapters.SLIDER)
    adapters.activate(fresh, adapters.SLIDER)
    x, t, cond = batch_inputs(FAMILY, pipe, (4, 8, 8), [PROMPT, "a dog"])
    with torch.no_grad():
        for strength in (1.0, -0.5):
            with adapters.slider_scale(trained, strength), adapters.slider_scale(fresh, strength):
                assert torch.equal(FAMILY.predict(trained, x, t, cond), FAMILY.predict(fresh, x, t, cond))
