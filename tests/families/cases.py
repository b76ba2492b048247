"""What the family suite expects of each registered family, as data (one entry per family id).

`test_family_suite.py` runs the same checks over every family in the registry and reads the numbers
here; a family without an entry fails the suite, so a new family gets its expectations written down.
The checks themselves live in `family_checks.py` / `flow_checks.py`; family-specific extras in `extras.py`.
"""
from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Callable

import torch

from sliderstudio.families.flux import unpack as flux_unpack
from sliderstudio.families.flux2 import untokens
from sliderstudio.families.hidream import render_area
from sliderstudio.families.kandinsky5 import allow_size
from sliderstudio.families.qwen_image import unpack as qwen_unpack

ATTENTION = ("to_q", "to_k", "to_v", "to_out.0")
FLOW_CONTEXT = ("attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj", "attn.to_add_out", "context_embedder")


def same(latents: torch.Tensor) -> torch.Tensor:
    return latents


@dataclass(frozen=True)
class PipelineStep:
    """How to compare the pipeline's own sampler step with training's prediction (flow families)."""

    to_ours: Callable[[torch.Tensor], torch.Tensor] = same  # the pipeline's latents in training's layout
    size_context: Callable[..., AbstractContextManager] | None = None  # lets the pipeline render a tiny size
    guidance: float = 1.0  # Z-Image applies CFG whenever guidance > 0


@dataclass(frozen=True)
class FamilyCase:
    """One family's expectations on its tiny model (`Family.build_tiny`) and its traits."""

    aliases: tuple[str, ...]                # SimpleTuner's spellings that resolve to the family
    slider: dict[str, int]                  # slider preset: matches per entry, exactly
    blocks: dict[str, int] | None = None    # selected modules per top-level container
    context: tuple[str, ...] = ()           # module suffixes that exist in the model and are not selected
    present: tuple[str, ...] = ()           # module names the tiny model has (text-path ones: not selected)
    never: tuple[str, ...] = ()             # name pieces no selected module contains
    selected: tuple[str, ...] = ()          # module names the slider preset selects
    presets: dict[str, int | list[str]] = field(default_factory=dict)  # other preset → total or module names
    mechanics: str = "batched"              # flow | batched | selfcheck: which slider-mechanics check applies
    latent_shape: tuple[int, ...] = (4, 8, 8)  # the batched check's latent shape
    step: PipelineStep | None = None        # None: no flow-matching pipeline step to compare with
    # traits (the tables that lived in core before): ComfyUI maps its `lycoris_` keys, LyCORIS preset group,
    # and how many modules of the published full-size denoiser are on the text path
    comfy_lycoris: bool = False
    lycoris_group: str = "transformer"
    text_path_full_size: int = 0


def per_block(prefix: str, count: int, names: tuple[str, ...] = ATTENTION) -> dict[str, int]:
    return {f"{prefix}{name}": count for name in names}


SD_SLIDER = {**per_block("attn1.", 4), "proj_in": 4, "proj_out": 4, "conv_in": 1,
             "time_embedding.linear_1": 1, "time_embedding.linear_2": 1}
SD_BLOCKS = {"conv_in": 1, "time_embedding": 2, "down_blocks": 6, "up_blocks": 12, "mid_block": 6}


def sd_case(aliases: tuple[str, ...], group: str, text_path: int) -> FamilyCase:
    return FamilyCase(aliases=aliases, slider=SD_SLIDER, blocks=SD_BLOCKS, context=("attn2.to_k", "attn2.to_out.0"),
                      never=("attn2",), presets={"default": 32}, comfy_lycoris=True, lycoris_group=group,
                      text_path_full_size=text_path)


