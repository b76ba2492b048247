"""Flux.2 (dev with Mistral-3, Klein with Qwen3): flow matching on patchified, batch-normed latents.

The VAE's latents are 2×2-patchified to 4C channels and normalised with the VAE's batch-norm
statistics before the transformer sees them; that normalised (B, 4C, H/2, W/2) tensor is what we
cache and add noise to, as diffusers' Flux.2 training example does. `predict` flattens it to tokens,
builds 4-axis positional ids (T, H, W, L) per batch, and reshapes the prediction back.

One family, two pipeline classes: a model folder's `model_index.json` says whether it is the dev
pipeline or Klein, and `load_layout` picks that class (both share the LoRA loader, so saved adapters
are the same either way).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from sliderstudio.families.base import Conditioning, seeded_generators, step_callback
from sliderstudio.families.flow_transformer import TransformerFlowFamily, guidance_input

PIPELINE_CLASSES = ("Flux2Pipeline", "Flux2KleinPipeline")


def tokens(latents: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) → (B, H·W, C): each patchified latent pixel is one token."""
    return latents.flatten(2).transpose(1, 2)


def untokens(seq: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The inverse of `tokens` (tokens are in row-major order, as their positional ids say)."""
    return seq.transpose(1, 2).reshape(seq.shape[0], seq.shape[2], height, width)


def normalise(vae: Any, patched: torch.Tensor) -> torch.Tensor:
    """The VAE batch-norm's running statistics turn patchified latents into the model's input space."""
    mean = vae.bn.running_mean.view(1, -1, 1, 1).to(patched)
    std = torch.sqrt(vae.bn.running_var.view(1, -1, 1, 1) + vae.config.batch_norm_eps).to(patched)
    return (patched - mean) / std


@dataclass
class Flux2Family(TransformerFlowFamily):
    train_guidance: float = 1.0  # distilled-guidance input for checkpoints that embed it (dev)

    def load_layout(self, folder: Path, kwargs: dict[str, Any]) -> Any | None:
        """Load with the pipeline class the folder was saved from (dev or Klein)."""
        import diffusers

        from sliderstudio.families.loading import check_model_folder

        index = check_model_folder(folder)
        name = index.get("_class_name")
        if name not in PIPELINE_CLASSES or name == self.pipeline_class_name:
            return None
        return getattr(diffusers, name).from_pretrained(str(folder), **kwargs)

    def encode_prompts(self, pipe: Any, prompts: list[str]) -> list[Conditioning]:
        device = pipe.text_encoder.device
        out = []
        with torch.no_grad():
            for prompt in prompts:
                embeds, _ = pipe.encode_prompt(prompt=prompt, device=device, num_images_per_prompt=1)
                out.append(Conditioning({"encoder_hidden_states": embeds.cpu()}))
        return out

    def encode_images(self, pipe: Any, pixels: torch.Tensor) -> torch.Tensor:
        vae = pipe.vae
        with torch.no_grad():
            latents = vae.encode(pixels.to(vae.device, vae.dtype)).latent_dist.mode()
            patched = normalise(vae, type(pipe)._patchify_latents(latents))
        return patched.float().cpu()

    def predict(self, denoiser: torch.nn.Module, noisy: torch.Tensor, timesteps: torch.Tensor,
                cond: Conditioning) -> torch.Tensor:
        """σ as the timestep, tokens in, tokens out; ids are built for this batch's size."""
        from diffusers import Flux2Pipeline

        embeds = cond.kwargs["encoder_hidden_states"]
        seq = tokens(noisy)
        out = denoiser(hidden_states=seq, encoder_hidden_states=embeds, timestep=timesteps.to(noisy.dtype) / 1000,
                       img_ids=Flux2Pipeline._prepare_latent_ids(noisy).to(noisy.device),
                       txt_ids=Flux2Pipeline._prepare_text_ids(embeds).to(noisy.device),
                       guidance=guidance_input(denoiser, noisy.shape[0], noisy, self.train_guidance), return_dict=False)[0]
        return untokens(out[:, :seq.shape[1]], noisy.shape[2], noisy.shape[3])

    def render(self, pipe: Any, prompts: list[str], seed: int, steps: int, guidance: float,
               size: int, negative_prompt: str | None = None,
               on_step: Callable[[int, int], None] | None = None) -> list[Any]:
        """Flux.2 pipelines take no negative prompt (Klein's CFG uses an empty one)."""
        result = pipe(prompt=prompts, num_inference_steps=steps, guidance_scale=guidance,
                      generator=seeded_generators(len(prompts), seed), height=size, width=size, output_type="pil",
                      callback_on_step_end=step_callback(on_step, steps))
        return list(result.images)

    def build_tiny(self, out_dir: Path, seed: int = 0) -> Path:
        """The dev layout (the family's own pipeline class); tests cover Klein with `build_tiny_flux2_klein`."""
        return build_tiny_flux2_dev(out_dir, seed)


def tiny_flux2_transformer(seed: int = 0, text_dim: int = 48, guidance_embeds: bool = False):
    """Two double and two single blocks, 2 heads of 8 dims, 16 patchified channels (4 VAE channels)."""
    from diffusers import Flux2Transformer2DModel

    torch.manual_seed(seed)
    return Flux2Transformer2DModel(patch_size=1, in_channels=16, num_layers=2, num_single_layers=2,
                                   attention_head_dim=8, num_attention_heads=2, joint_attention_dim=text_dim,
                                   timestep_guidance_channels=16, axes_dims_rope=(2, 2, 2, 2),
                                   guidance_embeds=guidance_embeds)


def build_tiny_flux2_klein(out_dir: str | Path, seed: int = 0) -> Path:
    """A tiny Flux.2 Klein pipeline: Qwen3 (16 dims; three tapped layers → 48-dim text tokens), 64 px."""
    from diffusers import FlowMatchEulerDiscreteScheduler, Flux2KleinPipeline

    from sliderstudio.families.tiny_parts import flux2_vae, qwen3_encoder, qwen_tokenizer

    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True)
    pipe = Flux2KleinPipeline(transformer=tiny_flux2_transformer(seed, text_dim=48), scheduler=scheduler,
                              vae=flux2_vae(seed=seed), text_encoder=qwen3_encoder(16, 28, seed + 1),
                              tokenizer=qwen_tokenizer())
    out = Path(out_dir)
    pipe.save_pretrained(out, safe_serialization=True)
    return out


