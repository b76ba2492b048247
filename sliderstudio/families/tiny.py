"""Tiny random models for tests and `selfcheck`, built from configs in code (nothing is downloaded).

Each builder saves a complete diffusers folder so that tests go through the real `from_pretrained`
loading path, exactly as a user's model would.
"""
from __future__ import annotations

from pathlib import Path

import torch

WORDS = ["a", "an", "the", "photo", "of", "cat", "dog", "red", "blue", "green", "big", "small", "on",
         "background", "circle", "square", "smiling", "bright", "dark", "eyes", "person", "tree"]


def tiny_tokenizer(max_length: int = 16):
    """A word-level CLIP tokenizer (every word above is one token)."""
    from transformers import CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1, "!": 2}
    for word in WORDS:
        vocab[word + "</w>"] = len(vocab)
    tok = CLIPTokenizer(vocab=vocab, merges=[], unk_token="<|endoftext|>", pad_token="<|endoftext|>")
    tok.model_max_length = max_length
    return tok


def tiny_clip(projection: bool = False, hidden: int = 32, seed: int = 0):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    cfg = CLIPTextConfig(vocab_size=len(WORDS) + 3, hidden_size=hidden, intermediate_size=2 * hidden,
                         num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=16,
                         projection_dim=hidden, bos_token_id=0, eos_token_id=1, pad_token_id=1)
    torch.manual_seed(seed)
    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(cfg).eval()


def tiny_vae(seed: int = 0):
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(block_out_channels=(16, 32, 32, 32), in_channels=3, out_channels=3, latent_channels=4,
                         down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                         norm_num_groups=8, sample_size=64)


def tiny_unet(xl: bool = False, cross_dim: int = 32, seed: int = 0):
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    kwargs = dict(block_out_channels=(32, 64), layers_per_block=1, sample_size=8, in_channels=4, out_channels=4,
                  down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                  up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=cross_dim,
                  attention_head_dim=8, norm_num_groups=8)
    if xl:
        kwargs.update(addition_embed_type="text_time", addition_time_embed_dim=8,
                      projection_class_embeddings_input_dim=cross_dim // 2 + 6 * 8, cross_attention_dim=cross_dim)
    return UNet2DConditionModel(**kwargs)


def build_tiny_sd(out_dir: str | Path, family: str = "sd1x", prediction: str = "epsilon", seed: int = 0) -> Path:
    """Save a tiny SD 1.x / 2.x / SDXL pipeline (64 px images, 8×8 latents) to `out_dir`."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline, StableDiffusionXLPipeline

    out = Path(out_dir)
    scheduler = DDIMScheduler(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085,
                              beta_end=0.012, prediction_type=prediction, clip_sample=False,
                              set_alpha_to_one=False, steps_offset=1, timestep_spacing="leading")
    if family == "sdxl":
        pipe = StableDiffusionXLPipeline(
            vae=tiny_vae(seed), text_encoder=tiny_clip(False, 16, seed), text_encoder_2=tiny_clip(True, 16, seed + 1),
            tokenizer=tiny_tokenizer(), tokenizer_2=tiny_tokenizer(), unet=tiny_unet(True, 32, seed),
            scheduler=scheduler)
    else:
        pipe = StableDiffusionPipeline(
            vae=tiny_vae(seed), text_encoder=tiny_clip(False, 32, seed), tokenizer=tiny_tokenizer(),
            unet=tiny_unet(False, 32, seed), scheduler=scheduler, safety_checker=None,
            feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(out, safe_serialization=True)
    return out
