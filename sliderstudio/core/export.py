"""Export an adapter to the naming other tools load (SPEC §8): diffusers/PEFT or ComfyUI.

ComfyUI's LoRA loader (`comfy/lora.py`, `model_lora_keys_unet`) maps key *prefixes* to model weights
per architecture and reads the strength-1 scale from a per-layer `.alpha` tensor (scale = alpha /
rank), so alpha is always written and strength 1 means the same in both tools. Names it maps:

- UNet families (SD 1.x/2.x/SDXL): `lora_unet_<diffusers path, dots → underscores>` and, for LyCORIS,
  `lycoris_<same>` (both built from its diffusers UNet map).
- SD3, Flux, AuraFlow: `transformer.<diffusers path>` (their diffusers branches; SD3 and Flux also
  map `lycoris_<path with underscores>`).
- Z-Image (ComfyUI's Lumina2 branch via its Z-Image map) and Qwen-Image (native names equal the
  diffusers ones): `diffusion_model.<diffusers path>` and `lycoris_…`.
- Other transformer families: `diffusion_model.<diffusers path>`, reported as *unconfirmed*: ComfyUI
  uses its own native module names there (e.g. Wan's `self_attn.q`), so such a file may not load.

LoRA tensors become `.lora_down.weight` (PEFT `lora_A`) / `.lora_up.weight` (`lora_B`) plus `.alpha`.
LyCORIS files already use LyCORIS's own `lycoris_<path>` naming with per-module alpha; ComfyUI export
keeps their tensors and names as they are.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import save_file

from sliderstudio.core import atomic
from sliderstudio.core.adapter_io import META_PREFIX, read_metadata, read_tensors
from sliderstudio.core.errors import InputError

FORMATS = ("diffusers", "comfyui")
UNET_PREFIX = "lora_unet_"
# family id → ComfyUI prefix for PEFT-LoRA keys of a transformer denoiser, where confirmed in comfy/lora.py
COMFY_TRANSFORMER_PREFIX = {"sd3": "transformer.", "flux": "transformer.", "auraflow": "transformer.",
                            "z_image": "diffusion_model.", "qwen_image": "diffusion_model."}
DEFAULT_TRANSFORMER_PREFIX = "diffusion_model."
# families whose `lycoris_<path>` keys ComfyUI maps (UNet map, SD3/Flux/Qwen-Image/Lumina2 branches)
COMFY_LYCORIS_FAMILIES = frozenset({"sd1x", "sd2x", "sdxl", "sd3", "flux", "z_image", "qwen_image"})


@dataclass
class ExportResult:
    path: Path
    notes: list[str] = field(default_factory=list)


def comfy_prefix(family: str | None, denoiser: str) -> tuple[str, bool]:
    """(key prefix, confirmed) for a PEFT-LoRA layer of this family's denoiser in ComfyUI."""
    if denoiser == "unet":
        return UNET_PREFIX, True
    if denoiser == "prior":  # Stable Cascade: ComfyUI's cascade prefix, over its own (ldm) module names
        return "lora_prior_unet_", False
    if family in COMFY_TRANSFORMER_PREFIX:
        return COMFY_TRANSFORMER_PREFIX[family], True
    return DEFAULT_TRANSFORMER_PREFIX, False


def comfy_module_name(module: str, prefix: str) -> str:
    """`down_blocks.0.attn1.to_q` → `lora_unet_down_blocks_0_attn1_to_q` or `transformer.<path>`."""
    return prefix + module.replace(".", "_") if prefix.endswith("_") else prefix + module


def _alpha(meta: dict, denoiser: str, rank: int) -> float:
    peft_meta = meta.get("lora_adapter_metadata") or {}
    for key in (f"{denoiser}.lora_alpha", "lora_alpha"):
        if key in peft_meta:
            return float(peft_meta[key])
    return float(meta.get("alpha", rank))


def to_comfyui(tensors: dict[str, torch.Tensor], meta: dict) -> tuple[dict[str, torch.Tensor], list[str]]:
    """PEFT/diffusers LoRA keys → ComfyUI keys with `.alpha`; returns the tensors and notes."""
    out: dict[str, torch.Tensor] = {}
    notes: list[str] = []
    family = meta.get("family")
    for key, value in tensors.items():
        denoiser, _, rest = key.partition(".")
        if denoiser == "controlnet":
            raise InputError("a slider trained on a ControlNet has no ComfyUI LoRA naming (ComfyUI loads "
                             "ControlNet adapters only as Control-LoRA checkpoints); export it as diffusers",
                             key="--format", value="comfyui")
        if denoiser not in ("unet", "transformer", "prior") or ".lora_" not in rest:
            raise InputError(f"unexpected key '{key}' (not a denoiser LoRA key)")
        prefix, confirmed = comfy_prefix(family, denoiser)
        if not confirmed and not notes:
            notes.append(f"ComfyUI naming for family '{family}' is not confirmed against ComfyUI's loader; "
                         f"wrote '{prefix}<diffusers path>' keys")
        module, _, kind = rest.rpartition(".lora_")
        kind = kind.replace("A.weight", "down.weight").replace("B.weight", "up.weight")
        name = comfy_module_name(module, prefix)
        out[f"{name}.lora_{kind}"] = value
        if kind.startswith("down"):
            out[f"{name}.alpha"] = torch.tensor(_alpha(meta, denoiser, value.shape[0]), dtype=torch.float32)
    return out, notes


def lycoris_notes(meta: dict) -> list[str]:
    family = meta.get("family")
    if meta.get("controlnet"):
        raise InputError("a slider trained on a ControlNet has no ComfyUI naming; export it as diffusers",
                         key="--format", value="comfyui")
    if family not in COMFY_LYCORIS_FAMILIES:
        return [f"ComfyUI's mapping of 'lycoris_' keys for family '{family}' is not confirmed"]
    return []


def export_file(source: Path, target: Path, fmt: str) -> ExportResult:
    """Write `source` in the naming of `fmt` to `target` (atomically); notes say what is unconfirmed."""
    if fmt not in FORMATS:
        raise InputError(f"unknown format '{fmt}'", key="format", expected=" or ".join(FORMATS))
    if source.resolve() == target.resolve():
        raise InputError("the output would overwrite the adapter itself", file=target, key="--out")
    meta = read_metadata(source)
    tensors = read_tensors(source)
    notes: list[str] = []
    lycoris = meta.get("lora_type") == "lycoris" or any(k.startswith("lycoris_") for k in tensors)
    if lycoris:
        notes = lycoris_notes(meta) if fmt == "comfyui" else \
            ["LyCORIS keeps its own naming in diffusers format (diffusers reads it for Flux2)"]
    elif fmt == "comfyui":
        tensors, notes = to_comfyui(tensors, meta)
    header = {META_PREFIX + k: json.dumps(v) for k, v in meta.items() if k != "lora_adapter_metadata"}
    if fmt == "diffusers" and "lora_adapter_metadata" in meta:
        header["lora_adapter_metadata"] = json.dumps(meta["lora_adapter_metadata"])
    header[META_PREFIX + "format"] = json.dumps(fmt)
    header["format"] = "pt"
    atomic.write_with(target, lambda tmp: save_file(tensors, str(tmp), metadata=header))
    return ExportResult(target, notes)
