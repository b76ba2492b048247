"""Cosmos-Predict2: slider targets on the visual path only, the transformer called exactly as the pipeline
calls it (timestep t = σ, input (1 − t)·x₀ + t·ε), the guardrail stand-in offline, and per-sample slider
scales over a batch equal separate forwards."""
import pytest
import torch

from sliderstudio.adapters.targets import resolve_targets, text_path_modules
from sliderstudio.families.base import Conditioning
from sliderstudio.families.cosmos import PassThroughGuardrail
from sliderstudio.families.loading import load_pipeline
from sliderstudio.families.registry import get_family
from sliderstudio.app.selfcheck import attach_random_slider, per_sample_scale_error

FAMILY = get_family("cosmos")
EXPECTED = {"attn1.to_q": 2, "attn1.to_k": 2, "attn1.to_v": 2, "attn1.to_out.0": 2, "patch_embed.proj": 1,
            "proj_out": 1, "time_embed.t_embedder.linear_1": 1, "time_embed.t_embedder.linear_2": 1}


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return FAMILY.build_tiny(tmp_path_factory.mktemp("cosmos") / "model")


@pytest.fixture(scope="module")
def pipe(model):
    return load_pipeline(FAMILY, str(model))


def test_simpletuner_spellings_resolve():
    assert all(get_family(name) is FAMILY for name in ("cosmos2image", "cosmos-predict2", "Cosmos"))


def test_slider_preset_counts_per_entry_and_visual_path_only(model):
    report = resolve_targets(FAMILY, str(model), "slider")
    assert {e.pattern: e.count for e in report.entries} == EXPECTED
    assert text_path_modules(report.module_names) == []
    assert not any(".attn2." in n for n in report.module_names)


def test_cross_attention_exists_but_is_not_selected(model):
    names = {n for n, _ in FAMILY.skeleton(model).named_modules()}
    cross = {n for n in names if ".attn2." in n}
    assert "transformer_blocks.0.attn2.to_k" in cross
    assert cross.isdisjoint(resolve_targets(FAMILY, str(model), "slider").module_names)


def test_offline_pipeline_uses_the_guardrail_stand_in(pipe):
    assert isinstance(pipe.safety_checker, PassThroughGuardrail)


def test_predict_matches_the_pipelines_own_call(pipe):
    """The pipeline feeds x_σ·c_in with timestep t = σ/(1+σ); predict gets (1−t)·x₀ + t·ε and t·1000."""
    g = torch.Generator("cpu").manual_seed(0)
    x0, eps = torch.randn(1, 4, 1, 8, 8, generator=g), torch.randn(1, 4, 1, 8, 8, generator=g)
    sigma = torch.tensor(3.0)
    t = sigma / (sigma + 1)
    embeds = FAMILY.encode_prompts(pipe, ["a red square"])[0].kwargs["encoder_hidden_states"]
    with torch.no_grad():
        pipeline_style = pipe.transformer(hidden_states=(x0 + sigma * eps) * (1 - t), timestep=t.expand(1),
                                          encoder_hidden_states=embeds, padding_mask=torch.zeros(1, 1, 32, 32),
                                          return_dict=False)[0]
        ours = FAMILY.predict(pipe.transformer, (1 - t) * x0 + t * eps, (t * 1000).expand(1),
                              Conditioning({"encoder_hidden_states": embeds}))
    assert torch.allclose(ours, pipeline_style, atol=1e-5)


def test_per_sample_scale_matches_separate_forwards(model):
    pipe = load_pipeline(FAMILY, str(model))
    attach_random_slider(FAMILY, pipe)
    error, effect = per_sample_scale_error(FAMILY, pipe)
    assert effect > 1e-4
    assert error < 1e-5
