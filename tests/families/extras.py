"""Family-specific checks: what only one family has (packing, prompt masks, layouts, assistants, variants).

Each check takes a `Context` and runs from `test_family_suite.test_family_specific`, parametrized over
`EXTRAS` (family id → its checks), so they sit in the same structure as the checks every family gets.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest
import torch
from safetensors.torch import load_file

from sliderstudio.adapters import adapter_io, adapters
from sliderstudio.adapters.targets import matches, resolve_on_module, resolve_targets
from sliderstudio.families.base import Conditioning, Family
from sliderstudio.families.loading import load_pipeline
from tests.families import flow_checks
from tests.families.family_checks import PROMPT, batch_inputs, check_matches_pipeline_step, with_random_slider


@dataclass
class Context:
    """What a family-specific check gets: the family, its tiny model (built on first use), the model's
    pipeline shared by the checks that only read it, other tiny models by name (built once per suite),
    a temporary folder and pytest's monkeypatch."""

    family: Family
    build_model: Callable[[], Path]
    shared_pipe: Callable[[], Any]
    variant: Callable[[str, Callable[[Path], Path]], Path]
    tmp_path: Path
    monkeypatch: pytest.MonkeyPatch

    @property
    def model(self) -> Path:
        return self.build_model()


# --- Chroma ---------------------------------------------------------------------------------------
def chroma_prompt_mask_hides_padding_but_the_first_pad_token(c: Context) -> None:
    from sliderstudio.families.chroma import joint_mask

    cond = c.family.encode_prompts(load_pipeline(c.family, str(c.model)), ["a red square"])[0]
    mask = cond.kwargs["text_mask"]
    assert mask.shape == cond.kwargs["encoder_hidden_states"].shape[:2]
    assert mask[0].sum() == 3 + 1 + 1  # three words, </s>, and the first pad token stay visible
    assert joint_mask(mask, 16).shape == (1, mask.shape[1] + 16) and joint_mask(mask, 16)[0, -16:].eq(1).all()


# --- Cosmos ---------------------------------------------------------------------------------------
def cosmos_offline_pipeline_uses_the_guardrail_stand_in(c: Context) -> None:
    from sliderstudio.families.cosmos import PassThroughGuardrail

    assert isinstance(c.shared_pipe().safety_checker, PassThroughGuardrail)


def cosmos_predict_matches_the_pipelines_own_call(c: Context) -> None:
    """The pipeline feeds x_σ·c_in with timestep t = σ/(1+σ); predict gets (1−t)·x₀ + t·ε and t·1000."""
    pipe = c.shared_pipe()
    g = torch.Generator("cpu").manual_seed(0)
    x0, eps = torch.randn(1, 4, 1, 8, 8, generator=g), torch.randn(1, 4, 1, 8, 8, generator=g)
    sigma = torch.tensor(3.0)
    t = sigma / (sigma + 1)
    embeds = c.family.encode_prompts(pipe, ["a red square"])[0].kwargs["encoder_hidden_states"]
    with torch.no_grad():
        pipeline_style = pipe.transformer(hidden_states=(x0 + sigma * eps) * (1 - t), timestep=t.expand(1),
                                          encoder_hidden_states=embeds, padding_mask=torch.zeros(1, 1, 32, 32),
                                          return_dict=False)[0]
        ours = c.family.predict(pipe.transformer, (1 - t) * x0 + t * eps, (t * 1000).expand(1),
                                Conditioning({"encoder_hidden_states": embeds}))
    assert torch.allclose(ours, pipeline_style, atol=1e-5)


# --- Flux.1 ---------------------------------------------------------------------------------------
def schnell(c: Context) -> Path:
    from sliderstudio.families.flux import build_tiny_flux

    return c.variant("flux-schnell", lambda out: build_tiny_flux(out, schnell=True))


