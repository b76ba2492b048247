"""LTX-Video text-to-video (LTXPipeline): images train as one-frame clips.

LTX's transformer works on *packed* tokens (B, F·H·W, C) with rotary positions scaled by the VAE's
compression; the pipeline packs its 5-D latents before each forward and unpacks the velocity after.
Latents are cached unpacked (B, C, 1, h, w), normalised like the pipeline ((z − mean) · scaling / std with
the VAE's own buffers), and `predict` packs, calls and unpacks, so noise and targets keep the video
layout. The timestep is the scheduler's σ·1000, as in the pipeline; the velocity target is ε − x₀.
One frame is a valid LTX clip length (8k + 1 with k = 0).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from sliderstudio.families.base import Conditioning
from sliderstudio.families.comfy_naming import ComfyNaming, rule
from sliderstudio.families.text_path import DIFFUSERS_TEXT_PATH
from sliderstudio.families.video import VideoFlowFamily, tiny_t5_encoder, tiny_t5_tokenizer

TINY_SIZE = 32
FRAME_RATE = 25  # the pipeline's default frame_rate, which sets the temporal rope scale


# ComfyUI's LTX-Video keeps diffusers' block names but calls the input projection `patchify_proj` and the
# timestep embedding `adaln_single` (comfy/ldm/lightricks/model.py).
COMFY_NAMING = ComfyNaming(basis="ComfyUI's LTX-Video names", rules=(
    rule(r"proj_in", "patchify_proj"),
    rule(r"time_embed\.(.+)", r"adaln_single.\1"),
))


@dataclass
class LTXVideoFamily(VideoFlowFamily):
    native_size: int = 512  # LTX-Video renders 704×480 by default; 512² is the square it handles natively
    comfy: ComfyNaming = COMFY_NAMING
    size_alignment: int = 32  # the VAE compresses 32× spatially; patch size 1

    def encode_prompts(self, pipe: Any, prompts: list[str]) -> list[Conditioning]:
        """T5 states and their mask (padding matters: LTX masks it out), plus the VAE ratios for the rope scale."""
        device, length = pipe.text_encoder.device, self.sequence_length(pipe)
        ratios = torch.tensor([[pipe.vae_temporal_compression_ratio, pipe.vae_spatial_compression_ratio]])
        out = []
        with torch.no_grad():
            for prompt in prompts:
                embeds, mask, _, _ = pipe.encode_prompt(prompt=prompt, do_classifier_free_guidance=False,
                                                        max_sequence_length=length, device=device)
                out.append(Conditioning({"encoder_hidden_states": embeds.cpu(), "encoder_attention_mask": mask.cpu(),
                                         "vae_ratios": ratios.clone()}))
        return out

    def normalise(self, vae: Any, latents: torch.Tensor) -> torch.Tensor:
        """The inverse of LTXPipeline._denormalize_latents, with the VAE's registered mean/std buffers."""
        mean = vae.latents_mean.view(1, -1, 1, 1, 1).to(latents.device, latents.dtype)
        std = vae.latents_std.view(1, -1, 1, 1, 1).to(latents.device, latents.dtype)
        return (latents - mean) * vae.config.scaling_factor / std

    def predict(self, denoiser: torch.nn.Module, noisy: torch.Tensor, timesteps: torch.Tensor,
                cond: Conditioning) -> torch.Tensor:
        from diffusers import LTXPipeline

        p, pt = denoiser.config.patch_size, denoiser.config.patch_size_t
        _, _, frames, height, width = noisy.shape
        temporal, spatial = (int(v) for v in cond.kwargs["vae_ratios"][0].tolist())
        packed = LTXPipeline._pack_latents(noisy, p, pt)
        out = denoiser(hidden_states=packed, encoder_hidden_states=cond.kwargs["encoder_hidden_states"],
                       timestep=timesteps, encoder_attention_mask=cond.kwargs["encoder_attention_mask"],
                       num_frames=frames // pt, height=height // p, width=width // p,
                       rope_interpolation_scale=(temporal / FRAME_RATE, spatial, spatial), return_dict=False)[0]
        return LTXPipeline._unpack_latents(out, frames // pt, height // p, width // p, p, pt)

    def default_size(self, pipe: Any) -> int:
        return self.native_size

    def build_tiny(self, out_dir: Path, seed: int = 0) -> Path:
        """Tiny LTX: 2 blocks of width 16, a VAE with 8× spatial / 2× temporal compression, a 2-layer T5."""
        from diffusers import (
            AutoencoderKLLTXVideo, FlowMatchEulerDiscreteScheduler, LTXPipeline, LTXVideoTransformer3DModel,
        )

        torch.manual_seed(seed)
        transformer = LTXVideoTransformer3DModel(in_channels=4, out_channels=4, num_attention_heads=2,
                                                 attention_head_dim=8, cross_attention_dim=16, num_layers=2,
                                                 caption_channels=16)
        torch.manual_seed(seed + 1)
        scaling = (True, False, False, False)
        vae = AutoencoderKLLTXVideo(latent_channels=4, block_out_channels=(8, 8, 8, 8),
                                    decoder_block_out_channels=(8, 8, 8, 8), layers_per_block=(1, 1, 1, 1, 1),
                                    decoder_layers_per_block=(1, 1, 1, 1, 1), spatio_temporal_scaling=scaling,
                                    decoder_spatio_temporal_scaling=scaling, patch_size=4)
        vae.latents_mean.copy_(torch.tensor([0.1, -0.2, 0.05, 0.3]))
        vae.latents_std.copy_(torch.tensor([1.5, 0.8, 1.2, 2.0]))
        # LTX-Video's own scheduler settings: resolution-dependent shift between 0.95 and 2.05
        scheduler = FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True, base_shift=0.95, max_shift=2.05,
                                                    base_image_seq_len=1024, max_image_seq_len=4096,
                                                    shift_terminal=0.1)
        pipe = LTXPipeline(scheduler=scheduler, vae=vae, text_encoder=tiny_t5_encoder(16, seed=seed),
                           tokenizer=tiny_t5_tokenizer(), transformer=transformer)
        pipe.save_pretrained(out_dir, safe_serialization=True)
        return Path(out_dir)


LTXVIDEO = LTXVideoFamily(id="ltxvideo", label="LTX-Video (video, trained on stills)",
                          pipeline_class_name="LTXPipeline",
                          transformer_class_name="LTXVideoTransformer3DModel",
                          aliases=("ltx", "ltx-video", "ltx_video", "ltxv"), flavours=("0.9.0", "0.9.1", "0.9.5"),
                          text_length=128, extra={"tiny_size": TINY_SIZE, "patch_size": 1},
                          single_file_types={"ltx-video": "0.9.0", "ltx-video-0.9.1": "0.9.1",
                                             "ltx-video-0.9.5": "0.9.5"},
                          text_path_markers=DIFFUSERS_TEXT_PATH + ("caption_projection",))
FAMILIES = (LTXVIDEO,)
