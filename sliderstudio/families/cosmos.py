"""Cosmos-Predict2 text-to-image (Cosmos2TextToImagePipeline): a video transformer rendering one frame.

How the pipeline calls the transformer (read from diffusers 0.42.1): its scheduler works in EDM noise
levels σ ∈ [0.002, 80] (Karras spacing), and each step feeds the transformer x_σ · c_in with
c_in = 1 − t and `timestep` = t, where t = σ / (1 + σ); the output F is turned into the denoised image as
(1 − t)·x_σ − t·F. Written in t, the input is (1 − t)·x₀ + t·ε and the denoised image is exact when
F = ε − x₀: the rectified-flow interpolation and velocity target of `FlowFamily`. The only difference is
the timestep convention — the transformer takes t in [0, 1], not t·1000 — so `predict` divides.
Latents are the Wan VAE's, normalised per channel by `latents_mean` / `latents_std` (σ_data = 1).

Two offline obstacles and how they are handled:
- The pipeline refuses to run without NVIDIA's Cosmos Guardrail (`safety_checker`), whose package
  downloads large models. The pipeline's `safety_checker` constructor argument is the supported hook:
  when `cosmos_guardrail` is installed (and loads), the real guardrail is passed; otherwise a
  pass-through stand-in is passed and a warning says that previews are *not* filtered. Complying with
  the NVIDIA Open Model License stays the user's responsibility.
- The transformer resizes its (all-zero) padding mask with torchvision, which this stack does not
  install; a nearest-neighbour resize with the same semantics is supplied in its place.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
import torch.nn.functional as F

from sliderstudio.families.base import Conditioning
from sliderstudio.families.comfy_naming import ComfyNaming, rule
from sliderstudio.families.text_path import DIFFUSERS_TEXT_PATH
from sliderstudio.families.video import VideoFlowFamily, tiny_t5_encoder, tiny_t5_tokenizer, tiny_wan_vae

log = logging.getLogger(__name__)
TINY_SIZE = 32


class PassThroughGuardrail:
    """Stand-in for Cosmos Guardrail when it is not installed: every prompt and frame passes unchanged."""

    def to(self, *_args: Any, **_kwargs: Any) -> "PassThroughGuardrail":
        return self

    def check_text_safety(self, _prompt: str) -> bool:
        return True

    def check_video_safety(self, frames: Any) -> Any:
        return frames


@lru_cache(maxsize=None)
def _warn_unfiltered(why: str) -> None:
    """Said once per process and reason: the app loads pipelines repeatedly."""
    log.warning("%s: Cosmos previews are rendered without the guardrail filter", why)


def guardrail() -> Any:
    """The real Cosmos Guardrail when available, else the pass-through stand-in (with a warning)."""
    from diffusers.utils import is_cosmos_guardrail_available

    if not is_cosmos_guardrail_available():
        _warn_unfiltered("cosmos_guardrail is not installed")
        return PassThroughGuardrail()
    try:
        from cosmos_guardrail import CosmosSafetyChecker

        return CosmosSafetyChecker()
    except Exception as exc:  # installed, but its models cannot be fetched (offline)
        _warn_unfiltered(f"Cosmos Guardrail could not be loaded ({type(exc).__name__})")
        return PassThroughGuardrail()


def _resize_nearest(tensor: torch.Tensor, size: list[int], interpolation: Any = None) -> torch.Tensor:
    return F.interpolate(tensor, size=list(size), mode="nearest")


def ensure_mask_resize() -> None:
    """Give diffusers' Cosmos transformer the one torchvision call it makes, when torchvision is absent."""
    from diffusers.models.transformers import transformer_cosmos as module

    if not hasattr(module, "transforms"):
        module.transforms = SimpleNamespace(InterpolationMode=SimpleNamespace(NEAREST="nearest"),
                                            functional=SimpleNamespace(resize=_resize_nearest))