def flux_pack_round_trip(c: Context) -> None:
    from sliderstudio.families.flux import pack, unpack

    latents = torch.randn(2, 4, 8, 6)
    tokens = pack(latents)
    assert tokens.shape == (2, 12, 16)
    assert torch.equal(unpack(tokens, 8, 6), latents)


def flux_guidance_embeds_for_dev_only_and_schnell_mechanics(c: Context) -> None:
    """The suite's mechanics run on dev; schnell (no guidance embedding) gets the same checks here."""
    assert flow_checks.pipeline_with_slider(c.family, c.model)[1].config.guidance_embeds is True
    pipe, denoiser = flow_checks.pipeline_with_slider(c.family, schnell(c))
    assert denoiser.config.guidance_embeds is False
    flow_checks.check_zero_is_base_and_signs_oppose(c.family, pipe, denoiser)
    flow_checks.check_per_sample_scale(c.family, pipe, denoiser)


def flux_assistant_hint_only_for_schnell(c: Context) -> None:
    assert c.family.assistant_hint("schnell") and "assistant" in c.family.assistant_hint("schnell")
    assert c.family.assistant_hint("dev") is None and c.family.assistant_hint() is None


def write_flux_assistant(family: Family, model: Path, path: Path, rank: int = 2,
                         alpha: float = 4.0) -> tuple[Path, float]:
    """A random assistant LoRA on Flux's ordinary targets (overlapping the slider's), in diffusers naming."""
    from diffusers import FluxPipeline

    from sliderstudio.adapters.adapter_io import save_lora

    denoiser = family.denoiser(load_pipeline(family, str(model)))
    names = resolve_on_module(denoiser, family.presets["default"]).module_names
    config = adapters.attach_lora(denoiser, names, rank, alpha, adapter="helper", seed=7)
    generator = torch.Generator().manual_seed(7)
    for name, param in denoiser.named_parameters():
        if ".helper." in name and "lora_B" in name:
            param.data = torch.randn(param.shape, generator=generator) * 0.05
    save_lora(path, FluxPipeline, "transformer", adapters.slider_state_dict(denoiser, "helper"), config, {})
    return path, alpha / rank


def spy_on_training(monkeypatch: pytest.MonkeyPatch, state: dict[str, Any]) -> None:
    """Record the assistant's and the slider's scale at every forward of one layer that carries both."""
    import sliderstudio.engine.trainer as trainer_module

    real_prepare = trainer_module.prepare_session
    state["seen"] = []

    def spying_prepare(*args, **kwargs):
        session = real_prepare(*args, **kwargs)
        layer = next(l for l in adapters.lora_layers(session.denoiser)
                     if adapters.ASSISTANT in l.scaling and adapters.SLIDER in l.scaling)
        layer.register_forward_pre_hook(
            lambda m, _a: state["seen"].append((m.scaling[adapters.ASSISTANT], m.scaling[adapters.SLIDER],
                                                tuple(m.active_adapters))))
        state["before"] = {n: p.detach().clone() for n, p in session.denoiser.named_parameters()
                           if f".{adapters.ASSISTANT}." in n}
        state["session"] = session
        return session

    monkeypatch.setattr(trainer_module, "prepare_session", spying_prepare)


def flux_schnell_assistant_is_frozen_unscaled_and_not_saved(c: Context) -> None:
    from conftest import make_project

    from sliderstudio.adapters.adapter_io import read_tensors
    from sliderstudio.engine.project import load_project
    from sliderstudio.engine.trainer import Trainer

    assistant, per_unit = write_flux_assistant(c.family, schnell(c), c.tmp_path / "assistant.safetensors")
    root = make_project(c.tmp_path / "proj", schnell(c), family="flux", pairs=2, neutral=1,
                        config={"model_flavour": "schnell", "assistant_lora_path": str(assistant),
                                "assistant_lora_strength": 0.7, "max_train_steps": 3, "learning_rate": 1e-2})
    state: dict[str, Any] = {}
    spy_on_training(c.monkeypatch, state)
    adapter = Trainer(load_project(root), device="cpu").run()

    session, seen = state["session"], state["seen"]
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


