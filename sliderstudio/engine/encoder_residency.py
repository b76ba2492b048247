"""Where the text encoders and the VAE encoder live during a run: on the accelerator only while needed.

Training reads latents and captions from the cache, so once the cache is complete the encoders are
dead weight on the device (a T5-XXL is ~9 GB). They leave it after encoding; when every latent and
caption is already cached they never go there at all. Validation renders need the text encoders
(new prompts) and brings them back for the render, then releases them again. The VAE decoder stays:
validation decodes every image.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import torch

Logger = Callable[[str, str], None]
TEXT_PREFIXES = ("text_encoder", "image_encoder")
VAE_ENCODER_PARTS = ("encoder", "quant_conv")


def encoder_modules(pipe: Any) -> dict[str, torch.nn.Module]:
    """The pipeline's text encoders and its VAE's encoding half, by name."""
    found = {name: module for name, module in pipe.components.items()
             if isinstance(module, torch.nn.Module) and name.startswith(TEXT_PREFIXES)}
    vae = getattr(pipe, "vae", None)
    for part in VAE_ENCODER_PARTS:
        module = getattr(vae, part, None)
        if isinstance(module, torch.nn.Module):
            found[f"vae.{part}"] = module
    return found


def module_bytes(modules: dict[str, torch.nn.Module]) -> int:
    return sum(p.numel() * p.element_size() for m in modules.values() for p in m.parameters())


def place_pipeline(pipe: Any, device: torch.device, keep_off: dict[str, torch.nn.Module]) -> None:
    """Move every pipeline module to `device` except those in `keep_off`, which are never moved."""
    skip = {id(m) for m in keep_off.values()}
    for module in pipe.components.values():
        if isinstance(module, torch.nn.Module) and id(module) not in skip:
            _move_except(module, device, skip)


def _move_except(module: torch.nn.Module, device: torch.device, skip: set[int]) -> None:
    if not any(id(m) in skip for m in module.modules()):
        module.to(device)
        return
    for child in module.children():
        if id(child) not in skip:
            _move_except(child, device, skip)
    for name, param in module.named_parameters(recurse=False):
        param.data = param.data.to(device)
    for name, buf in module.named_buffers(recurse=False):
        setattr(module, name, buf.to(device))


def release_accelerator(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()


@dataclass
class EncoderResidency:
    """The encoders of one run and whether they are on the run's device right now."""
    modules: dict[str, torch.nn.Module]
    device: torch.device
    log: Logger
    on_device: bool = True
    history: list[str] = field(default_factory=list)  # "on" / "off" moves, in order (what tests and logs see)

    @property
    def names(self) -> str:
        return ", ".join(self.modules) or "none"

    def release(self, reason: str) -> None:
        """Off the device (to the CPU) and the accelerator's cache emptied."""
        if not self.on_device:
            return
        for module in self.modules.values():
            module.to("cpu")
        release_accelerator(self.device)
        self.on_device = False
        self.history.append("off")
        if reason:
            self.log(f"encoders off {self.device} ({self.names}, {module_bytes(self.modules) / 2**20:.1f} MiB): "
                     f"{reason}", "info")

    def bring(self) -> None:
        if self.on_device:
            return
        for module in self.modules.values():
            module.to(self.device)
        self.on_device = True
        self.history.append("on")

    @contextmanager
    def needed(self) -> Iterator[None]:
        """On the device for the duration (a validation render), released afterwards even on error."""
        was_on = self.on_device
        self.bring()
        try:
            yield
        finally:
            if not was_on:
                self.release("")
