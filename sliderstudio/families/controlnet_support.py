"""What a family declares to train sliders on a ControlNet, and the wrapper every family's wrapper builds on.

A ControlNet slider puts its targets on the ControlNet; the family's denoiser stays untouched. The
training step and the family's own `predict` must not notice: they call one module with the
denoiser's own call signature. `ControlledDenoiser` is that module. Each family subclasses it with a
`forward` that runs the ControlNet on the batch's conditioning and hands its residuals to the
denoiser the way that family's diffusers ControlNet pipeline does.

The conditioning itself differs per family: UNet ControlNets read pixels in [0, 1]; the transformer
ControlNets of SD3, Flux (InstantX style), AuraFlow and HiDream read VAE latents of the control image, which is why
`encode` is a family trait too, and why its cache tag names the representation.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import torch
from torch import nn


class ControlledDenoiser(nn.Module):
    """Denoiser + ControlNet behind the denoiser's call, with the batch's conditioning set around it."""

    def __init__(self, denoiser: nn.Module, controlnet: nn.Module, scale: float = 1.0):
        super().__init__()
        self.denoiser, self.controlnet, self.scale = denoiser, controlnet, scale
        self._control: torch.Tensor | None = None

    @property
    def unet(self) -> nn.Module:
        """The wrapped denoiser under the name the UNet families have always used."""
        return self.denoiser

    @property
    def config(self) -> Any:
        """The denoiser's config: family code reads traits from it (e.g. Flux's guidance embedding)."""
        return self.denoiser.config

    @property
    def dtype(self) -> torch.dtype:
        return self.denoiser.dtype

    @property
    def device(self) -> torch.device:
        return self.denoiser.device

    @contextmanager
    def conditioned_on(self, control: torch.Tensor) -> Iterator[None]:
        """The conditioning tensor (already in the ControlNet's representation) for forwards inside."""
        previous, self._control = self._control, control
        try:
            yield
        finally:
            self._control = previous

    def control(self) -> torch.Tensor:
        if self._control is None:
            raise RuntimeError(f"{type(self).__name__} called without conditioning (use conditioned_on)")
        return self._control


def vae_latents(pipe: Any, pixels: torch.Tensor, shift: float | None = None) -> torch.Tensor:
    """Control images (in [-1, 1]) as the VAE latents transformer ControlNets read: (latents − shift) × scale.

    `shift` None means the VAE's own shift factor. The distribution's mode, not a sample (diffusers'
    and SimpleTuner's pipelines sample): a cached training conditioning and a preview of the same
    image then agree exactly.
    """
    vae = pipe.vae
    with torch.no_grad():
        latents = vae.encode(pixels.to(vae.device, vae.dtype)).latent_dist.mode()
    if shift is None:
        shift = getattr(vae.config, "shift_factor", None) or 0.0
    return ((latents - shift) * vae.config.scaling_factor).float().cpu()


def unit_pixels(pipe: Any, controlnet: nn.Module, pixels: torch.Tensor) -> torch.Tensor:
    """UNet ControlNets read the control image as pixels in [0, 1] (diffusers' control image processor)."""
    return (pixels + 1.0) / 2.0


@dataclass(frozen=True)
class ControlNetSupport:
    """A family's ControlNet traits.

    `encode(pipe, controlnet, pixels)` turns control images given in [-1, 1] (B, 3, H, W) into what the
    ControlNet reads; `tag(controlnet)` names that representation for the feature cache, so a cache
    written for one kind of ControlNet is never read for another.
    """

    model_class: str                      # diffusers ControlNet class, e.g. "SD3ControlNetModel", or "module.Class"
    pipeline_class: str                   # the pipeline that renders with it (same naming)
    wrapper: Callable[[nn.Module, nn.Module], ControlledDenoiser]
    image_kwarg: str = "image"            # the pipeline's argument for the control image
    encode: Callable[[Any, nn.Module, torch.Tensor], torch.Tensor] = unit_pixels
    tag: Callable[[nn.Module], str] = lambda controlnet: "pixels01"

    @property
    def model_cls(self) -> type:
        return resolve_class(self.model_class)

    @property
    def pipeline_cls(self) -> type:
        return resolve_class(self.pipeline_class)


def resolve_class(name: str) -> type:
    """A diffusers class by its name, or our own (AuraFlow, HiDream: diffusers has none) by its dotted path."""
    import importlib

    module, _, attr = name.rpartition(".")
    return getattr(importlib.import_module(module or "diffusers"), attr)
