"""Rendering HiDream with a SimpleTuner HiDream ControlNet: diffusers' own HiDreamImagePipeline, plus residuals.

diffusers' `HiDreamImagePipeline` calls `self.transformer(...)` once per denoising step and picks the
output size itself (it rescales every request to the area of its default size). This subclass adds
a `controlnet` component and a `control_image` argument; around its call, every transformer call
first runs the ControlNet on that call's latents, timestep and prompt states and installs its
residuals for that call only, as SimpleTuner's HiDream ControlNet pipeline feeds its transformer.
The control image is encoded at the first call, at the size the pipeline actually chose.
"""
from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

import torch
from diffusers import (AutoencoderKL, FlowMatchEulerDiscreteScheduler, HiDreamImagePipeline,
                       HiDreamImageTransformer2DModel)
from torch import nn
from transformers import (CLIPTextModelWithProjection, CLIPTokenizer, LlamaForCausalLM, PreTrainedTokenizerFast,
                          T5EncoderModel, T5Tokenizer)

from sliderstudio.families.hidream_controlnet import HiDreamControlNetModel, controlnet_samples, hidream_residuals
from sliderstudio.families.controlnet_support import vae_latents
from sliderstudio.families.residual_hooks import around_each_call


def hidream_control_latents(pipe: Any, controlnet: nn.Module, pixels: torch.Tensor) -> torch.Tensor:
    """Control images (in [-1, 1]) as the VAE latents (shifted, scaled) SimpleTuner's HiDream ControlNet reads.

    SimpleTuner's pipeline samples the latent distribution; we take its mode (see `vae_latents`).
    """
    return vae_latents(pipe, pixels)


class HiDreamControlNetPipeline(HiDreamImagePipeline):
    """`HiDreamImagePipeline` with a ControlNet; build it with `from_pipe(pipe, controlnet=...)`."""

    def __init__(self, scheduler: FlowMatchEulerDiscreteScheduler, vae: AutoencoderKL,
                 text_encoder: CLIPTextModelWithProjection, tokenizer: CLIPTokenizer,
                 text_encoder_2: CLIPTextModelWithProjection, tokenizer_2: CLIPTokenizer,
                 text_encoder_3: T5EncoderModel, tokenizer_3: T5Tokenizer, text_encoder_4: LlamaForCausalLM,
                 tokenizer_4: PreTrainedTokenizerFast, transformer: HiDreamImageTransformer2DModel,
                 controlnet: HiDreamControlNetModel):
        """The type hints matter: `from_pipe` carries a model component over only when its type matches."""
        super().__init__(scheduler=scheduler, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                         text_encoder_2=text_encoder_2, tokenizer_2=tokenizer_2, text_encoder_3=text_encoder_3,
                         tokenizer_3=tokenizer_3, text_encoder_4=text_encoder_4, tokenizer_4=tokenizer_4,
                         transformer=transformer)
        self.register_modules(controlnet=controlnet)

    def __call__(self, *args: Any, control_image: Any = None, controlnet_conditioning_scale: float = 1.0,
                 **kwargs: Any) -> Any:
        if control_image is None:
            raise ValueError("HiDreamControlNetPipeline needs a control_image")
        encoded: dict[tuple[int, int], torch.Tensor] = {}

        def control_at(latents: torch.Tensor) -> torch.Tensor:
            size = (latents.shape[-2] * self.vae_scale_factor, latents.shape[-1] * self.vae_scale_factor)
            if size not in encoded:
                pixels = self.image_processor.preprocess(control_image, height=size[0], width=size[1])
                encoded[size] = hidream_control_latents(self, self.controlnet, pixels)
            return encoded[size]

        def residuals_for(call_args: tuple, kw: dict) -> AbstractContextManager:
            latents = kw["hidden_states"]
            double, single = controlnet_samples(self.controlnet, latents, kw["timesteps"],
                                                kw["encoder_hidden_states_t5"], kw["encoder_hidden_states_llama3"],
                                                kw["pooled_embeds"], control_at(latents),
                                                controlnet_conditioning_scale)
            return hidream_residuals(self.transformer, double, single)

        with around_each_call(self.transformer, residuals_for):
            return super().__call__(*args, **kwargs)
