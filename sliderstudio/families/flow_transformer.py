"""What the diffusers transformer families (SD3, Flux, Flux2, Chroma, AuraFlow) have in common.

The denoiser is `pipe.transformer` and its module tree comes from `transformer/config.json` alone, so
target resolution never needs the weights. Rendering is `Family.render` (one seeded generator per
image, step callback); subclasses adjust it through `render_kwargs`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from sliderstudio.families.comfy_naming import TRANSFORMER_KEYS, ComfyNaming
from sliderstudio.families.flow import FlowFamily


@dataclass
class TransformerFlowFamily(FlowFamily):
    denoiser_name: str = "transformer"
    transformer_class_name: str = ""
    comfy: ComfyNaming = TRANSFORMER_KEYS

    @property
    def transformer_class(self) -> type:
        import diffusers

        return getattr(diffusers, self.transformer_class_name)

    def skeleton(self, model_dir: Path) -> torch.nn.Module:
        cls = self.transformer_class
        config = cls.load_config(str(model_dir), subfolder="transformer")
        with torch.device("meta"):
            return cls.from_config(config)

    def default_size(self, pipe: Any) -> int:
        """Transformers without `sample_size` in their config (Flux, Chroma, Flux2) keep it in the pipeline."""
        sample = getattr(pipe.transformer.config, "sample_size", None) or getattr(pipe, "default_sample_size", 128)
        return int(sample * pipe.vae_scale_factor)


def guidance_input(denoiser: torch.nn.Module, batch: int, like: torch.Tensor, value: float) -> torch.Tensor | None:
    """The distilled-guidance input for checkpoints that embed it (Flux dev, Flux.2 dev), else None."""
    if not getattr(denoiser.config, "guidance_embeds", False):
        return None
    return torch.full((batch,), value, device=like.device, dtype=torch.float32)