# --- Flux.2 ---------------------------------------------------------------------------------------
def klein(c: Context) -> Path:
    from sliderstudio.families.flux2 import build_tiny_flux2_klein

    return c.variant("flux2-klein", build_tiny_flux2_klein)


def flux2_double_block_to_out_is_a_module_list(c: Context) -> None:
    """The single-block `to_out` is a bare Linear (selected), the double-block one a ModuleList (not)."""
    report = resolve_targets(c.family, str(c.model), "slider")
    skeleton = c.family.skeleton(c.model)
    assert type(skeleton.get_submodule("transformer_blocks.0.attn.to_out")).__name__ == "ModuleList"
    assert "transformer_blocks.0.attn.to_out" not in report.module_names
    assert "single_transformer_blocks.1.attn.to_out" in report.module_names


def flux2_bare_to_out_entry_reports_the_module_list_as_unsupported(c: Context) -> None:
    report = resolve_targets(c.family, str(c.model), ["attn.to_out"])
    assert report.entries[0].count == 2 and report.entries[0].unsupported == {"ModuleList": 2}


def flux2_latents_are_patchified_and_batch_normalised(c: Context) -> None:
    from sliderstudio.families.flux2 import tokens, untokens

    pipe = load_pipeline(c.family, str(c.model))
    pixels = torch.rand(1, 3, 64, 64) * 2 - 1
    latents = c.family.encode_images(pipe, pixels)
    assert latents.shape == (1, 16, 4, 4)
    raw = pipe.vae.encode(pixels).latent_dist.mode()
    mean, var = pipe.vae.bn.running_mean, pipe.vae.bn.running_var
    expected = (pipe._patchify_latents(raw) - mean.view(1, -1, 1, 1)) / torch.sqrt(
        var.view(1, -1, 1, 1) + pipe.vae.config.batch_norm_eps)
    assert torch.allclose(latents, expected, atol=1e-6)
    seq = tokens(latents)
    assert seq.shape == (1, 16, 16) and torch.equal(untokens(seq, 4, 4), latents)


def flux2_dev_and_klein_layouts_load_and_klein_mechanics(c: Context) -> None:
    """The suite's mechanics run on the dev layout; Klein (its own pipeline class) gets the same checks."""
    assert type(load_pipeline(c.family, str(c.model))).__name__ == "Flux2Pipeline"
    pipe, denoiser = flow_checks.pipeline_with_slider(c.family, klein(c))
    assert type(pipe).__name__ == "Flux2KleinPipeline"
    flow_checks.check_zero_is_base_and_signs_oppose(c.family, pipe, denoiser)
    flow_checks.check_per_sample_scale(c.family, pipe, denoiser)


def flux2_klein_prediction_drives_the_pipelines_own_sampler(c: Context) -> None:
    from sliderstudio.families.flux2 import untokens

    check_matches_pipeline_step(c.family, klein(c), lambda seq: untokens(seq, 4, 4))


def flux2_klein_passes_the_whole_selfcheck(c: Context) -> None:
    from sliderstudio.app.selfcheck import check_preview, check_training, write_tiny_project

    adapter = check_training(write_tiny_project(c.tmp_path / "project", klein(c), c.family), klein(c), c.family)
    reloaded, zero_is_base_and_signs_differ = check_preview(c.family, klein(c), adapter)
    assert reloaded and zero_is_base_and_signs_differ


# --- HiDream --------------------------------------------------------------------------------------
def hidream_text_stream_exists_and_is_not_selected(c: Context) -> None:
    names = [n for n, _ in c.family.skeleton(c.model).named_modules()]
    text_stream = [n for n in names if n.endswith(("to_q_t", "to_k_t", "to_v_t", "to_out_t"))]
    selected = resolve_targets(c.family, str(c.model), "slider").module_names
    assert len(text_stream) == 4 and not set(text_stream) & set(selected)