CASES: dict[str, FamilyCase] = {
    "sd1x": sd_case(("sd1x", "SD15", "sd1.5", "legacy"), "sd1x", 112),
    "sd2x": sd_case(("sd2x", "sd2.1", "sd21"), "sd2x", 112),
    "sdxl": sd_case(("sdxl", "sd-xl", "xl"), "sdxl", 494),
    "auraflow": FamilyCase(
        aliases=("auraflow", "aura_flow", "Aura-Flow"), slider=per_block("attn.", 4),
        blocks={"joint_transformer_blocks": 8, "single_transformer_blocks": 8},
        context=(*FLOW_CONTEXT, "ff_context.out_projection"), mechanics="flow", step=PipelineStep(),
        text_path_full_size=17),
    "chroma": FamilyCase(
        aliases=("chroma", "Chroma1-HD", "chroma1"), slider={**per_block("attn.", 4), "attn.to_out.0": 2},
        context=(*FLOW_CONTEXT, "ff_context.net.2", "distilled_guidance_layer.in_proj"), mechanics="flow",
        step=PipelineStep(lambda latents: flux_unpack(latents, 8, 8)), comfy_lycoris=True, text_path_full_size=77),
    "cosmos": FamilyCase(
        aliases=("cosmos", "cosmos2image", "cosmos-predict2", "Cosmos"),
        slider={**per_block("attn1.", 2), "patch_embed.proj": 1, "proj_out": 1, "time_embed.t_embedder.linear_1": 1,
                "time_embed.t_embedder.linear_2": 1},
        present=("transformer_blocks.0.attn2.to_k",), never=(".attn2.",), mechanics="selfcheck",
        text_path_full_size=252),
    "flux": FamilyCase(
        aliases=("flux", "flux.1", "FLUX.1-dev", "flux-schnell", "flux1"),
        slider={**per_block("attn.", 4), "attn.to_out.0": 2},
        blocks={"transformer_blocks": 8, "single_transformer_blocks": 6},  # single blocks have no to_out
        context=(*FLOW_CONTEXT, "ff_context.net.0.proj", "time_text_embed.text_embedder.linear_1"),
        mechanics="flow", step=PipelineStep(lambda latents: flux_unpack(latents, 8, 8)), comfy_lycoris=True,
        text_path_full_size=81),
    "flux2": FamilyCase(
        aliases=("flux2", "flux.2", "FLUX.2-dev", "flux2-klein"),
        slider={**per_block("attn.", 2), "attn.to_qkv_mlp_proj": 2, "single_transformer_blocks.*.attn.to_out": 2},
        context=(*FLOW_CONTEXT, "ff_context.linear_in", "double_stream_modulation_txt.linear"),
        selected=("single_transformer_blocks.1.attn.to_out",), mechanics="flow",
        step=PipelineStep(lambda seq: untokens(seq, 4, 4)), comfy_lycoris=True, text_path_full_size=33),
    "hidream": FamilyCase(
        aliases=("hidream", "HiDream-I1"), slider={**per_block("attn1.", 2, ("to_q", "to_k", "to_v", "to_out"))},
        blocks={"double_stream_blocks": 4, "single_stream_blocks": 4},
        context=("to_q_t", "to_k_t", "to_v_t", "to_out_t"), never=("caption_projection", "ff_t"),
        step=PipelineStep(size_context=render_area), comfy_lycoris=True, text_path_full_size=232),
    "kandinsky5": FamilyCase(
        aliases=("kandinsky5", "kandinsky", "Kandinsky-5"),
        slider=per_block("visual_transformer_blocks.*.self_attention.", 2,
                         ("to_query", "to_key", "to_value", "out_layer")),
        blocks={"visual_transformer_blocks": 8},
        present=("text_transformer_blocks.0.self_attention.to_query", "visual_transformer_blocks.0.cross_attention.to_key"),
        never=("cross_attention", "text_"), presets={"reference": 0},
        step=PipelineStep(lambda latents: latents[:, 0].permute(0, 3, 1, 2), size_context=allow_size),
        text_path_full_size=297),
    "ltxvideo": FamilyCase(
        aliases=("ltxvideo", "ltx", "ltx-video", "LTXVideo"),
        slider={**per_block("attn1.", 2), "proj_in": 1, "proj_out": 1, "time_embed.emb.timestep_embedder.linear_1": 1,
                "time_embed.emb.timestep_embedder.linear_2": 1, "time_embed.linear": 1},
        present=("transformer_blocks.1.attn2.to_v", "caption_projection.linear_1"),
        never=(".attn2.", "caption_projection"), mechanics="selfcheck", text_path_full_size=256),
    "lumina2": FamilyCase(
        aliases=("lumina2", "lumina", "Lumina-2"),
        slider={**per_block("layers.*.attn.", 2), **per_block("noise_refiner.*.attn.", 1)},
        blocks={"layers": 8, "noise_refiner": 4},
        present=("context_refiner.0.attn.to_q", "time_caption_embed.caption_embedder.1"),
        never=("context_refiner", "time_caption_embed"), presets={"reference": 0}, step=PipelineStep(),
        text_path_full_size=42),
    "qwen_image": FamilyCase(
        aliases=("qwen_image", "qwenimage", "Qwen-Image"), slider={**per_block("attn.", 2), "proj_out": 1},
        blocks={"transformer_blocks": 8, "proj_out": 1},
        present=("transformer_blocks.0.attn.add_q_proj", "transformer_blocks.0.attn.to_add_out"),
        never=("add_q_proj", "add_k_proj", "add_v_proj", "to_add_out", "txt_in", "txt_mlp", "txt_mod"),
        step=PipelineStep(lambda latents: qwen_unpack(latents, 8, 8)), comfy_lycoris=True,
        text_path_full_size=902),
    "sd3": FamilyCase(
        aliases=("sd3", "SD3.5", "stable_diffusion_3", "stable-diffusion-3", "sd3.0"),
        slider={**per_block("attn.", 2), "pos_embed.proj": 1, "proj_out": 1,
                "time_text_embed.timestep_embedder.linear_1": 1, "time_text_embed.timestep_embedder.linear_2": 1},
        context=(*FLOW_CONTEXT, "ff_context.net.2", "time_text_embed.text_embedder.linear_1", "attn2.to_q",
                 "attn2.to_out.0"),
        selected=("transformer_blocks.0.attn.to_q",), presets={"reference": ["proj_out"]}, mechanics="flow",
        step=PipelineStep(), comfy_lycoris=True, text_path_full_size=217),
    "stable_cascade": FamilyCase(
        aliases=("stable_cascade", "stable-cascade", "wuerstchen", "StableCascade"),
        slider={**per_block("attention.", 4), "embedding.1": 1, "clf.1": 1, "mapper": 4},
        present=("clip_txt_mapper", "clip_txt_pooled_mapper", "down_blocks.0.2.kv_mapper.1"),
        never=("kv_mapper", "clip_txt_mapper", "clip_txt_pooled_mapper", "clip_img_mapper", "mapper_sca", "mapper_crp"),
        mechanics="selfcheck", text_path_full_size=195),
    "wan": FamilyCase(
        aliases=("wan", "wan2.1", "Wan"),
        slider={**per_block("attn1.", 2), "patch_embedding": 1, "proj_out": 1,
                "condition_embedder.time_embedder.linear_1": 1, "condition_embedder.time_embedder.linear_2": 1,
                "condition_embedder.time_proj": 1},
        present=("blocks.0.attn2.to_k", "condition_embedder.text_embedder.linear_1"),
        never=(".attn2.", "text_embedder", "add_k_proj"), mechanics="selfcheck", text_path_full_size=364),
    "z_image": FamilyCase(
        aliases=("z_image", "zimage", "Z-Image"),
        slider={**per_block("layers.*.attention.", 2), **per_block("noise_refiner.*.attention.", 1)},
        blocks={"layers": 8, "noise_refiner": 4}, present=("context_refiner.0.attention.to_q",),
        never=("context_refiner", "cap_embedder"), presets={"reference": 0, "default": 16},
        step=PipelineStep(guidance=0.0), comfy_lycoris=True, text_path_full_size=40),
}
