"""Kandinsky 5.0 (text-to-image): a 3D flow transformer with text-encoder blocks and visual decoder blocks.

The pipeline keeps latents channels-last with a frame axis, (B, 1, H, W, C), passes σ·1000 as the
timestep and steps the scheduler with the output unchanged, so the model predicts ε − x₀. Its VAE
latents are only scaled (the pipeline ignores the VAE's shift factor, so training must too). Text
goes through Qwen2.5-VL (template tokens dropped, no mask: a single prompt is never padded) plus a
pooled CLIP embedding. Captions of different lengths in one training batch are zero-padded, as the
transformer takes no text mask. Visual blocks attend to the text only through `cross_attention`;
`text_transformer_blocks` are the text path. The transformer takes no LoRA scale argument: the
slider's scale is set on the layers, which works the same.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from sliderstudio.families.base import Conditioning
from sliderstudio.families.captions import pad_captions
from sliderstudio.families.flow import FlowFamily
from sliderstudio.families.text_path import DIFFUSERS_TEXT_PATH

MAX_SEQUENCE_LENGTH = 512  # the pipeline's default
CLIP_LENGTH = 77


@contextmanager
def allow_size(pipe: Any, size: int) -> Iterator[None]:
    """The pipeline snaps every request to its trained resolutions; let it render the requested square."""
    saved = pipe.resolutions
    if (size, size) not in saved:
        pipe.resolutions = [*saved, (size, size)]
    try:
        yield
    finally:
        pipe.resolutions = saved


def open_gates(transformer: torch.nn.Module) -> None:
    """Give the modulation layers random weights: they start at zero, and zero gates in an untrained tiny
    model would cut every block (and every adapter gradient) out of the output."""
    for name, module in transformer.named_modules():
        if name.endswith("modulation.out_layer"):
            torch.nn.init.normal_(module.weight, std=0.2)
            torch.nn.init.normal_(module.bias, std=0.2)


@dataclass
class Kandinsky5Family(FlowFamily):
    denoiser_name: str = "transformer"

    def skeleton(self, model_dir: Path) -> torch.nn.Module:
        from diffusers import Kandinsky5Transformer3DModel

        config = Kandinsky5Transformer3DModel.load_config(str(model_dir), subfolder="transformer")
        with torch.device("meta"):
            return Kandinsky5Transformer3DModel.from_config(config)

    def encode_prompts(self, pipe: Any, prompts: list[str]) -> list[Conditioning]:
        out = []
        with torch.no_grad():
            for prompt in prompts:
                text, pooled, _ = pipe.encode_prompt(prompt, max_sequence_length=MAX_SEQUENCE_LENGTH,
                                                     device=pipe.text_encoder.device, dtype=torch.float32)
                out.append(Conditioning({"encoder_hidden_states": text.cpu(), "pooled_projections": pooled.cpu()}))
        return out

    def collate(self, conds: list[Conditioning], device: torch.device, dtype: torch.dtype,
                image_size: int) -> Conditioning:
        padded, _ = pad_captions(conds, "encoder_hidden_states")
        pooled = torch.cat([c.kwargs["pooled_projections"] for c in conds])
        return Conditioning({"encoder_hidden_states": padded, "pooled_projections": pooled}).to(device, dtype)

    def encode_images(self, pipe: Any, pixels: torch.Tensor) -> torch.Tensor:
        vae = pipe.vae
        with torch.no_grad():
            latents = vae.encode(pixels.to(vae.device, vae.dtype)).latent_dist.mode()
        return (latents * vae.config.scaling_factor).float().cpu()

    def predict(self, denoiser: torch.nn.Module, noisy: torch.Tensor, timesteps: torch.Tensor,
                cond: Conditioning) -> torch.Tensor:
        _, _, h, w = noisy.shape
        text = cond.kwargs["encoder_hidden_states"]
        p = denoiser.config.patch_size
        device = noisy.device
        visual_pos = [torch.arange(1, device=device), torch.arange(h // p[1], device=device),
                      torch.arange(w // p[2], device=device)]
        out = denoiser(hidden_states=noisy.permute(0, 2, 3, 1).unsqueeze(1), encoder_hidden_states=text,
                       timestep=timesteps.to(noisy.dtype), pooled_projections=cond.kwargs["pooled_projections"],
                       visual_rope_pos=visual_pos, text_rope_pos=torch.arange(text.shape[1], device=device),
                       return_dict=False)
        return out[:, 0].permute(0, 3, 1, 2)

    def render(self, pipe: Any, prompts: list[str], seed: int, steps: int, guidance: float,
               size: int, negative_prompt: str | None = None,
               on_step: Callable[[int, int], None] | None = None) -> list[Any]:
        with allow_size(pipe, size):
            return super().render(pipe, prompts, seed, steps, guidance, size, negative_prompt, on_step)

    def render_kwargs(self) -> dict[str, Any]:
        return {"max_sequence_length": MAX_SEQUENCE_LENGTH}

    def images_of(self, result: Any) -> list[Any]:
        return list(result.image)

    def default_size(self, pipe: Any) -> int:
        return 1024

    def build_tiny(self, out_dir: Path, seed: int = 0) -> Path:
        from diffusers import FlowMatchEulerDiscreteScheduler, Kandinsky5T2IPipeline, Kandinsky5Transformer3DModel

        from sliderstudio.families.tiny import tiny_tokenizer, tiny_vae
        from sliderstudio.families.tiny_text import tiny_clip_long, tiny_qwen25_vl, word_tokenizer

        vae = tiny_vae(seed)  # the pipeline assumes 8× downsampling, as tiny_vae has
        vae.register_to_config(scaling_factor=0.3611, shift_factor=0.1159)
        torch.manual_seed(seed)
        transformer = Kandinsky5Transformer3DModel(
            in_visual_dim=4, in_text_dim=32, in_text_dim2=16, time_dim=16, out_visual_dim=4, patch_size=(1, 2, 2),
            model_dim=32, ff_dim=64, num_text_blocks=1, num_visual_blocks=2, axes_dims=(4, 6, 6))
        open_gates(transformer)
        # The real tokenizer slot holds a Qwen2-VL processor; for text-only prompts a tokenizer is equivalent.
        pipe = Kandinsky5T2IPipeline(
            transformer=transformer, vae=vae, text_encoder=tiny_qwen25_vl(32, 2, seed),
            tokenizer=word_tokenizer(MAX_SEQUENCE_LENGTH + 64),
            text_encoder_2=tiny_clip_long(CLIP_LENGTH, False, 16, seed), tokenizer_2=tiny_tokenizer(CLIP_LENGTH),
            scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0))
        pipe.save_pretrained(out_dir, safe_serialization=True)
        return Path(out_dir)


KANDINSKY5 = Kandinsky5Family(id="kandinsky5", label="Kandinsky 5.0 (image)",
                              pipeline_class_name="Kandinsky5T2IPipeline",
                              aliases=("kandinsky", "kandinsky-5", "kandinsky_5", "kandinsky5-image",
                                       "kandinsky5_image"),
                              text_path_markers=DIFFUSERS_TEXT_PATH + ("text_transformer_blocks", "text_embeddings"))
FAMILIES = (KANDINSKY5,)
