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
from sliderstudio.core import atomic
from sliderstudio.core.errors import ModelLoadError

ADAPTER_NAME = "pytorch_lora_weights.safetensors"
META_PREFIX = "sliderstudio."


def save_lora(path: Path, pipeline_class: type, denoiser_name: str, state: dict[str, torch.Tensor],
              lora_config: Any, metadata: dict[str, Any]) -> Path:
    """Save the slider adapter in diffusers naming; `metadata` values are JSON-encoded into the header."""
    with tempfile.TemporaryDirectory(dir=path.parent if path.parent.exists() else None) as tmp:
        config = lora_config.to_dict() if hasattr(lora_config, "to_dict") else dict(lora_config)
        config = {k: (sorted(v) if isinstance(v, set) else v) for k, v in config.items()}
        pipeline_class.save_lora_weights(tmp, **{f"{denoiser_name}_lora_layers": state,
                                                 f"{denoiser_name}_lora_adapter_metadata": config},
                                         weight_name=ADAPTER_NAME, safe_serialization=True)
        written = Path(tmp) / ADAPTER_NAME
        tensors = load_file(str(written))
        with safe_open(str(written), "pt") as fh:
            header = dict(fh.metadata() or {})
    header.update({META_PREFIX + k: json.dumps(v) for k, v in metadata.items()})
    header[META_PREFIX + "version"] = json.dumps(__version__)
    atomic.write_with(path, lambda tmp_path: save_file(tensors, str(tmp_path), metadata=header))
    return path


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
