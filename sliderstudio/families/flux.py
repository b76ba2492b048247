"""Flux.1 (dev, schnell, krea): flow matching on 2×2-packed latents, σ in [0, 1] as the timestep.

Latents are cached unpacked (B, C, H, W) so noise, targets and the cache stay layout-independent;
`predict` packs them into Flux's token sequence, builds the positional ids for that size, and
unpacks the prediction again. Guidance-distilled checkpoints (dev) take the distilled guidance value
as an input; schnell has no guidance embedding and is timestep-distilled, which is why training on
it wants an assistant adapter (SPEC §2.3).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from sliderstudio.families.base import Conditioning
from sliderstudio.families.controlnet_support import ControlledDenoiser, ControlNetSupport
from sliderstudio.families.flow_transformer import TransformerFlowFamily, guidance_input

SCHNELL_HINT = ("Flux schnell is timestep-distilled: training a slider directly on it drifts from the distilled "
                "behaviour. Load an assistant adapter (assistant_lora_path, e.g. a schnell training adapter); it "
                "stays frozen at its own strength and is not saved with the slider.")


def pack(latents: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) → (B, H/2·W/2, 4C): Flux's 2×2 patch tokens (diffusers' own packing)."""
    from diffusers import FluxPipeline

    b, c, h, w = latents.shape
    return FluxPipeline._pack_latents(latents, b, c, h, w)


