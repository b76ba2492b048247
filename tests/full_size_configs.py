"""Denoiser configs of the real, full-size models, one per family, for meta-device checks.

Written from the published `config.json` of each model (the Hugging Face repositories named in
MODELS; no network here, so they are restated, not downloaded). Only the structure matters for the
checks (module names and shapes), so scheduler or runtime-only keys are left out.
"""
from __future__ import annotations

import json
from pathlib import Path

_SD_UNET = {"act_fn": "silu", "center_input_sample": False, "downsample_padding": 1, "flip_sin_to_cos": True,
            "freq_shift": 0, "in_channels": 4, "out_channels": 4, "layers_per_block": 2,
            "mid_block_scale_factor": 1, "norm_eps": 1e-5, "norm_num_groups": 32}

UNET = {
    "sd1x": {**_SD_UNET, "attention_head_dim": 8, "block_out_channels": [320, 640, 1280, 1280],
             "cross_attention_dim": 768, "sample_size": 64,
             "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
             "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3},
    "sd2x": {**_SD_UNET, "attention_head_dim": [5, 10, 20, 20], "block_out_channels": [320, 640, 1280, 1280],
             "cross_attention_dim": 1024, "sample_size": 96, "use_linear_projection": True,
             "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
             "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3},
    "sdxl": {**_SD_UNET, "attention_head_dim": [5, 10, 20], "block_out_channels": [320, 640, 1280],
             "cross_attention_dim": 2048, "sample_size": 128, "use_linear_projection": True,
             "transformer_layers_per_block": [1, 2, 10], "addition_embed_type": "text_time",
             "addition_time_embed_dim": 256, "projection_class_embeddings_input_dim": 2816,
             "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
             "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"]},
}

TRANSFORMER = {
    "sd3": ("SD3Transformer2DModel",  # SD 3.5 Medium (MMDiT-X: attn2 in the first 13 blocks)
            {"sample_size": 128, "patch_size": 2, "in_channels": 16, "num_layers": 24, "attention_head_dim": 64,
             "num_attention_heads": 24, "joint_attention_dim": 4096, "caption_projection_dim": 1536,
             "pooled_projection_dim": 2048, "out_channels": 16, "pos_embed_max_size": 384,
             "dual_attention_layers": list(range(13)), "qk_norm": "rms_norm"}),
    "flux": ("FluxTransformer2DModel",  # FLUX.1-dev
             {"patch_size": 1, "in_channels": 64, "num_layers": 19, "num_single_layers": 38,
              "attention_head_dim": 128, "num_attention_heads": 24, "joint_attention_dim": 4096,
              "pooled_projection_dim": 768, "guidance_embeds": True, "axes_dims_rope": [16, 56, 56]}),
    "flux2": ("Flux2Transformer2DModel",  # FLUX.2-dev
              {"patch_size": 1, "in_channels": 128, "num_layers": 8, "num_single_layers": 48,
               "attention_head_dim": 128, "num_attention_heads": 48, "joint_attention_dim": 15360,
               "timestep_guidance_channels": 256, "mlp_ratio": 3.0, "axes_dims_rope": [32, 32, 32, 32],
               "rope_theta": 2000, "eps": 1e-6, "guidance_embeds": True}),
    "chroma": ("ChromaTransformer2DModel",  # Chroma1-HD
               {"patch_size": 1, "in_channels": 64, "num_layers": 19, "num_single_layers": 38,
                "attention_head_dim": 128, "num_attention_heads": 24, "joint_attention_dim": 4096,
                "axes_dims_rope": [16, 56, 56], "approximator_num_channels": 64,
                "approximator_hidden_dim": 5120, "approximator_layers": 5}),
    "auraflow": ("AuraFlowTransformer2DModel",  # AuraFlow
                 {"sample_size": 64, "patch_size": 2, "in_channels": 4, "num_mmdit_layers": 4,
                  "num_single_dit_layers": 32, "attention_head_dim": 256, "num_attention_heads": 12,
                  "joint_attention_dim": 2048, "caption_projection_dim": 3072, "out_channels": 4,
                  "pos_embed_max_size": 1024}),
    "z_image": ("ZImageTransformer2DModel",  # Z-Image-Turbo
                {"all_patch_size": [2], "all_f_patch_size": [1], "in_channels": 16, "dim": 3840, "n_layers": 30,
                 "n_refiner_layers": 2, "n_heads": 30, "n_kv_heads": 30, "norm_eps": 1e-5, "qk_norm": True,
                 "cap_feat_dim": 2560, "rope_theta": 256.0, "t_scale": 1000.0, "axes_dims": [32, 48, 48],
                 "axes_lens": [1536, 512, 512]}),
    "lumina2": ("Lumina2Transformer2DModel",  # Lumina-Image-2.0 (grouped-query attention: 24 q heads, 8 kv heads)
                {"sample_size": 128, "patch_size": 2, "in_channels": 16, "hidden_size": 2304, "num_layers": 26,
                 "num_refiner_layers": 2, "num_attention_heads": 24, "num_kv_heads": 8, "multiple_of": 256,
                 "ffn_dim_multiplier": None, "norm_eps": 1e-5, "scaling_factor": 1.0,
                 "axes_dim_rope": [32, 32, 32], "axes_lens": [300, 512, 512], "cap_feat_dim": 2304}),
    "qwen_image": ("QwenImageTransformer2DModel",  # Qwen-Image
                   {"patch_size": 2, "in_channels": 64, "out_channels": 16, "num_layers": 60,
                    "attention_head_dim": 128, "num_attention_heads": 24, "joint_attention_dim": 3584,
                    "guidance_embeds": False, "axes_dims_rope": [16, 56, 56]}),
    "hidream": ("HiDreamImageTransformer2DModel",  # HiDream-I1-Full
                {"patch_size": 2, "in_channels": 16, "out_channels": 16, "num_layers": 16, "num_single_layers": 32,
                 "attention_head_dim": 128, "num_attention_heads": 20, "caption_channels": [4096, 4096],
                 "text_emb_dim": 2048, "num_routed_experts": 4, "num_activated_experts": 2,
                 "axes_dims_rope": [64, 32, 32], "max_resolution": [128, 128],
                 "llama_layers": list(range(32)) + [31] * 16}),
    "kandinsky5": ("Kandinsky5Transformer3DModel",  # Kandinsky 5.0 Lite (2B)
                   {"in_visual_dim": 16, "out_visual_dim": 16, "in_text_dim": 3584, "in_text_dim2": 768,
                    "time_dim": 512, "patch_size": [1, 2, 2], "model_dim": 1792, "ff_dim": 7168,
                    "num_text_blocks": 2, "num_visual_blocks": 32, "axes_dims": [16, 24, 24],
                    "visual_cond": True, "attention_type": "regular"}),
    "wan": ("WanTransformer3DModel",  # Wan2.1-T2V-14B
            {"patch_size": [1, 2, 2], "num_attention_heads": 40, "attention_head_dim": 128, "in_channels": 16,
             "out_channels": 16, "text_dim": 4096, "freq_dim": 256, "ffn_dim": 13824, "num_layers": 40,
             "cross_attn_norm": True, "qk_norm": "rms_norm_across_heads", "eps": 1e-6, "rope_max_seq_len": 1024}),
    "ltxvideo": ("LTXVideoTransformer3DModel",  # LTX-Video 0.9 (2B)
                 {"in_channels": 128, "out_channels": 128, "patch_size": 1, "patch_size_t": 1,
                  "num_attention_heads": 32, "attention_head_dim": 64, "cross_attention_dim": 2048, "num_layers": 28,
                  "caption_channels": 4096, "qk_norm": "rms_norm_across_heads", "attention_bias": True,
                  "attention_out_bias": True}),
    "cosmos": ("CosmosTransformer3DModel",  # Cosmos-Predict2-2B-Text2Image
               {"in_channels": 16, "out_channels": 16, "num_attention_heads": 16, "attention_head_dim": 128,
                "num_layers": 28, "mlp_ratio": 4.0, "text_embed_dim": 1024, "adaln_lora_dim": 256,
                "max_size": [128, 240, 240], "patch_size": [1, 2, 2], "rope_scale": [1.0, 4.0, 4.0],
                "concat_padding_mask": True, "extra_pos_embed_type": None}),
}

# Stable Cascade's prior (Stage C), stabilityai/stable-cascade-prior
STAGE_C = {"in_channels": 16, "out_channels": 16, "timestep_ratio_embedding_dim": 64, "patch_size": 1,
           "conditioning_dim": 2048, "block_out_channels": [2048, 2048], "num_attention_heads": [32, 32],
           "down_num_layers_per_block": [8, 24], "up_num_layers_per_block": [24, 8],
           "down_blocks_repeat_mappers": [1, 1], "up_blocks_repeat_mappers": [1, 1],
           "block_types_per_layer": [["SDCascadeResBlock", "SDCascadeTimestepBlock", "SDCascadeAttnBlock"]] * 2,
           "clip_text_in_channels": 1280, "clip_text_pooled_in_channels": 1280, "clip_image_in_channels": 768,
           "clip_seq": 4, "kernel_size": 3, "dropout": [0.1, 0.1], "self_attn": True,
           "timestep_conditioning_type": ["sca", "crp"], "switch_level": [False]}

MODELS = {"sd1x": "runwayml/stable-diffusion-v1-5", "sd2x": "stabilityai/stable-diffusion-2-1",
          "sdxl": "stabilityai/stable-diffusion-xl-base-1.0", "sd3": "stabilityai/stable-diffusion-3.5-medium",
          "flux": "black-forest-labs/FLUX.1-dev", "flux2": "black-forest-labs/FLUX.2-dev",
          "chroma": "lodestones/Chroma1-HD", "auraflow": "fal/AuraFlow", "z_image": "Tongyi-MAI/Z-Image-Turbo",
          "lumina2": "Alpha-VLLM/Lumina-Image-2.0", "qwen_image": "Qwen/Qwen-Image",
          "hidream": "HiDream-ai/HiDream-I1-Full", "kandinsky5": "kandinskylab/Kandinsky-5.0-T2V-Lite",
          "wan": "Wan-AI/Wan2.1-T2V-14B-Diffusers", "ltxvideo": "Lightricks/LTX-Video",
          "cosmos": "nvidia/Cosmos-Predict2-2B-Text2Image", "stable_cascade": "stabilityai/stable-cascade-prior"}


def config_of(family_id: str) -> dict:
    """The denoiser config (diffusers keys) of the family's full-size model."""
    if family_id in UNET:
        return dict(UNET[family_id])
    if family_id == "stable_cascade":
        return dict(STAGE_C)
    return dict(TRANSFORMER[family_id][1])


def write_model_folder(family_id: str, root: Path) -> Path:
    """A folder with only the denoiser's config.json, where the family's `skeleton` reads it."""
    if family_id in UNET:
        sub, cls = "unet", "UNet2DConditionModel"
    elif family_id == "stable_cascade":
        sub, cls = "prior_prior", "StableCascadeUNet"
    else:
        sub, cls = "transformer", TRANSFORMER[family_id][0]
    folder = root / family_id / sub
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"_class_name": cls, **config_of(family_id)}), encoding="utf-8")
    return root / family_id
