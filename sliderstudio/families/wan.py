"""Wan 2.1 text-to-video (WanPipeline): images train as one-frame clips.

The pipeline calls the transformer with the scheduler's timestep (σ·1000) and steps with its output as
the flow velocity (UniPC with `prediction_type="flow_prediction"`), so the shared flow-matching target
ε − x₀ and timestep convention apply unchanged. Latents are normalised per channel with the VAE's
`latents_mean` / `latents_std`, exactly inverting the pipeline's decode step.

Wan 2.2's two-expert checkpoints (`transformer_2` for the low-noise stage) are not covered: a slider
would have to be trained on both experts.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from sliderstudio.families.base import Conditioning
from sliderstudio.families.comfy_naming import ComfyNaming, rule
from sliderstudio.families.text_path import DIFFUSERS_TEXT_PATH
from sliderstudio.families.video import VideoFlowFamily, tiny_t5_encoder, tiny_t5_tokenizer, tiny_wan_vae

TINY_SIZE = 32


# ComfyUI runs Wan with the original module names (comfy/ldm/wan/model.py), not diffusers'.
COMFY_NAMING = ComfyNaming(basis="ComfyUI's Wan names", rules=(
    rule(r"blocks\.(\d+)\.attn1\.to_([qkv])", r"blocks.\1.self_attn.\2"),
    rule(r"blocks\.(\d+)\.attn1\.to_out\.0", r"blocks.\1.self_attn.o"),
    rule(r"blocks\.(\d+)\.attn2\.to_([qkv])", r"blocks.\1.cross_attn.\2"),
    rule(r"blocks\.(\d+)\.attn2\.to_out\.0", r"blocks.\1.cross_attn.o"),
    rule(r"blocks\.(\d+)\.attn2\.add_([kv])_proj", r"blocks.\1.cross_attn.\2_img"),
    rule(r"blocks\.(\d+)\.ffn\.net\.0\.proj", r"blocks.\1.ffn.0"),
    rule(r"blocks\.(\d+)\.ffn\.net\.2", r"blocks.\1.ffn.2"),
    rule(r"proj_out", "head.head"),
    rule(r"condition_embedder\.time_embedder\.linear_1", "time_embedding.0"),
    rule(r"condition_embedder\.time_embedder\.linear_2", "time_embedding.2"),
    rule(r"condition_embedder\.time_proj", "time_projection.1"),
    rule(r"condition_embedder\.text_embedder\.linear_1", "text_embedding.0"),
    rule(r"condition_embedder\.text_embedder\.linear_2", "text_embedding.2"),
))


@dataclass
class WanFamily(VideoFlowFamily):
    native_size: int = 480  # Wan 2.1 renders 832×480; the square closest to its training data
    comfy: ComfyNaming = COMFY_NAMING

    def predict(self, denoiser: torch.nn.Module, noisy: torch.Tensor, timesteps: torch.Tensor,
                cond: Conditioning) -> torch.Tensor:
        return denoiser(hidden_states=noisy, timestep=timesteps,
                        encoder_hidden_states=cond.kwargs["encoder_hidden_states"], return_dict=False)[0]

    def default_size(self, pipe: Any) -> int:
        return self.native_size

    def build_tiny(self, out_dir: Path, seed: int = 0) -> Path:
        """Tiny Wan: 2 blocks of width 16, a Wan VAE with 8× spatial compression, a 2-layer UMT5."""
        from diffusers import UniPCMultistepScheduler, WanPipeline, WanTransformer3DModel

        torch.manual_seed(seed)
        transformer = WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=8,
                                            in_channels=4, out_channels=4, text_dim=16, freq_dim=16, ffn_dim=32,
                                            num_layers=2, cross_attn_norm=True, rope_max_seq_len=32)
        vae = tiny_wan_vae(seed + 1)
        scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0,
                                            num_train_timesteps=1000)
        pipe = WanPipeline(tokenizer=tiny_t5_tokenizer(), text_encoder=tiny_t5_encoder(16, umt5=True, seed=seed),
                           vae=vae, scheduler=scheduler, transformer=transformer)
        pipe.save_pretrained(out_dir, safe_serialization=True)
        return Path(out_dir)


WAN = WanFamily(id="wan", label="Wan 2.1 (video, trained on stills)", pipeline_class_name="WanPipeline",
                transformer_class_name="WanTransformer3DModel", aliases=("wan2.1", "wan21", "wan-2.1", "wan_t2v"),
                flavours=("t2v-480p-1.3b", "t2v-480p-14b", "t2v-720p-14b"), text_length=512,
                extra={"tiny_size": TINY_SIZE},
                single_file_types={"wan-t2v-1.3B": "t2v-480p-1.3b", "wan-t2v-14B": "t2v-480p-14b"},
                text_path_markers=DIFFUSERS_TEXT_PATH + ("image_embedder",))  # the image-to-video CLIP embedder
FAMILIES = (WAN,)
