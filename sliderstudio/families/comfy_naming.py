"""A family's ComfyUI LoRA naming: which key ComfyUI's loader maps each adapted module to.

ComfyUI (`comfy/lora.py`, `model_lora_keys_unet`) loads a LoRA by key *prefix*: it builds a map from
key stems to weights of its own (native) model. Every model accepts `diffusion_model.<native path>`
and `lora_unet_<native path, dots → underscores>`; some architectures also accept diffusers module
paths through a per-architecture map (`transformer.<diffusers path>` for SD3/Flux/AuraFlow/Chroma/
Flux.2, `lora_unet_<diffusers path>` for the SD UNets, `diffusion_model.<diffusers path>` for
Z-Image). Where ComfyUI's native module names differ from diffusers' and no such map exists (Wan,
Cosmos, LTX-Video, Lumina 2, Stable Cascade), the family lists rename rules from its diffusers paths
to ComfyUI's native ones. A native weight that fuses several diffusers layers (Lumina 2's
`attention.qkv` = to_q ‖ to_k ‖ to_v, with fewer key/value heads than query heads) is addressed as
one LoRA key; the rule says which part of the stack each diffusers layer is, and the exporter stacks
the parts (see `engine/export.py`).

This is family knowledge, so it lives with the families; the exporter only applies it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class ComfyRule:
    """`pattern` (a regular expression over the whole diffusers module path) → `replacement`.

    `part`/`parts`: this module is part `part` of `parts` layers stacked (in order, along the output
    dimension) into one native weight.
    """

    pattern: str
    replacement: str
    part: int = 0
    parts: int = 1


@dataclass(frozen=True)
class ComfyKey:
    """Where one adapted module goes: the LoRA key stem and its place in a fused native weight."""

    stem: str
    part: int = 0
    parts: int = 1


@dataclass(frozen=True)
class ComfyNaming:
    """Prefix plus rename rules; `underscores` writes the path with `_` for `.` (kohya style)."""

    prefix: str = "diffusion_model."
    rules: tuple[ComfyRule, ...] = ()
    underscores: bool = False
    basis: str = "ComfyUI's module names"  # what the names are, for the compatibility matrix

    def key(self, module: str) -> ComfyKey:
        """The ComfyUI key of a diffusers module path (the first matching rule renames it)."""
        for rule in self.rules:
            if re.fullmatch(rule.pattern, module):
                path = re.sub(rf"^(?:{rule.pattern})$", rule.replacement, module)
                return ComfyKey(self._stem(path), rule.part, rule.parts)
        return ComfyKey(self._stem(module))

    def _stem(self, path: str) -> str:
        return self.prefix + (path.replace(".", "_") if self.underscores else path)


def rule(pattern: str, replacement: str, part: int = 0, parts: int = 1) -> ComfyRule:
    return ComfyRule(pattern, replacement, part, parts)


# ComfyUI maps diffusers paths for these (its per-architecture diffusers maps in comfy/utils.py).
UNET_KEYS = ComfyNaming(prefix="lora_unet_", underscores=True, basis="diffusers paths via ComfyUI's UNet map")
TRANSFORMER_KEYS = ComfyNaming(prefix="transformer.", basis="diffusers paths via ComfyUI's map for the model")
DIFFUSERS_PATH_KEYS = ComfyNaming(prefix="diffusion_model.", basis="diffusers paths = ComfyUI's names")
Z_IMAGE_KEYS = ComfyNaming(prefix="diffusion_model.", basis="diffusers paths via ComfyUI's Z-Image map")
