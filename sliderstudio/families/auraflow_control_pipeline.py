"""Rendering AuraFlow with a SimpleTuner AuraFlow ControlNet: diffusers' own AuraFlowPipeline, plus residuals.

diffusers' `AuraFlowPipeline` calls `self.transformer(...)` once per denoising step. This subclass
adds a `controlnet` component and a `control_image` argument; around its call, every transformer
call first runs the ControlNet on that call's latents, prompt embeddings and timestep (the control
latents repeated over the classifier-free-guidance batch) and installs its residuals for that call
only, as SimpleTuner's AuraFlow ControlNet pipeline feeds its transformer. The denoising loop, the
scheduler and the decoding stay diffusers' own.
"""
from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

import torch
from diffusers import AuraFlowPipeline, AuraFlowTransformer2DModel, AutoencoderKL, FlowMatchEulerDiscreteScheduler
from torch import nn
from transformers import T5Tokenizer, UMT5EncoderModel

from sliderstudio.families.auraflow_controlnet import (AuraFlowControlNetModel, auraflow_residuals, check_fits,
                                                      controlnet_samples)
from sliderstudio.families.controlnet_support import vae_latents
from sliderstudio.families.residual_hooks import around_each_call


def auraflow_control_latents(pipe: Any, controlnet: nn.Module, pixels: torch.Tensor) -> torch.Tensor:
    """Control images (in [-1, 1]) as the VAE latents × scaling factor SimpleTuner's AuraFlow ControlNet reads.

    SimpleTuner's pipeline samples the latent distribution; we take its mode (see `vae_latents`).
    """
    return vae_latents(pipe, pixels, shift=0.0)


class AuraFlowControlNetPipeline(AuraFlowPipeline):
    """`AuraFlowPipeline` with a ControlNet; build it with `from_pipe(pipe, controlnet=...)`."""

    def __init__(self, tokenizer: T5Tokenizer, text_encoder: UMT5EncoderModel, vae: AutoencoderKL,
                 transformer: AuraFlowTransformer2DModel, scheduler: FlowMatchEulerDiscreteScheduler,
                 controlnet: AuraFlowControlNetModel):
        """The type hints matter: `from_pipe` carries a model component over only when its type matches."""
        super().__init__(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, transformer=transformer,
                         scheduler=scheduler)
        check_fits(transformer, controlnet)
        self.register_modules(controlnet=controlnet)

    def __call__(self, *args: Any, control_image: Any = None, controlnet_conditioning_scale: float = 1.0,
                 height: int = 1024, width: int = 1024, **kwargs: Any) -> Any:
        if control_image is None:
            raise ValueError("AuraFlowControlNetPipeline needs a control_image")
        pixels = self.image_processor.preprocess(control_image, height=height, width=width)
        control = auraflow_control_latents(self, self.controlnet, pixels)

        def residuals_for(call_args: tuple, call_kwargs: dict) -> AbstractContextManager:
            latents = call_args[0] if call_args else call_kwargs["hidden_states"]
            samples = controlnet_samples(self.controlnet, latents, call_kwargs["encoder_hidden_states"],
                                         call_kwargs["timestep"], control, controlnet_conditioning_scale)
            return auraflow_residuals(self.transformer, samples)

        with around_each_call(self.transformer, residuals_for):
            return super().__call__(*args, height=height, width=width, **kwargs)
