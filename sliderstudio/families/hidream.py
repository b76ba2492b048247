"""HiDream-I1: a sparse (mixture-of-experts) dual/single-stream flow transformer with four text encoders.

Conditioning: pooled CLIP-L + CLIP-G embeddings, T5 hidden states, and *every* Llama 3.1 layer's
hidden states (the pipeline returns them layer-first, (layers, B, L, D); we cache them batch-first so
the ordinary collate concatenates on dim 0). The pipeline calls the transformer with σ·1000 and
negates its output, so the model predicts x₀ − ε and our prediction of ε − x₀ is −output.
In training mode the transformer returns patches as (B, C, S, p²) (the original trainer's layout);
`predict` folds that back into (B, C, H, W).
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from sliderstudio.families.base import Conditioning
from sliderstudio.families.controlnet_support import ControlledDenoiser, ControlNetSupport
from sliderstudio.families.flow import FlowFamily
from sliderstudio.families.text_path import DIFFUSERS_TEXT_PATH

MAX_SEQUENCE_LENGTH = 128  # the pipeline's default, for T5, Llama and CLIP alike


def fold_patches(out: torch.Tensor, h: int, w: int, p: int) -> torch.Tensor:
    """(B, C, S, p·p) with S = (h/p)·(w/p), row-major patches → (B, C, h, w)."""
    b, c = out.shape[:2]
    x = out.reshape(b, c, h // p, w // p, p, p).permute(0, 1, 2, 4, 3, 5)
    return x.reshape(b, c, h, w)


@contextmanager
def render_area(pipe: Any, size: int) -> Iterator[None]:
    """The pipeline rescales every request to the area of its default size; make that the requested size.

    A ControlNet render passes a proxy (`ControlPipe`) whose `.pipe` is the pipeline that reads it.
    """
    pipe = getattr(pipe, "pipe", pipe)
    saved = pipe.default_sample_size
    pipe.default_sample_size = size // pipe.vae_scale_factor
    try:
        yield
    finally:
        pipe.default_sample_size = saved


class ControlledHiDream(ControlledDenoiser):
    """HiDream transformer + SimpleTuner's HiDream ControlNet, called like the transformer.

    As SimpleTuner's ControlNet training step: the ControlNet sees the same noisy latents, timesteps
    and T5 / Llama / pooled states; its residuals are added after the transformer's blocks for this
    call only.
    """

    def forward(self, hidden_states: torch.Tensor, timesteps: torch.Tensor, encoder_hidden_states_t5: torch.Tensor,
                encoder_hidden_states_llama3: torch.Tensor, pooled_embeds: torch.Tensor, return_dict: bool = False,
                **kwargs: Any) -> Any:
        from sliderstudio.families.hidream_controlnet import controlnet_samples, hidream_residuals

        double, single = controlnet_samples(self.controlnet, hidden_states, timesteps, encoder_hidden_states_t5,
                                            encoder_hidden_states_llama3, pooled_embeds, self.control(), self.scale)
        with hidream_residuals(self.denoiser, double, single):
            return self.denoiser(hidden_states=hidden_states, timesteps=timesteps,
                                 encoder_hidden_states_t5=encoder_hidden_states_t5,
                                 encoder_hidden_states_llama3=encoder_hidden_states_llama3,
                                 pooled_embeds=pooled_embeds, return_dict=return_dict, **kwargs)


def _control_latents(pipe: Any, controlnet: torch.nn.Module, pixels: torch.Tensor) -> torch.Tensor:
    from sliderstudio.families.hidream_control_pipeline import hidream_control_latents

    return hidream_control_latents(pipe, controlnet, pixels)


HIDREAM_CONTROLNET = ControlNetSupport(
    "sliderstudio.families.hidream_controlnet.HiDreamControlNetModel",
    "sliderstudio.families.hidream_control_pipeline.HiDreamControlNetPipeline", ControlledHiDream,
    image_kwarg="control_image", encode=_control_latents, tag=lambda controlnet: "latents")


@dataclass
class HiDreamFamily(FlowFamily):
    denoiser_name: str = "transformer"

    def skeleton(self, model_dir: Path) -> torch.nn.Module:
        from diffusers import HiDreamImageTransformer2DModel

        config = HiDreamImageTransformer2DModel.load_config(str(model_dir), subfolder="transformer")
        with torch.device("meta"):
            return HiDreamImageTransformer2DModel.from_config(config)

    def encode_prompts(self, pipe: Any, prompts: list[str]) -> list[Conditioning]:
        out = []
        with torch.no_grad():
            for prompt in prompts:
                t5, _, llama, _, pooled, _ = pipe.encode_prompt(
                    prompt=[prompt], device=pipe.text_encoder_4.device, do_classifier_free_guidance=False,
                    max_sequence_length=MAX_SEQUENCE_LENGTH)
                out.append(Conditioning({"t5": t5.float().cpu(), "llama": llama.transpose(0, 1).float().cpu(),
                                         "pooled": pooled.float().cpu()}))
        return out

    def predict(self, denoiser: torch.nn.Module, noisy: torch.Tensor, timesteps: torch.Tensor,
                cond: Conditioning) -> torch.Tensor:
        out = denoiser(hidden_states=noisy, timesteps=timesteps.to(noisy.dtype),
                       encoder_hidden_states_t5=cond.kwargs["t5"],
                       encoder_hidden_states_llama3=cond.kwargs["llama"].transpose(0, 1),
                       pooled_embeds=cond.kwargs["pooled"], return_dict=False)[0]
        if out.shape != noisy.shape:  # training-mode patch layout
            out = fold_patches(out, noisy.shape[-2], noisy.shape[-1], denoiser.config.patch_size)
        return -out

    def render(self, pipe: Any, prompts: list[str], seed: int, steps: int, guidance: float,
               size: int, negative_prompt: str | None = None,
               on_step: Callable[[int, int], None] | None = None) -> list[Any]:
        with render_area(pipe, size):
            return super().render(pipe, prompts, seed, steps, guidance, size, negative_prompt, on_step)

    def render_kwargs(self) -> dict[str, Any]:
        return {"max_sequence_length": MAX_SEQUENCE_LENGTH}

    def default_size(self, pipe: Any) -> int:
        return int(pipe.default_sample_size * pipe.vae_scale_factor)

    def build_tiny(self, out_dir: Path, seed: int = 0) -> Path:
        return build_tiny_hidream(out_dir, seed)


def build_tiny_hidream(out_dir: str | Path, seed: int = 0, experts: tuple[int, int] = (2, 1)) -> Path:
    """A tiny HiDream-I1; `experts` = (routed, activated) (SimpleTuner's ControlNet needs HiDream's 4 / 2)."""
    from diffusers import FlowMatchEulerDiscreteScheduler, HiDreamImagePipeline, HiDreamImageTransformer2DModel

    from sliderstudio.families.tiny import tiny_tokenizer, tiny_vae
    from sliderstudio.families.tiny_text import tiny_clip_long, tiny_llama, tiny_t5, word_tokenizer

    vae = tiny_vae(seed)
    vae.register_to_config(scaling_factor=0.3611, shift_factor=0.1159)
    torch.manual_seed(seed)
    transformer = HiDreamImageTransformer2DModel(
        patch_size=2, in_channels=4, num_layers=1, num_single_layers=1, attention_head_dim=16,
        num_attention_heads=2, caption_channels=[32, 32], text_emb_dim=32, num_routed_experts=experts[0],
        num_activated_experts=experts[1], axes_dims_rope=(8, 4, 4), max_resolution=(8, 8), llama_layers=[0, 1])
    n = MAX_SEQUENCE_LENGTH
    pipe = HiDreamImagePipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0), vae=vae,
        text_encoder=tiny_clip_long(n, True, 16, seed), tokenizer=tiny_tokenizer(n),
        text_encoder_2=tiny_clip_long(n, True, 16, seed + 1), tokenizer_2=tiny_tokenizer(n),
        text_encoder_3=tiny_t5(32, seed), tokenizer_3=word_tokenizer(n, "<pad>", "</s>", append_eos=True),
        text_encoder_4=tiny_llama(32, 2, seed), tokenizer_4=word_tokenizer(n, "</s>", "</s>", bos="<s>"),
        transformer=transformer)
    pipe.save_pretrained(out_dir, safe_serialization=True)
    return Path(out_dir)


HIDREAM = HiDreamFamily(id="hidream", label="HiDream-I1", pipeline_class_name="HiDreamImagePipeline",
                        aliases=("hidream-i1", "hidream_i1", "hi-dream"), flavours=("full", "dev", "fast"),
                        controlnet=HIDREAM_CONTROLNET, comfy_lycoris=True, single_file_types={"hidream": None},
                        # the caption projections, the pooled embedder and the text stream (`_t`) of each block
                        text_path_markers=DIFFUSERS_TEXT_PATH + ("caption_projection", ".p_embedder.", ".to_q_t.",
                                                                 ".to_k_t.", ".to_v_t.", ".to_out_t.", ".ff_t."))
FAMILIES = (HIDREAM,)
