"""Lumina-Image 2.0: a single-stream flow transformer conditioned on Gemma2 hidden states.

Like Z-Image, the diffusers pipeline runs the transformer on t = 1 − σ ("Lumina uses t=0 as the noise")
and negates its output before the scheduler step, so the model predicts x₀ − ε and our prediction of the
flow target ε − x₀ is −output. Captions are padded to a fixed length with an attention mask (the
pipeline prefixes its system prompt), so the default collate applies.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from sliderstudio.families.base import Conditioning
from sliderstudio.families.comfy_naming import ComfyNaming, rule
from sliderstudio.families.flow import FlowFamily
from sliderstudio.families.text_path import DIFFUSERS_TEXT_PATH

MAX_SEQUENCE_LENGTH = 256  # the pipeline's default

_BLOCK = r"(layers|noise_refiner|context_refiner)\.(\d+)"
# ComfyUI runs Lumina 2 as its NextDiT: one fused `attention.qkv` (q ‖ k ‖ v rows, k/v with 8 of the 24 heads)
# and `attention.out`. Its Z-Image map would slice q/k/v as three equal blocks, which is wrong with fewer
# key/value heads, so q/k/v are exported as one stacked LoRA on the fused weight (engine/export.py).
COMFY_NAMING = ComfyNaming(basis="ComfyUI's NextDiT names, q/k/v as one fused LoRA", rules=(
    rule(_BLOCK + r"\.attn\.to_q", r"\1.\2.attention.qkv", 0, 3),
    rule(_BLOCK + r"\.attn\.to_k", r"\1.\2.attention.qkv", 1, 3),
    rule(_BLOCK + r"\.attn\.to_v", r"\1.\2.attention.qkv", 2, 3),
    rule(_BLOCK + r"\.attn\.to_out\.0", r"\1.\2.attention.out"),
))


@dataclass
class Lumina2Family(FlowFamily):
    denoiser_name: str = "transformer"
    comfy: ComfyNaming = COMFY_NAMING

    def skeleton(self, model_dir: Path) -> torch.nn.Module:
        from diffusers import Lumina2Transformer2DModel

        config = Lumina2Transformer2DModel.load_config(str(model_dir), subfolder="transformer")
        with torch.device("meta"):
            return Lumina2Transformer2DModel.from_config(config)

    def encode_prompts(self, pipe: Any, prompts: list[str]) -> list[Conditioning]:
        out = []
        with torch.no_grad():
            for prompt in prompts:
                embeds, mask, _, _ = pipe.encode_prompt(prompt, do_classifier_free_guidance=False,
                                                        device=pipe.text_encoder.device,
                                                        max_sequence_length=MAX_SEQUENCE_LENGTH)
                out.append(Conditioning({"encoder_hidden_states": embeds.float().cpu(),
                                         "encoder_attention_mask": mask.cpu()}))
        return out

    def predict(self, denoiser: torch.nn.Module, noisy: torch.Tensor, timesteps: torch.Tensor,
                cond: Conditioning) -> torch.Tensor:
        t = 1.0 - timesteps.to(noisy.dtype) / 1000.0
        out = denoiser(hidden_states=noisy, timestep=t, encoder_hidden_states=cond.kwargs["encoder_hidden_states"],
                       encoder_attention_mask=cond.kwargs["encoder_attention_mask"], return_dict=False)[0]
        return -out

    def render_kwargs(self) -> dict[str, Any]:
        return {"max_sequence_length": MAX_SEQUENCE_LENGTH}

    def default_size(self, pipe: Any) -> int:
        return int(pipe.default_image_size)

    def build_tiny(self, out_dir: Path, seed: int = 0) -> Path:
        from diffusers import FlowMatchEulerDiscreteScheduler, Lumina2Pipeline, Lumina2Transformer2DModel

        from sliderstudio.families.tiny import tiny_vae
        from sliderstudio.families.tiny_text import tiny_gemma2, word_tokenizer

        vae = tiny_vae(seed)  # the pipeline assumes 8× downsampling, as tiny_vae has
        vae.register_to_config(scaling_factor=0.3611, shift_factor=0.1159)
        torch.manual_seed(seed)
        transformer = Lumina2Transformer2DModel(sample_size=8, patch_size=2, in_channels=4, hidden_size=32,
                                                num_layers=2, num_refiner_layers=1, num_attention_heads=2,
                                                num_kv_heads=1, multiple_of=16, axes_dim_rope=(4, 6, 6),
                                                axes_lens=(300, 32, 32), cap_feat_dim=32)
        tokenizer = word_tokenizer(max_length=MAX_SEQUENCE_LENGTH, pad="<pad>", eos="</s>", bos="<s>")
        pipe = Lumina2Pipeline(transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(shift=6.0),
                               vae=vae, text_encoder=tiny_gemma2(32, 2, seed), tokenizer=tokenizer)
        pipe.save_pretrained(out_dir, safe_serialization=True)
        return Path(out_dir)


LUMINA2 = Lumina2Family(id="lumina2", label="Lumina-Image 2.0", pipeline_class_name="Lumina2Pipeline",
                        aliases=("lumina", "lumina-2", "lumina_2", "lumina-image-2"),
                        text_path_markers=DIFFUSERS_TEXT_PATH + ("caption_embedder",),
                        related_pipelines=("Lumina2Text2ImgPipeline",), single_file_types={"lumina2": None})
FAMILIES = (LUMINA2,)
