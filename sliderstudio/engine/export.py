"""Export an adapter to the naming other tools load (SPEC §8): diffusers/PEFT or ComfyUI/kohya.

The ComfyUI file is what ComfyUI's LoRA loader (`comfy/lora.py`, `model_lora_keys_unet`) maps onto
its own model, and the kohya-style names Forge/A1111 and InvokeAI read. Each family says where its
modules go (`Family.comfy`, `families/comfy_naming.py`); this module only applies that:

- one LoRA key per adapted module: `<stem>.lora_down.weight` (PEFT `lora_A`), `<stem>.lora_up.weight`
  (`lora_B`) and `<stem>.alpha`. ComfyUI scales by alpha / rank (rank = rows of lora_down), so alpha
  is always written and strength 1 means the same in both tools;
- several modules that ComfyUI holds as one fused weight (Lumina 2's q, k and v in `attention.qkv`)
  become one stacked LoRA: lora_down = [A_q; A_k; A_v], lora_up = blockdiag(B_q, B_k, B_v), so
  up @ down = [B_q A_q; B_k A_k; B_v A_v], exactly the three deltas stacked like the fused rows. The
  rank triples, so alpha triples too (alpha / rank stays the same).

LyCORIS files already use LyCORIS's own `lycoris_<path>` naming with alpha per module; the export
keeps their tensors and names (ComfyUI maps those for the families whose `Family.comfy_lycoris` is set).

The caller passes the adapter's Family (names resolve to families in the app layer, not here).
"""
from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import save_file

from sliderstudio.kernel import atomic
from sliderstudio.adapters.adapter_io import META_PREFIX, read_metadata, read_tensors
from sliderstudio.kernel.errors import InputError
from sliderstudio.families.base import Family

FORMATS = ("diffusers", "comfyui")
COMFYUI_NAME = "pytorch_lora_weights_comfyui.safetensors"
DENOISERS = ("unet", "transformer", "prior")


@dataclass
class ExportResult:
    path: Path
    notes: list[str] = field(default_factory=list)


@dataclass
class _Layer:
    """One adapted module's PEFT tensors."""

    down: torch.Tensor | None = None
    up: torch.Tensor | None = None


def _alpha(meta: dict, denoiser: str, rank: int) -> float:
    peft_meta = meta.get("lora_adapter_metadata") or {}
    for key in (f"{denoiser}.lora_alpha", "lora_alpha"):
        if key in peft_meta:
            return float(peft_meta[key])
    return float(meta.get("alpha", rank))


def _named(family: Family | None) -> Family:
    if family is None:
        raise InputError("the adapter names no model family (no 'sliderstudio.family' metadata), so its ComfyUI "
                         "names cannot be chosen", key="family")
    return family


def _layers(tensors: dict[str, torch.Tensor]) -> tuple[str, dict[str, _Layer]]:
    """PEFT keys → (denoiser, module → its lora_A/lora_B tensors)."""
    layers: dict[str, _Layer] = defaultdict(_Layer)
    denoisers = set()
    for key, value in tensors.items():
        denoiser, _, rest = key.partition(".")
        if denoiser == "controlnet":
            raise InputError("a slider trained on a ControlNet has no ComfyUI LoRA naming (ComfyUI loads "
                             "ControlNet adapters only as Control-LoRA checkpoints); export it as diffusers",
                             key="--format", value="comfyui")
        module, _, kind = rest.rpartition(".lora_")
        if denoiser not in DENOISERS or kind not in ("A.weight", "B.weight"):
            raise InputError(f"unexpected key '{key}' (not a denoiser LoRA key)")
        denoisers.add(denoiser)
        setattr(layers[module], "down" if kind == "A.weight" else "up", value)
    if len(denoisers) != 1:
        raise InputError(f"expected the LoRA of one denoiser, found {sorted(denoisers) or 'none'}")
    return denoisers.pop(), dict(layers)


