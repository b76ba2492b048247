"""Writing and reading adapter files: diffusers/PEFT naming plus our own metadata (SPEC §8).

The file is produced by the pipeline's own `save_lora_weights` (so plain diffusers loads it, with the
PEFT config as metadata so alpha survives reload), then our metadata is added and the result is
published atomically: a crash never leaves a truncated adapter.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from sliderstudio import __version__
from sliderstudio.kernel import atomic
from sliderstudio.kernel.errors import ModelLoadError

ADAPTER_NAME = "pytorch_lora_weights.safetensors"
META_PREFIX = "sliderstudio."


def save_lora(path: Path, pipeline_class: type | None, denoiser_name: str, state: dict[str, torch.Tensor],
              lora_config: Any, metadata: dict[str, Any]) -> Path:
    """Save the slider adapter in diffusers naming; `metadata` values are JSON-encoded into the header."""
    config = lora_config.to_dict() if hasattr(lora_config, "to_dict") else dict(lora_config)
    config = {k: (sorted(v) if isinstance(v, set) else v) for k, v in config.items()}
    if pipeline_class is not None and hasattr(pipeline_class, "save_lora_weights"):
        tensors, header = _diffusers_layout(pipeline_class, denoiser_name, state, config, path.parent)
    else:
        tensors, header = _own_layout(denoiser_name, state, config)
    header.update({META_PREFIX + k: json.dumps(v) for k, v in metadata.items()})
    header[META_PREFIX + "version"] = json.dumps(__version__)
    atomic.write_with(path, lambda tmp_path: save_file(tensors, str(tmp_path), metadata=header))
    return path


def _diffusers_layout(pipeline_class: type, denoiser_name: str, state: dict[str, torch.Tensor],
                      config: dict[str, Any], near: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Let diffusers write the file so its own loader reads it back; return tensors and header."""
    with tempfile.TemporaryDirectory(dir=near if near.exists() else None) as tmp:
        pipeline_class.save_lora_weights(tmp, **{f"{denoiser_name}_lora_layers": state,
                                                 f"{denoiser_name}_lora_adapter_metadata": config},
                                         weight_name=ADAPTER_NAME, safe_serialization=True)
        written = Path(tmp) / ADAPTER_NAME
        tensors = load_file(str(written))
        with safe_open(str(written), "pt") as fh:
            return tensors, dict(fh.metadata() or {})


def _own_layout(denoiser_name: str, state: dict[str, torch.Tensor],
                config: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The same naming diffusers uses (`<denoiser>.<module>.lora_A.weight`) for pipelines without a LoRA mixin."""
    tensors = {f"{denoiser_name}.{k}": v for k, v in state.items()}
    packed = {f"{denoiser_name}.{k}": v for k, v in config.items()}
    return tensors, {"format": "pt", "lora_adapter_metadata": json.dumps(packed, sort_keys=True)}


def load_into(denoiser: torch.nn.Module, denoiser_name: str, path: Path, adapter: str) -> Any:
    """Attach and fill an adapter from our file without diffusers (any family, any pipeline); returns its config."""
    from sliderstudio.adapters.adapters import attach_lora, load_slider_state

    meta = read_metadata(path)
    peft = {k.split(".", 1)[1]: v for k, v in (meta.get("lora_adapter_metadata") or {}).items() if "." in k}
    tensors = read_tensors(path)
    prefix = f"{denoiser_name}."
    state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    targets = meta.get("targets") or peft.get("target_modules")
    if not targets or not state:
        raise ModelLoadError("adapter file has no targets or no tensors for this model", file=path)
    rank = int(meta.get("rank") or peft.get("r"))
    alpha = float(meta.get("alpha") or peft.get("lora_alpha") or rank)
    config = attach_lora(denoiser, list(targets), rank, alpha, adapter=adapter)
    load_slider_state(denoiser, state, adapter)
    return config


def read_metadata(path: Path) -> dict[str, Any]:
    """Our metadata (without prefix) plus 'lora_adapter_metadata' decoded, if present."""
    if path.suffix != ".safetensors":
        raise ModelLoadError("only .safetensors adapters are loaded (pickles can run code)", file=path)
    try:
        with safe_open(str(path), "pt") as fh:
            header = dict(fh.metadata() or {})
    except Exception as exc:
        raise ModelLoadError(f"not a readable safetensors file ({exc})", file=path) from None
    out: dict[str, Any] = {}
    for key, value in header.items():
        if key.startswith(META_PREFIX):
            out[key[len(META_PREFIX):]] = json.loads(value)
        elif key == "lora_adapter_metadata":
            out[key] = json.loads(value)
    return out


def read_tensors(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix != ".safetensors":
        raise ModelLoadError("only .safetensors adapters are loaded (pickles can run code)", file=path)
    try:
        return load_file(str(path))
    except Exception as exc:
        raise ModelLoadError(f"not a readable safetensors file ({exc})", file=path) from None
