"""Chroma: a Flux-shaped transformer conditioned on T5 alone, with a text attention mask.

Packing, positional ids and the σ timestep are Flux's. What differs: no pooled CLIP embedding and no
guidance input (modulation comes from Chroma's own approximator), real classifier-free guidance at
inference, and an attention mask that hides T5 padding (all but the first pad token) from the joint
attention. The text mask is cached per prompt; the image part of the mask is added per batch.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from sliderstudio.families.base import Conditioning
from sliderstudio.families.flow_transformer import TransformerFlowFamily
from sliderstudio.families.flux import image_ids, pack, text_ids, unpack


def joint_mask(text_mask: torch.Tensor, image_tokens: int) -> torch.Tensor:
    """Text mask (B, L) followed by ones for the image tokens: the mask over the joint sequence."""
    ones = torch.ones(text_mask.shape[0], image_tokens, device=text_mask.device, dtype=text_mask.dtype)
    return torch.cat([text_mask, ones], dim=1)


@dataclass
class ChromaFamily(TransformerFlowFamily):
    def encode_prompts(self, pipe: Any, prompts: list[str]) -> list[Conditioning]:
        device = pipe.text_encoder.device
        out = []
        with torch.no_grad():
            for prompt in prompts:
                embeds, _, mask, *_ = pipe.encode_prompt(prompt=prompt, device=device, num_images_per_prompt=1,
                                                         do_classifier_free_guidance=False)
                out.append(Conditioning({"encoder_hidden_states": embeds.cpu(), "text_mask": mask.cpu()}))
        return out

    def predict(self, denoiser: torch.nn.Module, noisy: torch.Tensor, timesteps: torch.Tensor,
                cond: Conditioning) -> torch.Tensor:
        embeds = cond.kwargs["encoder_hidden_states"]
        tokens = pack(noisy)
        out = denoiser(hidden_states=tokens, timestep=timesteps.to(noisy.dtype) / 1000,
                       encoder_hidden_states=embeds, txt_ids=text_ids(embeds), img_ids=image_ids(noisy),
                       attention_mask=joint_mask(cond.kwargs["text_mask"], tokens.shape[1]), return_dict=False)[0]
        return unpack(out, noisy.shape[2], noisy.shape[3])

    def build_tiny(self, out_dir: Path, seed: int = 0) -> Path:
        return build_tiny_chroma(out_dir, seed)


def tiny_chroma_transformer(seed: int = 0):
    """Two double and two single blocks, a one-layer approximator, 4 latent channels (16 packed)."""
    from diffusers import ChromaTransformer2DModel

    torch.manual_seed(seed)
    return ChromaTransformer2DModel(patch_size=1, in_channels=16, num_layers=2, num_single_layers=2,
                                    attention_head_dim=8, num_attention_heads=2, joint_attention_dim=32,
                                    axes_dims_rope=(4, 2, 2), approximator_num_channels=16,
                                    approximator_hidden_dim=32, approximator_layers=1)


def build_tiny_chroma(out_dir: str | Path, seed: int = 0) -> Path:
    from diffusers import ChromaPipeline, FlowMatchEulerDiscreteScheduler

    from sliderstudio.families.tiny_parts import flow_vae, t5_encoder, t5_tokenizer

    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                                                base_image_seq_len=256, max_image_seq_len=4096)
    pipe = ChromaPipeline(transformer=tiny_chroma_transformer(seed), scheduler=scheduler, vae=flow_vae(seed=seed),
                          text_encoder=t5_encoder(32, seed + 1), tokenizer=t5_tokenizer())
    out = Path(out_dir)
    pipe.save_pretrained(out, safe_serialization=True)
    return out


CHROMA = ChromaFamily(id="chroma", label="Chroma", pipeline_class_name="ChromaPipeline",
                      transformer_class_name="ChromaTransformer2DModel",
                      aliases=("chroma1", "chroma1-hd", "chroma-hd"), flavours=("base", "hd", "flash"),
                      comfy_lycoris=True, cudnn_attention_backward=False,  # Flux.1's transformer: the same crash
                      single_file_types={"chroma": None})
FAMILIES = (CHROMA,)