# ComfyUI runs Cosmos-Predict2 as its MiniTrainDIT with the original names (comfy/ldm/cosmos/predict2.py).
COMFY_NAMING = ComfyNaming(basis="ComfyUI's Cosmos-Predict2 names", rules=(
    rule(r"transformer_blocks\.(\d+)\.attn1\.to_([qkv])", r"blocks.\1.self_attn.\2_proj"),
    rule(r"transformer_blocks\.(\d+)\.attn1\.to_out\.0", r"blocks.\1.self_attn.output_proj"),
    rule(r"transformer_blocks\.(\d+)\.attn2\.to_([qkv])", r"blocks.\1.cross_attn.\2_proj"),
    rule(r"transformer_blocks\.(\d+)\.attn2\.to_out\.0", r"blocks.\1.cross_attn.output_proj"),
    rule(r"patch_embed\.proj", "x_embedder.proj.1"),
    rule(r"proj_out", "final_layer.linear"),
    rule(r"time_embed\.t_embedder\.linear_([12])", r"t_embedder.1.linear_\1"),
))


@dataclass
class CosmosFamily(VideoFlowFamily):
    native_size: int = 768  # Cosmos-Predict2 text-to-image renders 1360×768 by default
    comfy: ComfyNaming = COMFY_NAMING

    def pipeline_kwargs(self) -> dict[str, Any]:
        ensure_mask_resize()  # every load: the pipeline's transformer may be called directly afterwards
        return {"safety_checker": guardrail()}

    def predict(self, denoiser: torch.nn.Module, noisy: torch.Tensor, timesteps: torch.Tensor,
                cond: Conditioning) -> torch.Tensor:
        ensure_mask_resize()
        t = timesteps / 1000.0  # FlowFamily counts σ·1000; the transformer takes t = σ
        padding = noisy.new_zeros(1, 1, *noisy.shape[-2:])  # the pipeline's mask is all zeros at any size
        return denoiser(hidden_states=noisy, timestep=t.to(noisy.dtype),
                        encoder_hidden_states=cond.kwargs["encoder_hidden_states"], padding_mask=padding,
                        return_dict=False)[0]

    def clip_kwargs(self, pipe: Any) -> dict[str, Any]:
        return {"max_sequence_length": self.sequence_length(pipe)}  # text-to-image: always one frame

    def images_of(self, result: Any) -> list[Any]:
        return list(result.images)

    def default_size(self, pipe: Any) -> int:
        return self.native_size

    def build_tiny(self, out_dir: Path, seed: int = 0) -> Path:
        """Tiny Cosmos-Predict2: 2 blocks of width 32, the tiny Wan VAE, a 2-layer T5; no guardrail saved."""
        from diffusers import (
            Cosmos2TextToImagePipeline, CosmosTransformer3DModel, FlowMatchEulerDiscreteScheduler,
        )

        torch.manual_seed(seed)
        transformer = CosmosTransformer3DModel(in_channels=4, out_channels=4, num_attention_heads=2,
                                               attention_head_dim=16, num_layers=2, mlp_ratio=2.0, text_embed_dim=16,
                                               adaln_lora_dim=4, max_size=(4, 16, 16), patch_size=(1, 2, 2),
                                               rope_scale=(1.0, 4.0, 4.0), concat_padding_mask=True,
                                               extra_pos_embed_type=None)
        vae = tiny_wan_vae(seed + 1)
        scheduler = FlowMatchEulerDiscreteScheduler(use_karras_sigmas=True)  # σ range set by the pipeline
        pipe = Cosmos2TextToImagePipeline(text_encoder=tiny_t5_encoder(16, seed=seed), tokenizer=tiny_t5_tokenizer(),
                                          transformer=transformer, vae=vae, scheduler=scheduler,
                                          safety_checker=PassThroughGuardrail())
        pipe.register_modules(safety_checker=None)  # the stand-in is supplied at load time, never saved
        pipe.save_pretrained(out_dir, safe_serialization=True)
        return Path(out_dir)


COSMOS = CosmosFamily(id="cosmos", label="Cosmos-Predict2 text-to-image",
                      pipeline_class_name="Cosmos2TextToImagePipeline",
                      transformer_class_name="CosmosTransformer3DModel",
                      aliases=("cosmos2image", "cosmos2", "cosmos-predict2", "cosmos_predict2", "cosmos2_image"),
                      flavours=("2b", "14b"), text_length=512, extra={"tiny_size": TINY_SIZE},
                      single_file_types={"cosmos-2.0-t2i-2B": "2b", "cosmos-2.0-t2i-14B": "14b"},
                      # Cosmos 2.5's context projections
                      text_path_markers=DIFFUSERS_TEXT_PATH + ("crossattn_proj", "img_context_proj"))
FAMILIES = (COSMOS,)