def unpack(tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The inverse of `pack` for a latent of `height` × `width`."""
    from diffusers import FluxPipeline

    return FluxPipeline._unpack_latents(tokens, height, width, vae_scale_factor=1)


def image_ids(latents: torch.Tensor) -> torch.Tensor:
    """Positional ids (row, column) of the packed tokens of this latent size."""
    from diffusers import FluxPipeline

    _, _, h, w = latents.shape
    return FluxPipeline._prepare_latent_image_ids(latents.shape[0], h // 2, w // 2, latents.device, latents.dtype)


def text_ids(embeds: torch.Tensor) -> torch.Tensor:
    """Text tokens all sit at position zero in Flux's 3-axis RoPE."""
    return torch.zeros(embeds.shape[1], 3, device=embeds.device, dtype=embeds.dtype)


@dataclass
class FluxFamily(TransformerFlowFamily):
    train_guidance: float = 1.0  # distilled-guidance input while training (SimpleTuner's default)

    def encode_prompts(self, pipe: Any, prompts: list[str]) -> list[Conditioning]:
        device = pipe.text_encoder.device
        out = []
        with torch.no_grad():
            for prompt in prompts:
                embeds, pooled, _ = pipe.encode_prompt(prompt=prompt, prompt_2=None, device=device,
                                                       num_images_per_prompt=1)
                out.append(Conditioning({"encoder_hidden_states": embeds.cpu(), "pooled_projections": pooled.cpu()}))
        return out

    def predict(self, denoiser: torch.nn.Module, noisy: torch.Tensor, timesteps: torch.Tensor,
                cond: Conditioning) -> torch.Tensor:
        """Flux takes σ (timestep / 1000), packed tokens and positional ids; returns unpacked velocity."""
        embeds = cond.kwargs["encoder_hidden_states"]
        out = denoiser(hidden_states=pack(noisy), timestep=timesteps.to(noisy.dtype) / 1000,
                       guidance=guidance_input(denoiser, noisy.shape[0], noisy, self.train_guidance),
                       pooled_projections=cond.kwargs["pooled_projections"], encoder_hidden_states=embeds,
                       txt_ids=text_ids(embeds), img_ids=image_ids(noisy), return_dict=False)[0]
        return unpack(out, noisy.shape[2], noisy.shape[3])

    def folder_flavour(self, folder: Path) -> str | None:
        """dev embeds the distilled guidance and schnell does not: the transformer's config says which."""
        from sliderstudio.families.folder_configs import component_config

        transformer = component_config(folder, "transformer")
        if "guidance_embeds" not in transformer:
            return None
        return "dev" if transformer["guidance_embeds"] else "schnell"

    def assistant_hint(self, flavour: str | None = None) -> str | None:
        return SCHNELL_HINT if flavour and "schnell" in flavour.lower() else None

    def build_tiny(self, out_dir: Path, seed: int = 0) -> Path:
        return build_tiny_flux(out_dir, seed)


def tiny_flux_transformer(seed: int = 0, guidance_embeds: bool = True):
    """Two double and two single blocks, 2 heads of 8 dims, 4 latent channels (16 packed)."""
    from diffusers import FluxTransformer2DModel

    torch.manual_seed(seed)
    return FluxTransformer2DModel(patch_size=1, in_channels=16, num_layers=2, num_single_layers=2,
                                  attention_head_dim=8, num_attention_heads=2, joint_attention_dim=32,
                                  pooled_projection_dim=32, guidance_embeds=guidance_embeds, axes_dims_rope=(4, 2, 2))


def build_tiny_flux(out_dir: str | Path, seed: int = 0, schnell: bool = False) -> Path:
    """A tiny Flux pipeline (dev-like with guidance embedding and dynamic shift, or schnell-like)."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline

    from sliderstudio.families.tiny import tiny_clip, tiny_tokenizer
    from sliderstudio.families.tiny_parts import flow_vae, t5_encoder, t5_tokenizer

    scheduler = (FlowMatchEulerDiscreteScheduler(shift=1.0) if schnell else
                 FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True, base_shift=0.5,
                                                 max_shift=1.15, base_image_seq_len=256, max_image_seq_len=4096))
    pipe = FluxPipeline(transformer=tiny_flux_transformer(seed, guidance_embeds=not schnell), scheduler=scheduler,
                        vae=flow_vae(seed=seed), text_encoder=tiny_clip(False, 32, seed), tokenizer=tiny_tokenizer(),
                        text_encoder_2=t5_encoder(32, seed + 1), tokenizer_2=t5_tokenizer())
    out = Path(out_dir)
    pipe.save_pretrained(out, safe_serialization=True)
    return out


def _xlabs(controlnet: torch.nn.Module) -> bool:
    """XLabs-style Flux ControlNets read pixels through their own hint block; InstantX-style ones read latents."""
    return getattr(controlnet, "input_hint_block", None) is not None


class ControlledFlux(ControlledDenoiser):
    """Flux transformer + Flux ControlNet, called like the transformer (diffusers' Flux ControlNet pipeline rules).

    The ControlNet takes the same packed tokens, ids and σ; its own guidance input only when it embeds
    guidance. An InstantX-style ControlNet reads the packed VAE latents of the control image, an
    XLabs-style one the pixels, and then its block samples repeat over the transformer's blocks.
    """

    def __init__(self, denoiser: torch.nn.Module, controlnet: torch.nn.Module, scale: float = 1.0):
        if getattr(controlnet, "union", False):
            from sliderstudio.kernel.errors import ConfigError

            raise ConfigError("a Flux ControlNet-Union needs a control mode per image; Slider Studio trains sliders "
                              "on single-mode Flux ControlNets", key="controlnet_model_name_or_path")
        super().__init__(denoiser, controlnet, scale)

    def forward(self, hidden_states: torch.Tensor, timestep: torch.Tensor, encoder_hidden_states: torch.Tensor,
                pooled_projections: torch.Tensor, txt_ids: torch.Tensor, img_ids: torch.Tensor,
                guidance: torch.Tensor | None = None, return_dict: bool = False, **kwargs: Any) -> Any:
        control = self.control()
        if not _xlabs(self.controlnet):
            control = pack(control)
        cn_guidance = None
        if self.controlnet.config.guidance_embeds:
            cn_guidance = guidance if guidance is not None else torch.ones(hidden_states.shape[0],
                                                                           device=hidden_states.device)
        blocks, singles = self.controlnet(hidden_states=hidden_states, controlnet_cond=control,
                                          conditioning_scale=self.scale, timestep=timestep, guidance=cn_guidance,
                                          pooled_projections=pooled_projections,
                                          encoder_hidden_states=encoder_hidden_states, txt_ids=txt_ids,
                                          img_ids=img_ids, return_dict=False)
        return self.denoiser(hidden_states=hidden_states, timestep=timestep, guidance=guidance,
                             pooled_projections=pooled_projections, encoder_hidden_states=encoder_hidden_states,
                             controlnet_block_samples=blocks, controlnet_single_block_samples=singles,
                             txt_ids=txt_ids, img_ids=img_ids, controlnet_blocks_repeat=_xlabs(self.controlnet),
                             return_dict=return_dict, **kwargs)


def flux_control_input(pipe: Any, controlnet: torch.nn.Module, pixels: torch.Tensor) -> torch.Tensor:
    """Control images (in [-1, 1]): XLabs ControlNets read them as they are, InstantX ones as (unpacked) latents."""
    if _xlabs(controlnet):
        return pixels.float().cpu()
    return FLUX.encode_images(pipe, pixels)


FLUX_CONTROLNET = ControlNetSupport(
    "FluxControlNetModel", "FluxControlNetPipeline", ControlledFlux, image_kwarg="control_image",
    encode=flux_control_input, tag=lambda cn: "pixels" if _xlabs(cn) else "latents")

FLUX = FluxFamily(id="flux", label="Flux.1", pipeline_class_name="FluxPipeline",
                  transformer_class_name="FluxTransformer2DModel",
                  aliases=("flux.1", "flux1", "flux-dev", "flux.1-dev", "flux-schnell", "flux.1-schnell",
                           "flux_krea", "flux.1-krea"),
                  flavours=("dev", "schnell", "krea"), controlnet=FLUX_CONTROLNET, comfy_lycoris=True,
                  cudnn_attention_backward=False,
                  single_file_types={"flux-dev": "dev", "flux-schnell": "schnell"})
FAMILIES = (FLUX,)
