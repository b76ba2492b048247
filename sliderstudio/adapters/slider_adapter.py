"""The slider adapter as one handle, whatever kind it is (SPEC §2, §5, §6, §8).

The training step, the trainer (save, checkpoint, resume) and the preview talk to a `SliderAdapter`
only, so LoRA (PEFT) and LyCORIS share one loop. A handle sits on its *host* module: the denoiser,
or the ControlNet when a slider is trained on one. It knows how to:

- scale the slider by a strength for one forward/backward and restore the exact previous value;
- scale each sample of a batch by its own strength (one batched preview render), where the
  adapter is linear in its strength;
- list its trainable parameters, save itself atomically with our metadata, reload a saved file.

The LyCORIS implementation lives in `lycoris_adapter`; this module holds the interface, the PEFT
implementation (a thin wrapper around `adapters`) and the lookup of what is attached to a module.
"""
from __future__ import annotations

import weakref
from abc import ABC, abstractmethod
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from sliderstudio.adapters import adapters
from sliderstudio.adapters.adapter_io import read_metadata, read_tensors, save_lora
from sliderstudio.kernel.errors import ModelLoadError

LORA_KINDS = ("standard", "lycoris")


class PerSample(AbstractContextManager):
    """A per-sample strength vector in force while the context is open; `values` may change between steps."""

    values: torch.Tensor


class SliderAdapter(ABC):
    """One slider adapter on one host module."""

    kind: str = ""
    #: True when several strengths can share one forward (output linear in the strength).
    batched: bool = True

    def __init__(self, host: nn.Module, host_name: str):
        self.host = host
        self.host_name = host_name
        _ATTACHED[host] = self

    @abstractmethod
    def strength(self, value: float) -> AbstractContextManager[None]:
        """Scale the slider by `value` for the duration, then restore the exact previous state."""

    @abstractmethod
    def per_sample(self, strengths: Sequence[float]) -> PerSample:
        """Each sample of the batch at its own strength (batch a tiling of `strengths`, e.g. CFG)."""

    @abstractmethod
    def multipliers(self) -> list[float]:
        """The multiplier now in force on every layer (tests check that it is restored)."""

    @abstractmethod
    def parameters(self) -> list[nn.Parameter]:
        """The trainable tensors of the slider (and nothing else)."""

    @abstractmethod
    def activate(self, frozen: Sequence[str] = ()) -> None:
        """Gradients for the slider only; every base weight and frozen PEFT adapter stays fixed."""

    @abstractmethod
    def save(self, path: Path, metadata: dict[str, Any]) -> Path:
        """Write the adapter file atomically with our metadata (and any companion file)."""

    @abstractmethod
    def load_file(self, path: Path) -> None:
        """Fill this (already attached) adapter from a file it saved: resume and reload."""

    @abstractmethod
    def remove(self) -> None:
        """Detach from the host so another adapter can take its place (preview swaps)."""

    def describe(self) -> dict[str, Any]:
        """Metadata about the adapter's shape (rank/alpha or algorithm/dims)."""
        return {"lora_type": self.kind}

    def train(self, mode: bool = True) -> None:
        """Training or eval mode for adapter tensors that live outside the host (PEFT's live inside)."""

    def _forget(self) -> None:
        if _ATTACHED.get(self.host) is self:
            del _ATTACHED[self.host]


# host module → its slider handle; weak so a dropped pipeline is not kept alive by the registry
_ATTACHED: "weakref.WeakKeyDictionary[nn.Module, SliderAdapter]" = weakref.WeakKeyDictionary()


class PeftSlider(SliderAdapter):
    """PEFT LoRA: scale = strength × alpha / rank on every layer of the `slider` adapter."""

    kind = "standard"

    def __init__(self, host: nn.Module, host_name: str, lora_config: Any = None,
                 pipeline_class: type | None = None, adapter: str = adapters.SLIDER):
        super().__init__(host, host_name)
        self.lora_config = lora_config
        self.pipeline_class = pipeline_class
        self.adapter = adapter

    def strength(self, value: float) -> AbstractContextManager[None]:
        return adapters.slider_scale(self.host, value, self.adapter)

    def per_sample(self, strengths: Sequence[float]) -> PerSample:
        return adapters.PerSampleScale(self.host, strengths, self.adapter)

    def multipliers(self) -> list[float]:
        return [layer.scaling[self.adapter] * layer.r[self.adapter] / layer.lora_alpha[self.adapter]
                for layer in adapters.lora_layers(self.host) if self.adapter in layer.scaling]

    def parameters(self) -> list[nn.Parameter]:
        return adapters.adapter_parameters(self.host, self.adapter)

    def activate(self, frozen: Sequence[str] = ()) -> None:
        adapters.activate(self.host, self.adapter, frozen)

    def save(self, path: Path, metadata: dict[str, Any]) -> Path:
        state = adapters.slider_state_dict(self.host, self.adapter)
        return save_lora(path, self.pipeline_class, self.host_name, state, self.lora_config, metadata)

    def load_file(self, path: Path) -> None:
        prefix = f"{self.host_name}."
        tensors = read_tensors(path)
        adapters.load_slider_state(self.host, {k[len(prefix):]: v for k, v in tensors.items()
                                               if k.startswith(prefix)}, self.adapter)

    def remove(self) -> None:
        adapters.delete_adapter(self.host, self.adapter)
        self._forget()

    def describe(self) -> dict[str, Any]:
        layer = next((l for l in adapters.lora_layers(self.host) if self.adapter in l.r), None)
        if layer is None:
            return {"lora_type": self.kind}
        return {"lora_type": self.kind, "rank": layer.r[self.adapter], "alpha": layer.lora_alpha[self.adapter]}


def attached(host: nn.Module) -> SliderAdapter | None:
    """The slider on `host`: a registered handle, or PEFT layers named `slider` (e.g. loaded by diffusers)."""
    handle = _ATTACHED.get(host)
    if handle is not None:
        return handle
    if any(adapters.SLIDER in layer.lora_A for layer in adapters.lora_layers(host)):
        return PeftSlider(host, "")
    return None


def file_kind(path: Path) -> str:
    """'lycoris' or 'standard', from our metadata or, for foreign files, from the key naming."""
    meta = read_metadata(path)
    if meta.get("lora_type") in LORA_KINDS:
        return meta["lora_type"]
    keys = read_tensors(path).keys()
    if any(k.startswith("lycoris_") for k in keys):
        return "lycoris"
    if not keys:
        raise ModelLoadError("adapter file holds no tensors", file=path)
    return "standard"


def load_slider(path: Path, host: nn.Module, host_name: str) -> SliderAdapter:
    """Attach the adapter saved in `path` to `host` with our own code (any family, any kind)."""
    if file_kind(path) == "lycoris":
        from sliderstudio.adapters.lycoris_adapter import load_lycoris

        return load_lycoris(path, host, host_name)
    from sliderstudio.adapters.adapter_io import load_into

    config = load_into(host, host_name, path, adapters.SLIDER)
    return PeftSlider(host, host_name, config)
