"""Adapter mechanics for PEFT LoRA: attach, scale per batch, per-sample scale, freeze (SPEC §2, §6).

Only the *slider* adapter is ever scaled. The scale is set on every LoRA layer explicitly and restored
exactly afterwards, which works the same for every family (no per-family forward kwargs, whose
scale=0 would also reset weights set by `set_adapters`).
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Sequence

import torch
from torch import nn

from sliderstudio.kernel.build_lock import BUILD_LOCK

SLIDER = "slider"
ASSISTANT = "assistant"


def lora_layers(model: nn.Module) -> list[nn.Module]:
    from peft.tuners.lora import LoraLayer

    return [m for m in model.modules() if isinstance(m, LoraLayer)]


def attach_lora(model: nn.Module, module_names: list[str], rank: int, alpha: float, dropout: float = 0.0,
                adapter: str = SLIDER, seed: int = 0) -> "object":
    """Add a LoRA adapter on exactly these modules (full names, so PEFT's own matching cannot widen it)."""
    from peft import LoraConfig

    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, init_lora_weights=True,
                        target_modules=list(module_names))
    with BUILD_LOCK, torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if hasattr(model, "add_adapter"):
            model.add_adapter(config, adapter_name=adapter)
        else:  # denoisers without diffusers' PEFT mixin (Stable Cascade's UNet) take the adapter from PEFT itself
            from peft import inject_adapter_in_model

            inject_adapter_in_model(config, model, adapter_name=adapter)
    return config


def activate(model: nn.Module, trainable: str, frozen: Sequence[str] = ()) -> None:
    """Make `trainable` and `frozen` adapters active; gradients only for `trainable`.

    PEFT's set_adapter turns requires_grad on for every active adapter, so freezing is re-applied.
    """
    names = [trainable, *frozen]
    for layer in lora_layers(model):
        present = [n for n in names if n in layer.lora_A or n in getattr(layer, "lora_embedding_A", {})]
        layer.set_adapter(present)
    for name, param in model.named_parameters():
        param.requires_grad_(f".{trainable}." in name or name.endswith(f".{trainable}"))


def adapter_parameters(model: nn.Module, adapter: str = SLIDER) -> list[nn.Parameter]:
    return [p for n, p in model.named_parameters() if f".{adapter}." in n]


def get_scales(model: nn.Module, adapter: str = SLIDER) -> list[float]:
    return [layer.scaling[adapter] for layer in lora_layers(model) if adapter in layer.scaling]


def set_multiplier(model: nn.Module, multiplier: float, adapter: str = SLIDER) -> None:
    """scaling = multiplier × alpha / rank on every layer of this adapter."""
    for layer in lora_layers(model):
        if adapter in layer.scaling:
            layer.scaling[adapter] = multiplier * layer.lora_alpha[adapter] / layer.r[adapter]


@contextmanager
def slider_scale(model: nn.Module, strength: float, adapter: str = SLIDER) -> Iterator[None]:
    """Scale only `adapter` by `strength` for the duration, then restore the exact previous values."""
    layers = [layer for layer in lora_layers(model) if adapter in layer.scaling]
    saved = [layer.scaling[adapter] for layer in layers]
    try:
        set_multiplier(model, strength, adapter)
        yield
    finally:
        for layer, value in zip(layers, saved):
            layer.scaling[adapter] = value


class PerSampleScale:
    """Multiply each sample's LoRA output by its own strength, so several strengths share one forward.

    A forward hook on every `lora_B[adapter]` scales its output row by row. When the batch is a tiling of
    the strength vector (classifier-free guidance concatenates [uncond; cond]), the vector is tiled too.
    `values` can be changed between denoising steps (start-fraction: zeros first, strengths after).
    """

    def __init__(self, model: nn.Module, strengths: Sequence[float], adapter: str = SLIDER):
        self.model, self.adapter = model, adapter
        self.values = torch.tensor(list(strengths), dtype=torch.float32)
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def _hook(self, _module: nn.Module, _inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        n = self.values.numel()
        batch = output.shape[0]
        if batch % n != 0:
            raise RuntimeError(f"per-sample scale: batch {batch} is not a multiple of {n} strengths")
        vec = self.values.repeat(batch // n).to(device=output.device, dtype=output.dtype)
        return output * vec.view(batch, *([1] * (output.dim() - 1)))

    def __enter__(self) -> "PerSampleScale":
        layers = [layer for layer in lora_layers(self.model) if self.adapter in layer.lora_B]
        self._saved = [(layer, layer.scaling[self.adapter]) for layer in layers]
        set_multiplier(self.model, 1.0, self.adapter)
        self._handles = [layer.lora_B[self.adapter].register_forward_hook(self._hook) for layer in layers]
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        for layer, value in self._saved:
            layer.scaling[self.adapter] = value


def slider_state_dict(model: nn.Module, adapter: str = SLIDER) -> dict[str, torch.Tensor]:
    """The adapter's tensors in PEFT naming (no adapter name), detached on CPU in float32."""
    from peft.utils import get_peft_model_state_dict

    state = get_peft_model_state_dict(model, adapter_name=adapter)
    return {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in state.items()}


def load_slider_state(model: nn.Module, state: dict[str, torch.Tensor], adapter: str = SLIDER) -> None:
    from peft.utils import set_peft_model_state_dict

    result = set_peft_model_state_dict(model, state, adapter_name=adapter)
    unexpected = getattr(result, "unexpected_keys", [])
    if unexpected:
        raise RuntimeError(f"adapter state has {len(unexpected)} keys the model lacks, e.g. {unexpected[0]}")


def freeze(model: nn.Module, frozen: Sequence[str] = ()) -> None:
    """Every parameter of `model` fixed; PEFT adapters named in `frozen` stay active at their own scale.

    Used when the slider is not a PEFT adapter (LyCORIS keeps its tensors outside the model).
    """
    for layer in lora_layers(model):
        present = [n for n in frozen if n in layer.lora_A]
        if present:
            layer.set_adapter(present)
    model.requires_grad_(False)


def delete_adapter(model: nn.Module, name: str) -> None:
    """Remove one PEFT adapter from every layer, so a newer checkpoint can take its place."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    for module in model.modules():
        if isinstance(module, BaseTunerLayer) and name in getattr(module, "lora_A", {}):
            module.delete_adapter(name)
    config = getattr(model, "peft_config", None)
    if isinstance(config, dict):
        config.pop(name, None)
