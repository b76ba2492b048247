"""What the video transformer families (Wan, LTX-Video, Cosmos) share: images as one-frame clips.

A slider is trained from image buckets, so every image becomes a clip of one frame: pixels (B, 3, H, W)
go through the video VAE as (B, 3, 1, H, W) and the latents stay 5-D (B, C, 1, h, w), so the noise
drawn for them has the video layout the transformer expects. Rendering asks the pipeline for one frame
per prompt and returns that frame as the image. The tiny text encoders (T5 / UMT5) and their word-level
tokenizer are built here from small configs, offline.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from sliderstudio.families.base import Conditioning, seeded_generators, step_callback
from sliderstudio.families.flow import FlowFamily
from sliderstudio.families.tiny import WORDS


@dataclass
class VideoFlowFamily(FlowFamily):
    """A flow-matching video transformer trained on single-frame clips."""

    denoiser_name: str = "transformer"
    transformer_class_name: str = ""
    text_length: int = 512  # the pipeline's max_sequence_length: training pads prompts exactly like inference

    def skeleton(self, model_dir: Path) -> torch.nn.Module:
        import diffusers

        cls = getattr(diffusers, self.transformer_class_name)
        config = cls.load_config(str(model_dir), subfolder="transformer")
        with torch.device("meta"):
            return cls.from_config(config)

    def encode_prompts(self, pipe: Any, prompts: list[str]) -> list[Conditioning]:
        """T5 states padded to a fixed length (the pipelines zero the padding, so no mask is needed)."""
        device, length = pipe.text_encoder.device, self.sequence_length(pipe)
        out = []
        with torch.no_grad():
            for prompt in prompts:
                embeds, _ = pipe.encode_prompt(prompt=prompt, do_classifier_free_guidance=False,
                                               max_sequence_length=length, device=device)
                out.append(Conditioning({"encoder_hidden_states": embeds.cpu()}))
        return out

    def encode_images(self, pipe: Any, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [-1, 1] → normalised latents (B, C, 1, h, w)."""
        vae = pipe.vae
        with torch.no_grad():
            clip = pixels.to(vae.device, vae.dtype).unsqueeze(2)
            latents = vae.encode(clip).latent_dist.mode()
        return self.normalise(vae, latents.float()).cpu()

    def normalise(self, vae: Any, latents: torch.Tensor) -> torch.Tensor:
        """Per-channel (z − mean) / std, the inverse of the pipeline's decode step (Wan VAE convention)."""
        mean = torch.tensor(vae.config.latents_mean, dtype=latents.dtype).view(1, -1, 1, 1, 1)
        std = torch.tensor(vae.config.latents_std, dtype=latents.dtype).view(1, -1, 1, 1, 1)
        return (latents - mean.to(latents.device)) / std.to(latents.device)

    def sequence_length(self, pipe: Any) -> int:
        """Text tokens per prompt: the pipeline's default, capped by the tokenizer (tiny models use 16)."""
        limit = getattr(pipe.tokenizer, "model_max_length", None) or self.text_length
        return min(self.text_length, int(limit))

    def clip_kwargs(self, pipe: Any) -> dict[str, Any]:
        """Pipeline arguments for a one-frame render with the training's text length."""
        return {"num_frames": 1, "max_sequence_length": self.sequence_length(pipe)}

    def images_of(self, result: Any) -> list[Any]:
        """The first frame of every clip (video pipelines return a list of frame lists)."""
        return [frames[0] for frames in result.frames]

    def render(self, pipe: Any, prompts: list[str], seed: int, steps: int, guidance: float,
               size: int, negative_prompt: str | None = None,
               on_step: Callable[[int, int], None] | None = None) -> list[Any]:
        """The generic call of `Family.render`, plus arguments that depend on the loaded tokenizer."""
        result = pipe(prompt=prompts, negative_prompt=[negative_prompt] * len(prompts) if negative_prompt else None,
                      num_inference_steps=steps, guidance_scale=guidance,
                      generator=seeded_generators(len(prompts), seed), height=size, width=size, output_type="pil",
                      callback_on_step_end=step_callback(on_step, steps), **self.clip_kwargs(pipe))
        return self.images_of(result)


def tiny_t5_tokenizer(max_length: int = 16):
    """A T5 tokenizer whose vocabulary is the tiny word list (one token per word), built offline."""
    from transformers import T5TokenizerFast

    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)] + [("▁" + w, -1.0) for w in WORDS]
    tok = T5TokenizerFast(vocab=vocab, extra_ids=0)
    tok.model_max_length = max_length
    return tok


def tiny_t5_encoder(hidden: int = 16, umt5: bool = False, seed: int = 0) -> torch.nn.Module:
    """A two-layer T5 (or UMT5, for Wan) encoder sized for the tiny vocabulary."""
    from transformers import T5Config, T5EncoderModel, UMT5Config, UMT5EncoderModel

    config_cls, model_cls = (UMT5Config, UMT5EncoderModel) if umt5 else (T5Config, T5EncoderModel)
    config = config_cls(vocab_size=len(WORDS) + 3, d_model=hidden, d_kv=8, d_ff=2 * hidden, num_layers=2,
                        num_heads=2, relative_attention_num_buckets=8, pad_token_id=0, eos_token_id=1,
                        decoder_start_token_id=0)
    torch.manual_seed(seed)
    return model_cls(config).eval()


def tiny_wan_vae(seed: int = 0) -> torch.nn.Module:
    """A Wan VAE (also Cosmos-Predict2's) with 4× spatial compression and non-trivial latent statistics."""
    from diffusers import AutoencoderKLWan

    torch.manual_seed(seed)
    return AutoencoderKLWan(base_dim=8, z_dim=4, dim_mult=[1, 1, 1], num_res_blocks=1,
                            temperal_downsample=[False, True],
                            scale_factor_spatial=4, scale_factor_temporal=2, latents_mean=[0.1, -0.2, 0.05, 0.3],
                            latents_std=[1.5, 0.8, 1.2, 2.0])
