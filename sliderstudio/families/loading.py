"""Load a base model from a local diffusers folder, a single .safetensors file, or a hub id.

Only safetensors are ever loaded: pickled checkpoints (.ckpt, .pt, .bin, .pth) can execute code,
so they are refused with a message, and remote code is never trusted.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch

from sliderstudio.kernel.errors import ModelLoadError
from sliderstudio.kernel.build_lock import BUILD_LOCK
from sliderstudio.kernel.resources import toy_model_dir
from sliderstudio.families.base import Family

TOY_ALIAS = "sliderstudio:toy"
PICKLE_SUFFIXES = frozenset({".ckpt", ".pt", ".pth", ".bin", ".pkl", ".pickle"})


def resolve_model_path(spec: str) -> str:
    """Turn the config's model string into a folder, file or hub id (validated where local)."""
    if spec.strip() == TOY_ALIAS:
        path = toy_model_dir()
        if not (path / "model_index.json").exists():
            raise ModelLoadError("the bundled toy model is missing from this installation", file=path)
        return str(path)
    path = Path(spec).expanduser()
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise ModelLoadError("pickle checkpoints are refused (they can run code); convert it to .safetensors",
                             file=path, key="pretrained_model_name_or_path")
    if path.exists():
        return str(path.resolve())
    if spec.count("/") == 1 and not spec.startswith((".", "/", "~")):
        return spec  # looks like a hub id
    raise ModelLoadError("no such model folder or file", file=path, key="pretrained_model_name_or_path")


def check_model_folder(folder: Path) -> dict[str, Any]:
    """Read model_index.json and make sure every component it names is there."""
    index_path = folder / "model_index.json"
    if not index_path.exists():
        raise ModelLoadError("not a diffusers model folder (no model_index.json)", file=folder,
                             key="pretrained_model_name_or_path")
    index = json.loads(index_path.read_text(encoding="utf-8"))
    for name, value in index.items():
        if name.startswith("_") or not isinstance(value, list) or value[0] is None:
            continue
        sub = folder / name
        if not sub.is_dir():
            raise ModelLoadError(f"model folder is missing its '{name}' component", file=sub)
        weights = [p for p in sub.iterdir() if p.suffix in (".safetensors", ".bin", ".pt", ".ckpt")]
        if weights and not any(p.suffix == ".safetensors" for p in weights):
            raise ModelLoadError(f"component '{name}' has only pickle weights; only .safetensors are loaded", file=sub)
    return index


def load_pipeline(family: Family, spec: str, dtype: torch.dtype = torch.float32,
                  device: str | torch.device = "cpu", quantization_config: Any = None) -> Any:
    """The family's diffusers pipeline with every part frozen, on `device`.

    `quantization_config` (diffusers' PipelineQuantizationConfig) quantises while loading on the plain
    from_pretrained paths; a family's own layout and single files load in float (quantised afterwards).
    """
    location = resolve_model_path(spec)
    path = Path(location)
    cls = family.pipeline_class
    kwargs: dict[str, Any] = {"dtype": dtype, "use_safetensors": True}
    if family.pipeline_class_name in ("StableDiffusionPipeline", "StableDiffusionControlNetPipeline"):
        kwargs.update(safety_checker=None, requires_safety_checker=False)
    kwargs.update(family.pipeline_kwargs())
    with BUILD_LOCK:
        try:
            if path.is_dir():
                pipe = family.load_layout(path, {**kwargs, "local_files_only": True})
                if pipe is None:
                    check_model_folder(path)
                    pipe = cls.from_pretrained(str(path), local_files_only=True, **kwargs,
                                               **_quantised(quantization_config))
            elif path.is_file():
                pipe = cls.from_single_file(str(path), local_files_only=True, **kwargs)
            else:
                pipe = cls.from_pretrained(location, **kwargs, **_quantised(quantization_config))
        except ModelLoadError:
            raise
        except (OSError, ValueError, EnvironmentError) as exc:
            raise ModelLoadError(f"could not load the model: {exc}", file=location,
                                 key="pretrained_model_name_or_path") from None
    pipe.to(device)
    for name, module in pipe.components.items():
        if isinstance(module, torch.nn.Module):
            module.requires_grad_(False)
            module.eval()
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _quantised(config: Any) -> dict[str, Any]:
    return {} if config is None else {"quantization_config": config}


def quiet_libraries() -> None:
    """Library progress bars and info logs would drown our own progress output.

    torchao (imported by diffusers/PEFT when installed) warns once per CUDA-only kernel library it
    cannot load on a CPU machine, and torch warns about how torchao registers its enums; those lines
    say nothing about this run.
    """
    logging.getLogger("torchao").setLevel(logging.ERROR)
    logging.getLogger("torch.utils._pytree").setLevel(logging.ERROR)  # torchao's enum registrations
    import diffusers
    import transformers

    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


quiet_libraries()
