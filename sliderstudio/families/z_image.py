"""Z-Image (Turbo and Base): a single-stream flow transformer conditioned on Qwen3 hidden states.

How the diffusers pipeline drives the transformer, and therefore how training must:
- the transformer takes *lists*: one (C, 1, H, W) latent and one (L_i, D) caption tensor per sample
  (captions keep only their unmasked tokens, so lengths differ);
- its timestep runs the other way: t = 1 − σ (the pipeline passes (1000 − t) / 1000);
- the pipeline negates the output before the scheduler step, i.e. the model predicts x₀ − ε, so the
  prediction we regress onto the flow target ε − x₀ is −output.
Captions are cached at their own length and padded per batch with their lengths kept alongside.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from sliderstudio.families.base import Conditioning
from sliderstudio.families.captions import pad_captions
from sliderstudio.families.comfy_naming import Z_IMAGE_KEYS, ComfyNaming
from sliderstudio.families.flow import FlowFamily
from sliderstudio.families.text_path import DIFFUSERS_TEXT_PATH

MAX_SEQUENCE_LENGTH = 512  # the pipeline's default; training encodes captions exactly as inference does


@dataclass
class ZImageFamily(FlowFamily):
    denoiser_name: str = "transformer"
    comfy: ComfyNaming = Z_IMAGE_KEYS

    def skeleton(self, model_dir: Path) -> torch.nn.Module:
        from diffusers import ZImageTransformer2DModel

        config = ZImageTransformer2DModel.load_config(str(model_dir), subfolder="transformer")
        with torch.device("meta"):
            return ZImageTransformer2DModel.from_config(config)

    def encode_prompts(self, pipe: Any, prompts: list[str]) -> list[Conditioning]:
        device = pipe.text_encoder.device
        with torch.no_grad():
            embeds, _ = pipe.encode_prompt(list(prompts), device=device, do_classifier_free_guidance=False,
                                           max_sequence_length=MAX_SEQUENCE_LENGTH)
        return [Conditioning({"cap_feats": e.unsqueeze(0).float().cpu()}) for e in embeds]

    def collate(self, conds: list[Conditioning], device: torch.device, dtype: torch.dtype,
                image_size: int) -> Conditioning:
        padded, lengths = pad_captions(conds, "cap_feats")
        moved = Conditioning({"cap_feats": padded}).to(device, dtype)
        moved.kwargs["cap_lens"] = lengths  # stays on the host: predict slices by it without a device read
        return moved

    def predict(self, denoiser: torch.nn.Module, noisy: torch.Tensor, timesteps: torch.Tensor,
                cond: Conditioning) -> torch.Tensor:
        feats, lengths = cond.kwargs["cap_feats"], cond.kwargs["cap_lens"].tolist()
        captions = [f[:n] for f, n in zip(feats, lengths)]
        t = 1.0 - timesteps.to(noisy.dtype) / 1000.0
        out = denoiser(list(noisy.unsqueeze(2).unbind(0)), t, captions, return_dict=False)[0]
        return -torch.stack(out).squeeze(2)

    def render_kwargs(self) -> dict[str, Any]:
        return {"max_sequence_length": MAX_SEQUENCE_LENGTH}

    def default_size(self, pipe: Any) -> int:
        return 1024

    def assistant_hint(self, flavour: str | None = None) -> str | None:
        if flavour == "base":
            return None
        return ("Z-Image Turbo is step-distilled: training a slider directly on it erodes the distillation. Load an "
                "assistant (de-distillation) adapter with assistant_lora_path; it stays frozen at "
                "assistant_lora_strength and is never written into the slider file. The base flavour needs none.")

    def build_tiny(self, out_dir: Path, seed: int = 0) -> Path:
        from diffusers import FlowMatchEulerDiscreteScheduler, ZImagePipeline, ZImageTransformer2DModel

        from sliderstudio.families.tiny import tiny_vae
        from sliderstudio.families.tiny_text import tiny_qwen3, word_tokenizer

        vae = tiny_vae(seed)
        vae.register_to_config(scaling_factor=0.3611, shift_factor=0.1159)
        torch.manual_seed(seed)
        transformer = ZImageTransformer2DModel(in_channels=4, dim=32, n_layers=2, n_refiner_layers=1, n_heads=2,
                                               n_kv_heads=2, cap_feat_dim=32, axes_dims=[4, 6, 6],
                                               axes_lens=[1024, 32, 32])
        pipe = ZImagePipeline(scheduler=FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0),
                              vae=vae, text_encoder=tiny_qwen3(32, 2, seed), tokenizer=word_tokenizer(chat=True),
                              transformer=transformer)
        pipe.save_pretrained(out_dir, safe_serialization=True)
        return Path(out_dir)


Z_IMAGE = ZImageFamily(id="z_image", label="Z-Image", pipeline_class_name="ZImagePipeline",
                       aliases=("zimage", "z-image", "z_image_turbo", "zimage_turbo"), flavours=("turbo", "base"),
                       comfy_lycoris=True, single_file_types={"z-image-turbo": "turbo"},
                       text_path_markers=DIFFUSERS_TEXT_PATH + ("cap_embedder",))
FAMILIES = (Z_IMAGE,)