def hidream_training_mode_layout_is_folded_back(c: Context) -> None:
    pipe = load_pipeline(c.family, str(c.model))
    denoiser = c.family.denoiser(pipe)
    cond = c.family.collate(c.family.encode_prompts(pipe, [PROMPT, "a dog"]), torch.device("cpu"), torch.float32, 64)
    x, t = torch.randn(2, 4, 8, 8), torch.tensor([300.0, 700.0])
    with torch.no_grad():
        inference = c.family.predict(denoiser, x, t, cond)
        denoiser.train()
        training = c.family.predict(denoiser, x, t, cond)
        denoiser.eval()
    assert training.shape == x.shape and torch.allclose(training, inference, atol=1e-5)


def hidream_render_keeps_the_requested_size(c: Context) -> None:
    pipe = load_pipeline(c.family, str(c.model))
    assert c.family.render(pipe, [PROMPT], 0, 1, 1.0, 64)[0].size == (64, 64)
    assert c.family.default_size(pipe) == 128 * pipe.vae_scale_factor  # restored after the render


# --- Kandinsky 5 ----------------------------------------------------------------------------------
def kandinsky5_template_prefix_is_dropped_exactly(c: Context) -> None:
    pipe = load_pipeline(c.family, str(c.model))
    # "a red square" + "<|im_end|>": the 40 template tokens are gone.
    assert c.family.encode_prompts(pipe, ["a red square"])[0].kwargs["encoder_hidden_states"].shape[1] == 4


def kandinsky5_render_keeps_the_requested_size_and_the_pipelines_resolutions(c: Context) -> None:
    pipe = load_pipeline(c.family, str(c.model))
    before = list(pipe.resolutions)
    assert c.family.render(pipe, [PROMPT], 0, 1, 1.0, 64)[0].size == (64, 64)
    assert pipe.resolutions == before


def kandinsky5_slider_file_round_trips_without_the_diffusers_lora_loader(c: Context) -> None:
    """Our own file layout and loader (used where a pipeline has no LoRA mixin) give the same slider back."""
    family = c.family
    pipe, trained = with_random_slider(family, c.model)
    targets = [n for n, m in trained.named_modules() if hasattr(m, "lora_A") and adapters.SLIDER in m.lora_A]
    path = adapter_io.save_lora(c.tmp_path / adapter_io.ADAPTER_NAME, object, "transformer",
                                adapters.slider_state_dict(trained), trained.peft_config[adapters.SLIDER],
                                {"targets": targets, "rank": 2, "alpha": 2})
    fresh = family.denoiser(load_pipeline(family, str(c.model)))
    adapter_io.load_into(fresh, "transformer", path, adapters.SLIDER)
    adapters.activate(fresh, adapters.SLIDER)
    x, t, cond = batch_inputs(family, pipe, (4, 8, 8), [PROMPT, "a dog"])
    with torch.no_grad():
        for strength in (1.0, -0.5):
            with adapters.slider_scale(trained, strength), adapters.slider_scale(fresh, strength):
                assert torch.equal(family.predict(trained, x, t, cond), family.predict(fresh, x, t, cond))


# --- LTX-Video ------------------------------------------------------------------------------------
def ltxvideo_latents_are_normalised_one_frame_clips(c: Context) -> None:
    pipe = load_pipeline(c.family, str(c.model))
    pixels = torch.rand(2, 3, 32, 32) * 2 - 1
    latents = c.family.encode_images(pipe, pixels)
    assert latents.shape == (2, 4, 1, 4, 4)
    raw = pipe.vae.encode(pixels.unsqueeze(2)).latent_dist.mode()
    undone = pipe._denormalize_latents(latents, pipe.vae.latents_mean, pipe.vae.latents_std,
                                       pipe.vae.config.scaling_factor)
    assert torch.allclose(undone, raw, atol=1e-5)  # exactly what the pipeline undoes before decoding


