"""Qwen-Image: a dual-stream (image / text) flow transformer conditioned on Qwen2.5-VL hidden states.

The pipeline calls the transformer with σ (timestep / 1000) and steps the scheduler with its output
unchanged, so the model predicts the flow velocity ε − x₀ directly. Latents come from a 3D (video)
VAE with one frame, normalised per channel by `latents_mean` / `latents_std`, and enter the
transformer packed into 2×2 patches; we cache them unpacked (C, H, W) and pack inside `predict`.
Captions keep only their real tokens (the template's first 34 are dropped by the pipeline); batches
of different lengths are padded and masked.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from sliderstudio.families.base import Conditioning, seeded_generators, step_callback
from sliderstudio.families.captions import length_mask, pad_captions
from sliderstudio.families.flow import FlowFamily
from sliderstudio.families.text_path import DIFFUSERS_TEXT_PATH

MAX_SEQUENCE_LENGTH = 512  # the pipeline's default


def pack(latents: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) → (B, H/2 · W/2, 4C): the 2×2 patch sequence the transformer reads."""
    b, c, h, w = latents.shape
    x = latents.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(b, (h // 2) * (w // 2), c * 4)


def unpack(tokens: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """The inverse of `pack`."""
    b, _, d = tokens.shape
    x = tokens.view(b, h // 2, w // 2, d // 4, 2, 2).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(b, d // 4, h, w)


def normalise_latents(vae: Any, latents: torch.Tensor) -> torch.Tensor:
    """(x − mean) / std per channel, the inverse of what the pipeline does before decoding."""
    shape = (1, vae.config.z_dim) + (1,) * (latents.dim() - 2)
    mean = torch.tensor(vae.config.latents_mean, dtype=latents.dtype, device=latents.device).view(shape)
    std = torch.tensor(vae.config.latents_std, dtype=latents.dtype, device=latents.device).view(shape)
    return (latents - mean) / std


@dataclass
class QwenImageFamily(FlowFamily):
    denoiser_name: str = "transformer"

    def skeleton(self, model_dir: Path) -> torch.nn.Module:
        from diffusers import QwenImageTransformer2DModel

        config = QwenImageTransformer2DModel.load_config(str(model_dir), subfolder="transformer")
        with torch.device("meta"):
            return QwenImageTransformer2DModel.from_config(config)

    def encode_prompts(self, pipe: Any, prompts: list[str]) -> list[Conditioning]:
        out = []
        with torch.no_grad():
            for prompt in prompts:
                embeds, _ = pipe.encode_prompt(prompt, device=pipe.text_encoder.device,
                                               max_sequence_length=MAX_SEQUENCE_LENGTH)
                out.append(Conditioning({"encoder_hidden_states": embeds.float().cpu()}))
        return out

    def collate(self, conds: list[Conditioning], device: torch.device, dtype: torch.dtype,
                image_size: int) -> Conditioning:
        padded, lengths = pad_captions(conds, "encoder_hidden_states")
        moved = Conditioning({"encoder_hidden_states": padded}).to(device, dtype)
        moved.kwargs["txt_lens"] = lengths  # stays on the host: predict tests it without a device read
        return moved

    def encode_images(self, pipe: Any, pixels: torch.Tensor) -> torch.Tensor:
        vae = pipe.vae
        with torch.no_grad():
            latents = vae.encode(pixels.to(vae.device, vae.dtype).unsqueeze(2)).latent_dist.mode()
        return normalise_latents(vae, latents.float()).squeeze(2).cpu()

    def predict(self, denoiser: torch.nn.Module, noisy: torch.Tensor, timesteps: torch.Tensor,
                cond: Conditioning) -> torch.Tensor:
        b, _, h, w = noisy.shape
        text, lengths = cond.kwargs["encoder_hidden_states"], cond.kwargs["txt_lens"]
        # The pipeline passes no mask when every caption is full length; only a mixed batch needs one.
        mask = None if bool((lengths == text.shape[1]).all()) else length_mask(lengths, text.shape[1]).to(text.device)
        out = denoiser(hidden_states=pack(noisy), timestep=timesteps.to(noisy.dtype) / 1000.0,
                       encoder_hidden_states=text, encoder_hidden_states_mask=mask,
                       img_shapes=[[(1, h // 2, w // 2)]] * b, return_dict=False)[0]
        return unpack(out, h, w)

    def render(self, pipe: Any, prompts: list[str], seed: int, steps: int, guidance: float,
               size: int, negative_prompt: str | None = None,
               on_step: Callable[[int, int], None] | None = None) -> list[Any]:
        # Qwen-Image's guidance is "true CFG": it needs a negative prompt (a blank one by convention).
        negative = [negative_prompt or " "] * len(prompts) if guidance > 1 else None
        result = pipe(prompt=list(prompts), negative_prompt=negative, true_cfg_scale=guidance,
                      num_inference_steps=steps, generator=seeded_generators(len(prompts), seed), height=size,
                      width=size, output_type="pil", max_sequence_length=MAX_SEQUENCE_LENGTH,
                      callback_on_step_end=step_callback(on_step, steps))
        return list(result.images)

    def default_size(self, pipe: Any) -> int:
        return int(pipe.default_sample_size * pipe.vae_scale_factor)

    def build_tiny(self, out_dir: Path, seed: int = 0) -> Path:
        from diffusers import (
            AutoencoderKLQwenImage, FlowMatchEulerDiscreteScheduler, QwenImagePipeline, QwenImageTransformer2DModel,
        )

        from sliderstudio.families.tiny_text import tiny_qwen25_vl, word_tokenizer

        torch.manual_seed(seed)
        vae = AutoencoderKLQwenImage(base_dim=8, z_dim=4, dim_mult=[1, 2, 2, 2], num_res_blocks=1,
                                     temperal_downsample=[False, True, True], latents_mean=[0.1, -0.2, 0.3, 0.0],
                                     latents_std=[1.5, 2.0, 1.2, 2.5])
        transformer = QwenImageTransformer2DModel(patch_size=2, in_channels=16, out_channels=4, num_layers=2,
                                                  attention_head_dim=16, num_attention_heads=2, joint_attention_dim=32,
                                                  axes_dims_rope=(4, 6, 6))
        scheduler = FlowMatchEulerDiscreteScheduler(shift=1.0, use_dynamic_shifting=True, base_shift=0.5,
                                                    max_shift=0.9, base_image_seq_len=256, max_image_seq_len=8192)
        pipe = QwenImagePipeline(scheduler=scheduler, vae=vae, text_encoder=tiny_qwen25_vl(32, 2, seed),
                                 tokenizer=word_tokenizer(max_length=1024), transformer=transformer)
        pipe.save_pretrained(out_dir, safe_serialization=True)
        return Path(out_dir)


QWEN_IMAGE = QwenImageFamily(id="qwen_image", label="Qwen-Image", pipeline_class_name="QwenImagePipeline",
                             aliases=("qwenimage", "qwen-image", "qwen"), comfy_lycoris=True,
                             text_path_markers=DIFFUSERS_TEXT_PATH + (".txt_",))  # txt_in, txt_mlp, txt_mod, …
FAMILIES = (QWEN_IMAGE,)
