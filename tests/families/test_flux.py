"""Flux.1: slider targets on the real module tree, packing, slider mechanics, and the schnell
assistant adapter (frozen, never scaled by a bucket's strength, never saved)."""
import json

import pytest
import torch

from sliderstudio.adapters import adapters
from sliderstudio.adapters.adapter_io import read_tensors, save_lora
from sliderstudio.adapters.targets import resolve_on_module
from sliderstudio.families.flux import FLUX, build_tiny_flux, pack, unpack
from sliderstudio.families.loading import load_pipeline
from sliderstudio.families.registry import get_family
from tests.families.family_checks import check_matches_pipeline_step
from tests.families.flow_checks import (
    check_per_sample_scale, check_slider_targets, check_zero_is_base_and_signs_oppose, pipeline_with_slider,
)

CONTEXT = ["attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj", "attn.to_add_out", "context_embedder",
           "ff_context.net.0.proj", "time_text_embed.text_embedder.linear_1"]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return FLUX.build_tiny(tmp_path_factory.mktemp("flux") / "model")


@pytest.fixture(scope="module")
def schnell(tmp_path_factory):
    return build_tiny_flux(tmp_path_factory.mktemp("schnell") / "model", schnell=True)


def test_slider_preset_is_the_image_stream_only(model):
    report = check_slider_targets(FLUX, model, {"attn.to_q": 4, "attn.to_k": 4, "attn.to_v": 4, "attn.to_out.0": 2},
                                  CONTEXT)
    # double blocks give q/k/v/out, single blocks q/k/v (they have no to_out)
    assert sum(n.startswith("single_transformer_blocks.") for n in report.module_names) == 6


def test_pack_round_trip():
    latents = torch.randn(2, 4, 8, 6)
    tokens = pack(latents)
    assert tokens.shape == (2, 12, 16)
    assert torch.equal(unpack(tokens, 8, 6), latents)


@pytest.mark.parametrize("flavour", ["dev", "schnell"])
def test_strength_zero_is_base_and_per_sample_scale(model, schnell, flavour):
    pipe, denoiser = pipeline_with_slider(FLUX, model if flavour == "dev" else schnell)
    assert denoiser.config.guidance_embeds is (flavour == "dev")
    check_zero_is_base_and_signs_oppose(FLUX, pipe, denoiser)
    check_per_sample_scale(FLUX, pipe, denoiser)


def test_training_prediction_drives_the_pipelines_own_sampler(model):
    """Timestep convention, latent layout and caption encoding agree with the diffusers pipeline."""
    check_matches_pipeline_step(FLUX, model, lambda latents: unpack(latents, 8, 8))


@pytest.mark.parametrize("name", ["flux", "flux.1", "FLUX.1-dev", "flux-schnell", "flux1"])
def test_simpletuner_spellings(name):
    assert get_family(name) is FLUX


def test_assistant_hint_only_for_schnell():
    assert FLUX.assistant_hint("schnell") and "assistant" in FLUX.assistant_hint("schnell")
    assert FLUX.assistant_hint("dev") is None and FLUX.assistant_hint() is None


def write_assistant(model, path, rank=2, alpha=4.0):
    """A random assistant LoRA on Flux's ordinary targets (overlapping the slider's), in diffusers naming."""
    from diffusers import FluxPipeline

    denoiser = FLUX.denoiser(load_pipeline(FLUX, str(model)))
    names = resolve_on_module(denoiser, FLUX.presets["default"]).module_names
    config = adapters.attach_lora(denoiser, names, rank, alpha, adapter="helper", seed=7)
    generator = torch.Generator().manual_seed(7)
    for name, param in denoiser.named_parameters():
        if ".helper." in name and "lora_B" in name:
            param.data = torch.randn(param.shape, generator=generator) * 0.05
    save_lora(path, FluxPipeline, "transformer", adapters.slider_state_dict(denoiser, "helper"), config, {})
    return path, alpha / rank


def test_schnell_assistant_is_frozen_unscaled_and_not_saved(schnell, tmp_path, monkeypatch):
    from conftest import make_project

    import sliderstudio.engine.trainer as trainer_module
    from sliderstudio.engine.project import load_project

    assistant, per_unit = write_assistant(schnell, tmp_path / "assistant.safetensors")
    root = make_project(tmp_path / "proj", schnell, family="flux", pairs=2, neutral=1,
                        config={"model_flavour": "schnell", "assistant_lora_path": str(assistant),
                                "assistant_lora_strength": 0.7, "max_train_steps": 3, "learning_rate": 1e-2})
    seen, state = [], {}
    real_prepare = trainer_module.prepare_session

    def spying_prepare(project, log, device=None):
        session = real_prepare(project, log, device)
        layer = next(l for l in adapters.lora_layers(session.denoiser)
                     if adapters.ASSISTANT in l.scaling and adapters.SLIDER in l.scaling)
        layer.register_forward_pre_hook(
            lambda m, _a: seen.append((m.scaling[adapters.ASSISTANT], m.scaling[adapters.SLIDER],
                                       tuple(m.active_adapters))))
        state["before"] = {n: p.detach().clone() for n, p in session.denoiser.named_parameters()
                           if f".{adapters.ASSISTANT}." in n}
        state["session"] = session
        return session

    monkeypatch.setattr(trainer_module, "prepare_session", spying_prepare)
    adapter = trainer_module.Trainer(load_project(root), device="cpu").run()

    session = state["session"]
    assistant_params = {n: p for n, p in session.denoiser.named_parameters() if f".{adapters.ASSISTANT}." in n}
    assert assistant_params and state["before"].keys() == assistant_params.keys()
    assert all(torch.equal(p, state["before"][n]) and not p.requires_grad for n, p in assistant_params.items())
    optimised = {id(p) for group in session.optimizer.param_groups for p in group["params"]}
    assert not optimised & {id(p) for p in assistant_params.values()}
    # the assistant keeps its own strength in every forward; the slider follows the buckets (±0.5)
    assert seen and all(abs(a - 0.7 * per_unit) < 1e-9 for a, _, _ in seen)
    assert {round(s, 6) for _, s, _ in seen} >= {0.5, -0.5}
    assert all(set(active) == {adapters.ASSISTANT, adapters.SLIDER} for _, _, active in seen)
    assert all(abs(s - 0.7 * per_unit) < 1e-9 for s in adapters.get_scales(session.denoiser, adapters.ASSISTANT))
    saved = read_tensors(adapter)
    assert saved and not any("assistant" in k or "helper" in k for k in saved)
    assert len(saved) == 2 * len(session.targets)
    lines = [json.loads(l) for l in (root / "output" / "metrics.jsonl").read_text().splitlines()]
    assert len(lines) == 3