# --- Qwen-Image -----------------------------------------------------------------------------------
def qwen_image_packing_round_trips(c: Context) -> None:
    from sliderstudio.families.qwen_image import pack, unpack

    x = torch.randn(2, 4, 8, 6)
    assert pack(x).shape == (2, 12, 16) and torch.equal(unpack(pack(x), 8, 6), x)


def qwen_image_template_prefix_is_dropped_exactly(c: Context) -> None:
    pipe = load_pipeline(c.family, str(c.model))
    # "a red square" + "<|im_end|>", "\n", "<|im_start|>", "assistant", "\n": the 34 template tokens are gone.
    assert c.family.encode_prompts(pipe, ["a red square"])[0].kwargs["encoder_hidden_states"].shape[1] == 3 + 5


# --- Stable Cascade -------------------------------------------------------------------------------
def stable_cascade_prior_and_decoder_folders_load_as_one_pipeline(c: Context) -> None:
    pipe = c.shared_pipe()
    assert type(pipe).__name__ == "StableCascadeCombinedPipeline"
    assert c.family.denoiser(pipe) is pipe.prior_prior
    assert pipe.prior_pipe.config.resolution_multiple == 8.0 and pipe.decoder_pipe.config.latent_dim_scale == 2.0


def stable_cascade_a_saved_combined_pipeline_loads_too(c: Context) -> None:
    """diffusers 0.42 cannot resolve Stage A (PaellaVQModel) from model_index.json; the family loads it."""
    pipe = c.shared_pipe()
    pipe.save_pretrained(c.tmp_path / "combined", safe_serialization=True)
    again = load_pipeline(c.family, str(c.tmp_path / "combined"))
    assert type(again).__name__ == "StableCascadeCombinedPipeline"
    for name in ("vqgan", "prior_prior", "decoder"):
        left, right = getattr(pipe, name).state_dict(), getattr(again, name).state_dict()
        assert all(torch.equal(left[k], right[k]) for k in left)
    assert again.decoder_pipe.vqgan is again.vqgan


def stable_cascade_images_encode_to_the_prior_latent_grid(c: Context) -> None:
    pipe = c.shared_pipe()
    latents = c.family.encode_images(pipe, torch.rand(2, 3, 32, 32) * 2 - 1)
    # the same grid the prior samples at this size: ceil(32 / resolution_multiple) = 4
    assert latents.shape == (2, pipe.prior_prior.config.in_channels, 4, 4)


def stable_cascade_training_noise_follows_the_wuerstchen_schedule(c: Context) -> None:
    schedule = c.family.noise_schedule(c.shared_pipe())
    x0, eps, t = torch.ones(1, 4, 4, 4), torch.zeros(1, 4, 4, 4), torch.tensor([0.5])
    noisy, target = c.family.noisy_and_target(schedule, x0, eps, t)
    alpha = schedule._alpha_cumprod(t, "cpu")
    assert torch.allclose(noisy, alpha.sqrt() * x0) and torch.equal(target, eps)


def stable_cascade_full_size_stage_c_encoder_has_efficientnet_v2_s_shape_and_key_names(c: Context) -> None:
    """Stability's effnet_encoder.safetensors = torchvision efficientnet_v2_s().features + mapper."""
    from safetensors.torch import save_file

    from sliderstudio.families.stage_c_encoder import StageCEncoder, load_encoder

    encoder = StageCEncoder()
    backbone = sum(p.numel() for n, p in encoder.named_parameters() if n.startswith("backbone."))
    assert backbone == 21_458_488 - 1280 * 1000 - 1000  # torchvision's count without the classifier
    state = encoder.state_dict()
    assert {"backbone.0.0.weight", "backbone.1.0.block.0.1.running_var", "backbone.4.0.block.2.fc1.bias",
            "backbone.7.0.weight", "mapper.0.weight", "mapper.1.running_mean"} <= set(state)
    official = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    save_file(official, str(c.tmp_path / "effnet_encoder.safetensors"))
    loaded = load_encoder(c.tmp_path / "effnet_encoder.safetensors")
    assert torch.equal(loaded.state_dict()["mapper.0.weight"], state["mapper.0.weight"])
    save_file({**official, "extra.weight": torch.zeros(1)}, str(c.tmp_path / "bad.safetensors"))
    with pytest.raises(Exception, match="not a Stage C encoder"):
        load_encoder(c.tmp_path / "bad.safetensors")


