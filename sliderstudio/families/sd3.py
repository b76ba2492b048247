"""Stable Diffusion 3 / 3.5 (MMDiT): flow matching on unpacked latents, raw timesteps (σ × 1000).

The transformer patchifies internally, so latents stay (B, C, H, W) end to end. Text conditioning is
two CLIP encoders (hidden states + pooled) and T5; the joint blocks keep image and text streams in
separate projections (`to_*` vs `add_*`), which is what lets a slider stay on the image side.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from sliderstudio.families.base import Conditioning
from sliderstudio.families.controlnet_support import ControlledDenoiser, ControlNetSupport, vae_latents
from sliderstudio.families.flow_transformer import TransformerFlowFamily


class ControlledSD3(ControlledDenoiser):
    """SD3 transformer + SD3 ControlNet, called like the transformer.

    As diffusers' SD3 ControlNet pipeline does: an InstantX-style ControlNet
    (`force_zeros_for_pooled_projection`) sees zero pooled projections, and one without its own
    `joint_attention_dim` gets no text states; its block samples go in as
    `block_controlnet_hidden_states`.
    """

    def forward(self, hidden_states: torch.Tensor, timestep: torch.Tensor, encoder_hidden_states: torch.Tensor,
                pooled_projections: torch.Tensor, return_dict: bool = False, **kwargs: Any) -> Any:
        cfg = self.controlnet.config
        pooled = torch.zeros_like(pooled_projections) if cfg.force_zeros_for_pooled_projection else pooled_projections
        text = encoder_hidden_states if cfg.joint_attention_dim is not None else None
        samples = self.controlnet(hidden_states=hidden_states, timestep=timestep, encoder_hidden_states=text,
                                  pooled_projections=pooled, controlnet_cond=self.control(),
                                  conditioning_scale=self.scale, return_dict=False)[0]
        return self.denoiser(hidden_states=hidden_states, timestep=timestep,
                             encoder_hidden_states=encoder_hidden_states, pooled_projections=pooled_projections,
                             block_controlnet_hidden_states=samples, return_dict=return_dict, **kwargs)


def _zero_shift(controlnet: torch.nn.Module) -> bool:
    """InstantX SD3 ControlNets were trained on latents without the VAE's shift (diffusers' pipeline rule)."""
    return bool(controlnet.config.force_zeros_for_pooled_projection)


def sd3_control_latents(pipe: Any, controlnet: torch.nn.Module, pixels: torch.Tensor) -> torch.Tensor:
    """Control images (in [-1, 1]) as the VAE latents SD3 ControlNets read."""
    return vae_latents(pipe, pixels, 0.0 if _zero_shift(controlnet) else None)


SD3_CONTROLNET = ControlNetSupport(
    "SD3ControlNetModel", "StableDiffusion3ControlNetPipeline", ControlledSD3, image_kwarg="control_image",
    encode=sd3_control_latents, tag=lambda cn: "latents-noshift" if _zero_shift(cn) else "latents")


@dataclass
class SD3Family(TransformerFlowFamily):
    def encode_prompts(self, pipe: Any, prompts: list[str]) -> list[Conditioning]:
        device = pipe.text_encoder.device
        out = []
        with torch.no_grad():
            for prompt in prompts:
                embeds, _, pooled, _ = pipe.encode_prompt(prompt=prompt, prompt_2=None, prompt_3=None, device=device,
                                                          num_images_per_prompt=1, do_classifier_free_guidance=False)
                out.append(Conditioning({"encoder_hidden_states": embeds.cpu(), "pooled_projections": pooled.cpu()}))
        return out

    def predict(self, denoiser: torch.nn.Module, noisy: torch.Tensor, timesteps: torch.Tensor,
                cond: Conditioning) -> torch.Tensor:
        """SD3 takes the scheduler's timestep (σ × 1000) as is, unlike Flux's σ."""
        return denoiser(hidden_states=noisy, timestep=timesteps.to(noisy.dtype),
                        encoder_hidden_states=cond.kwargs["encoder_hidden_states"],
                        pooled_projections=cond.kwargs["pooled_projections"], return_dict=False)[0]

    def build_tiny(self, out_dir: Path, seed: int = 0) -> Path:
        return build_tiny_sd3(out_dir, seed)


def tiny_sd3_transformer(seed: int = 0, dual_attention: bool = True):
    """Two MMDiT blocks; with `dual_attention` the first has SD3.5's extra image-only `attn2`."""
    from diffusers import SD3Transformer2DModel

    torch.manual_seed(seed)
    return SD3Transformer2DModel(sample_size=8, patch_size=2, in_channels=4, out_channels=4, num_layers=2,
                                 attention_head_dim=8, num_attention_heads=2, joint_attention_dim=32,
                                 caption_projection_dim=16, pooled_projection_dim=32, pos_embed_max_size=16,
                                 dual_attention_layers=(0,) if dual_attention else (), qk_norm="rms_norm")


def build_tiny_sd3(out_dir: str | Path, seed: int = 0) -> Path:
    """A tiny SD3.5-style pipeline: CLIP-L/G stand-ins (16 + 16 dims, pooled 32), T5 (32), 64 px."""
    from diffusers import FlowMatchEulerDiscreteScheduler, StableDiffusion3Pipeline

    from sliderstudio.families.tiny import tiny_clip, tiny_tokenizer
    from sliderstudio.families.tiny_parts import flow_vae, t5_encoder, t5_tokenizer

    pipe = StableDiffusion3Pipeline(
        transformer=tiny_sd3_transformer(seed), scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        vae=flow_vae(seed=seed), text_encoder=tiny_clip(True, 16, seed), tokenizer=tiny_tokenizer(),
        text_encoder_2=tiny_clip(True, 16, seed + 1), tokenizer_2=tiny_tokenizer(),
        text_encoder_3=t5_encoder(32, seed + 2), tokenizer_3=t5_tokenizer())
    out = Path(out_dir)
    pipe.save_pretrained(out, safe_serialization=True)
    return out


SD3 = SD3Family(id="sd3", label="Stable Diffusion 3 / 3.5", pipeline_class_name="StableDiffusion3Pipeline",
                transformer_class_name="SD3Transformer2DModel",
                aliases=("sd3.5", "sd3.0", "stable_diffusion_3", "stable_diffusion_3.5", "sd3-medium",
                         "sd3.5-medium", "sd3.5-large"),
                flavours=("medium", "large"), controlnet=SD3_CONTROLNET, comfy_lycoris=True,
                single_file_types={"sd3": "medium", "sd35_medium": "medium", "sd35_large": "large"})
FAMILIES = (SD3,)