def build_tiny_flux2_dev(out_dir: str | Path, seed: int = 0) -> Path:
    """A tiny Flux.2 dev pipeline: Mistral-3 (16 dims, taps → 48-dim text tokens), guidance embedding."""
    from diffusers import FlowMatchEulerDiscreteScheduler, Flux2Pipeline

    from sliderstudio.families.tiny_parts import flux2_vae, mistral3_encoder, mistral_tokenizer

    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True)
    pipe = Flux2Pipeline(transformer=tiny_flux2_transformer(seed, text_dim=48, guidance_embeds=True),
                         scheduler=scheduler, vae=flux2_vae(seed=seed), text_encoder=mistral3_encoder(16, 30, seed + 1),
                         tokenizer=mistral_tokenizer())
    out = Path(out_dir)
    pipe.save_pretrained(out, safe_serialization=True)
    return out


FLUX2 = Flux2Family(id="flux2", label="Flux.2", pipeline_class_name="Flux2Pipeline",
                    transformer_class_name="Flux2Transformer2DModel",
                    aliases=("flux.2", "flux2-dev", "flux.2-dev", "flux2-klein", "flux.2-klein", "flux2_klein"),
                    flavours=("dev", "klein-4b", "klein-9b"), comfy_lycoris=True,
                    related_pipelines=PIPELINE_CLASSES[1:], single_file_types={"flux-2-dev": "dev"})
FAMILIES = (FLUX2,)