# --- Wan ------------------------------------------------------------------------------------------
def wan_images_encode_to_one_frame_latents(c: Context) -> None:
    pipe = load_pipeline(c.family, str(c.model))
    latents = c.family.encode_images(pipe, torch.rand(2, 3, 32, 32) * 2 - 1)
    assert latents.shape == (2, 4, 1, 8, 8)


# --- Z-Image --------------------------------------------------------------------------------------
def z_image_flavours_and_assistant_hint(c: Context) -> None:
    assert c.family.flavours == ("turbo", "base") and "assistant" in c.family.assistant_hint("turbo")
    assert c.family.assistant_hint("base") is None


def z_image_wildcard_segments_match_one_level(c: Context) -> None:
    assert matches("layers.3.attention.to_q", "layers.*.attention.to_q")
    assert not matches("context_refiner.0.attention.to_q", "layers.*.attention.to_q")
    assert not matches("layers.3.attention.to_q", "layers.*.to_q")  # `*` is exactly one segment


def z_image_default_preset_reaches_the_caption_refiner(c: Context) -> None:
    default = resolve_targets(c.family, str(c.model), "default").module_names
    assert any(n.startswith("context_refiner") for n in default) and len(default) == 16


def make_z_image_assistant(family: Family, model: Path, path: Path) -> tuple[Path, int]:
    """A random LoRA over every attention projection (caption refiner included), saved as diffusers does."""
    from diffusers import ZImagePipeline

    denoiser = family.denoiser(load_pipeline(family, str(model)))
    names = resolve_targets(family, str(model), "default").module_names
    config = adapters.attach_lora(denoiser, names, 2, 4, adapter="turbo_fix", seed=5)
    gen = torch.Generator().manual_seed(5)
    for name, param in denoiser.named_parameters():
        if ".turbo_fix." in name and "lora_B" in name:
            param.data = torch.randn(param.shape, generator=gen) * 0.05
    state = adapters.slider_state_dict(denoiser, "turbo_fix")
    path.mkdir(parents=True)
    ZImagePipeline.save_lora_weights(str(path), transformer_lora_layers=state,
                                     transformer_lora_adapter_metadata=config.to_dict(), safe_serialization=True)
    return path / "pytorch_lora_weights.safetensors", len(names)


