"""Export an adapter to the naming other tools load (SPEC §8): diffusers/PEFT or ComfyUI.

ComfyUI names UNet LoRA layers `lora_unet_<dotted path with underscores>.lora_down/lora_up.weight`
and reads the strength-1 scale from a per-layer `.alpha` tensor, so alpha is written explicitly and
strength 1 means the same in both tools.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from sliderstudio.core import atomic
from sliderstudio.core.adapter_io import META_PREFIX, read_metadata, read_tensors
from sliderstudio.core.errors import InputError

FORMATS = ("diffusers", "comfyui")
COMFY_PREFIX = {"unet": "lora_unet_", "transformer": "diffusion_model."}


def _alpha(meta: dict, denoiser: str, rank: int) -> float:
    peft_meta = meta.get("lora_adapter_metadata") or {}
    for key in (f"{denoiser}.lora_alpha", "lora_alpha"):
        if key in peft_meta:
            return float(peft_meta[key])
    return float(meta.get("alpha", rank))


def to_comfyui(tensors: dict[str, torch.Tensor], meta: dict) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for key, value in tensors.items():
        denoiser, _, rest = key.partition(".")
        if denoiser not in COMFY_PREFIX:
            raise InputError(f"unexpected key '{key}' (not a denoiser LoRA key)")
        module, _, kind = rest.rpartition(".lora_")
        kind = kind.replace("A.weight", "down.weight").replace("B.weight", "up.weight")
        if denoiser == "unet":
            name = COMFY_PREFIX["unet"] + module.replace(".", "_")
            out[f"{name}.lora_{kind}"] = value
        else:
            name = COMFY_PREFIX["transformer"] + module
            out[f"{name}.lora_{kind}"] = value
        if kind.startswith("down"):
            out[f"{name}.alpha"] = torch.tensor(_alpha(meta, denoiser, value.shape[0]), dtype=torch.float32)
    return out


def export_file(source: Path, target: Path, fmt: str) -> Path:
    if fmt not in FORMATS:
        raise InputError(f"unknown format '{fmt}'", key="format", expected=" or ".join(FORMATS))
    meta = read_metadata(source)
    tensors = read_tensors(source)
    if fmt == "comfyui":
        tensors = to_comfyui(tensors, meta)
    header = {META_PREFIX + k: json.dumps(v) for k, v in meta.items() if k != "lora_adapter_metadata"}
    if fmt == "diffusers" and "lora_adapter_metadata" in meta:
        header["lora_adapter_metadata"] = json.dumps(meta["lora_adapter_metadata"])
    header["format"] = "pt"
    atomic.write_with(target, lambda tmp: save_file(tensors, str(tmp), metadata=header))
    return target