def _stacked(stem: str, parts: dict[int, tuple[str, _Layer]], count: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Several modules fused into one native weight → one LoRA whose product stacks their deltas."""
    missing = [i for i in range(count) if i not in parts]
    if missing:
        have = ", ".join(name for name, _ in parts.values())
        raise InputError(f"ComfyUI holds {count} layers as one weight ({stem}); the adapter has only {have}. "
                         "Target all of them (e.g. to_q, to_k and to_v) to export it for ComfyUI",
                         key="targets", value=have)
    layers = [parts[i][1] for i in range(count)]
    if len({layer.down.shape[0] for layer in layers}) != 1:
        raise InputError(f"the layers fused into {stem} have different ranks", key="targets")
    down = torch.cat([layer.down for layer in layers])
    up = torch.block_diag(*[layer.up.flatten(1) for layer in layers])
    return down, up, count


def to_comfyui(tensors: dict[str, torch.Tensor], meta: dict,
               family: Family | None) -> tuple[dict[str, torch.Tensor], list[str]]:
    """PEFT/diffusers LoRA keys → ComfyUI keys with `.alpha` in the family's naming; returns the tensors and notes."""
    naming = _named(family).comfy
    denoiser, layers = _layers(tensors)
    groups: dict[str, dict[int, tuple[str, _Layer]]] = defaultdict(dict)
    counts: dict[str, int] = {}
    for module, layer in layers.items():
        if layer.down is None or layer.up is None:
            raise InputError(f"module '{module}' lacks its lora_A or lora_B tensor", key=module)
        where = naming.key(module)
        if where.part in groups[where.stem]:
            raise InputError(f"two modules map to the same ComfyUI key '{where.stem}'", key=module)
        groups[where.stem][where.part] = (module, layer)
        counts[where.stem] = where.parts
    out: dict[str, torch.Tensor] = {}
    for stem, parts in groups.items():
        if counts[stem] == 1:
            layer = parts[0][1]
            down, up, share = layer.down, layer.up, 1
        else:
            down, up, share = _stacked(stem, parts, counts[stem])
        rank = down.shape[0] // share
        out[f"{stem}.lora_down.weight"] = down
        out[f"{stem}.lora_up.weight"] = up
        out[f"{stem}.alpha"] = torch.tensor(_alpha(meta, denoiser, rank) * share, dtype=torch.float32)
    return out, []


def lycoris_notes(meta: dict, family: Family | None) -> list[str]:
    if meta.get("controlnet"):
        raise InputError("a slider trained on a ControlNet has no ComfyUI naming; export it as diffusers",
                         key="--format", value="comfyui")
    if family is None or not family.comfy_lycoris:
        return [f"ComfyUI does not map 'lycoris_' keys of diffusers paths for family '{meta.get('family')}'; "
                "train a LoRA (lora_type 'standard') to use the slider in ComfyUI"]
    return []


def export_file(source: Path, target: Path, fmt: str, family: Family | None) -> ExportResult:
    """Write `source` in the naming of `fmt` to `target` (atomically); notes are warnings for the user
    (e.g. LyCORIS names ComfyUI does not map for this family). `family`: the adapter's family (its
    ComfyUI naming); None where the adapter names none, which only the diffusers format accepts."""
    if fmt not in FORMATS:
        raise InputError(f"unknown format '{fmt}'", key="format", expected=" or ".join(FORMATS))
    if source.resolve() == target.resolve():
        raise InputError("the output would overwrite the adapter itself", file=target, key="--out")
    meta = read_metadata(source)
    tensors = read_tensors(source)
    notes: list[str] = []
    lycoris = meta.get("lora_type") == "lycoris" or any(k.startswith("lycoris_") for k in tensors)
    if lycoris:
        notes = lycoris_notes(meta, family) if fmt == "comfyui" else \
            ["LyCORIS keeps its own naming in diffusers format (diffusers reads it for Flux2)"]
    elif fmt == "comfyui":
        tensors, notes = to_comfyui(tensors, meta, family)
    header = {META_PREFIX + k: json.dumps(v) for k, v in meta.items() if k != "lora_adapter_metadata"}
    if fmt == "diffusers" and "lora_adapter_metadata" in meta:
        header["lora_adapter_metadata"] = json.dumps(meta["lora_adapter_metadata"])
    header[META_PREFIX + "format"] = json.dumps(fmt)
    header["format"] = "pt"
    atomic.write_with(target, lambda tmp: save_file(tensors, str(tmp), metadata=header))
    return ExportResult(target, notes)