def z_image_assistant_adapter_is_frozen_unscaled_and_not_saved(c: Context) -> None:
    from conftest import make_project

    from sliderstudio.engine.project import load_project
    from sliderstudio.engine.trainer import Trainer

    assistant, assistant_modules = make_z_image_assistant(c.family, c.model, c.tmp_path / "assistant")
    root = make_project(c.tmp_path / "proj", c.model, family="z_image",
                        config={"assistant_lora_path": str(assistant), "assistant_lora_strength": 0.7,
                                "max_train_steps": 3, "learning_rate": 1e-2})
    state: dict[str, Any] = {}
    spy_on_training(c.monkeypatch, state)
    out = Trainer(load_project(root), device="cpu").run()
    session, seen = state["session"], state["seen"]
    denoiser = session.denoiser

    # Loaded at its own strength (0.7 × alpha/rank = 0.7 × 4/2) and held there during every forward.
    assert seen and all(abs(a - 0.7 * 2.0) < 1e-9 for a, _, _ in seen)
    assert {round(s, 6) for _, s, _ in seen} >= {0.5, -0.5}  # the slider followed the buckets
    assert all(abs(s - 1.4) < 1e-9 for s in adapters.get_scales(denoiser, adapters.ASSISTANT))
    assistant_params = [p for n, p in denoiser.named_parameters() if f".{adapters.ASSISTANT}." in n]
    assert len(assistant_params) == 2 * assistant_modules and not any(p.requires_grad for p in assistant_params)
    optimised = {id(p) for group in session.optimizer.param_groups for p in group["params"]}
    assert not any(id(p) in optimised for p in assistant_params)
    # The assistant's weights are exactly what the file holds (never trained).
    stored = load_file(str(assistant))
    lora_b = [k for k in stored if "lora_B" in k][0]
    module = lora_b.split("transformer.", 1)[1].rsplit(".lora_B", 1)[0]
    live = dict(denoiser.named_parameters())[f"{module}.lora_B.{adapters.ASSISTANT}.weight"]
    assert torch.equal(live.detach(), stored[lora_b])
    # The output file holds the slider only.
    tensors = load_file(str(out))
    meta = adapter_io.read_metadata(out)
    assert tensors and all("assistant" not in k and "turbo_fix" not in k for k in tensors)
    assert len(tensors) == 2 * len(meta["targets"]) == 2 * 12
    assert json.dumps(meta).count("assistant") == 0


EXTRAS: dict[str, tuple[Callable[[Context], None], ...]] = {
    "chroma": (chroma_prompt_mask_hides_padding_but_the_first_pad_token,),
    "cosmos": (cosmos_offline_pipeline_uses_the_guardrail_stand_in, cosmos_predict_matches_the_pipelines_own_call),
    "flux": (flux_pack_round_trip, flux_guidance_embeds_for_dev_only_and_schnell_mechanics,
             flux_assistant_hint_only_for_schnell, flux_schnell_assistant_is_frozen_unscaled_and_not_saved),
    "flux2": (flux2_double_block_to_out_is_a_module_list, flux2_bare_to_out_entry_reports_the_module_list_as_unsupported,
              flux2_latents_are_patchified_and_batch_normalised, flux2_dev_and_klein_layouts_load_and_klein_mechanics,
              flux2_klein_prediction_drives_the_pipelines_own_sampler, flux2_klein_passes_the_whole_selfcheck),
    "hidream": (hidream_text_stream_exists_and_is_not_selected, hidream_training_mode_layout_is_folded_back,
                hidream_render_keeps_the_requested_size),
    "kandinsky5": (kandinsky5_template_prefix_is_dropped_exactly,
                   kandinsky5_render_keeps_the_requested_size_and_the_pipelines_resolutions,
                   kandinsky5_slider_file_round_trips_without_the_diffusers_lora_loader),
    "ltxvideo": (ltxvideo_latents_are_normalised_one_frame_clips,),
    "qwen_image": (qwen_image_packing_round_trips, qwen_image_template_prefix_is_dropped_exactly),
    "stable_cascade": (stable_cascade_prior_and_decoder_folders_load_as_one_pipeline,
                       stable_cascade_a_saved_combined_pipeline_loads_too,
                       stable_cascade_images_encode_to_the_prior_latent_grid,
                       stable_cascade_training_noise_follows_the_wuerstchen_schedule,
                       stable_cascade_full_size_stage_c_encoder_has_efficientnet_v2_s_shape_and_key_names),
    "wan": (wan_images_encode_to_one_frame_latents,),
    "z_image": (z_image_flavours_and_assistant_hint, z_image_wildcard_segments_match_one_level,
                z_image_default_preset_reaches_the_caption_refiner,
                z_image_assistant_adapter_is_frozen_unscaled_and_not_saved),
}
