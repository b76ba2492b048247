"""A quantised frozen base (`base_model_precision`): the denoiser's Linear weights stored in int8 or fp8.

The slider itself trains in full precision on top: PEFT wraps each quantised target Linear as its
torchao LoRA layer, whose base path runs the quantised weight and whose LoRA path adds a float term.
At strength 0 that term is exactly zero, so the output is the quantised base's own. The saved
adapter holds only the float LoRA tensors, under the same keys as an unquantised run, and loads on
the unquantised model.

Values are SimpleTuner's names. Whether this machine can run one is decided here, before any weight
is loaded, so a config asking for CUDA-only quantisation stops in milliseconds with the reason.
"""
from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from typing import Any, Callable

import torch

from sliderstudio.kernel.errors import ConfigError
from sliderstudio.config.simpletuner_keys import BASE_MODEL_PRECISION_VALUES

KEY = "base_model_precision"
NO_CHANGE = "no_change"

SIMPLETUNER_VALUES = BASE_MODEL_PRECISION_VALUES


@dataclass(frozen=True)
class Scheme:
    """How a supported value quantises: torchao weight-only int8 or float8 (e4m3), per output channel."""
    name: str
    weight_dtype: torch.dtype
    note: str = ""


# What runs here. int8-quanto uses the same scheme (symmetric per-channel int8 weights, float
# activations) through torchao: optimum-quanto is not a dependency.
SUPPORTED: dict[str, Scheme] = {
    "int8-torchao": Scheme("int8", torch.int8),
    "int8-quanto": Scheme("int8", torch.int8, "runs through torchao's int8 weight-only scheme (the same "
                                              "per-channel int8 weights); optimum-quanto is not installed"),
    "fp8wo-torchao": Scheme("fp8", torch.float8_e4m3fn),
    "fp8-torchao": Scheme("fp8", torch.float8_e4m3fn, "weights only: activations stay in the training precision"),
}
NEEDS_CUDA = frozenset({"nf4-bnb", "fp8-native", "fp8-transformerengine"})


def supported_here() -> str:
    return ", ".join([NO_CHANGE, *SUPPORTED])


def require_runnable(value: str, device: torch.device, file: str | None = None,
                     lora_type: str = "standard") -> Scheme | None:
    """The scheme for `value` on `device`, or a ConfigError saying why it can't run here (before loading)."""
    if value == NO_CHANGE:
        return None
    if lora_type == "lycoris":
        raise ConfigError(f"{value!r} with lora_type 'lycoris' is not supported: LyCORIS adds its delta to the "
                          "base weight, which a quantised weight cannot take; use lora_type 'standard' or "
                          "no_change", file=file, key=KEY, value=value)
    if value not in SIMPLETUNER_VALUES:
        raise ConfigError(f"{value!r} is not a base_model_precision value; SimpleTuner's are "
                          f"{', '.join(SIMPLETUNER_VALUES)} (this build runs {supported_here()})",
                          file=file, key=KEY, value=value)
    if value in NEEDS_CUDA and device.type != "cuda":
        raise ConfigError(f"{value!r} needs a CUDA GPU and this run's device is {device.type}; use one of "
                          f"{supported_here()}", file=file, key=KEY, value=value)
    if value not in SUPPORTED:
        raise ConfigError(f"{value!r} is SimpleTuner's value, but this build does not implement it; use one of "
                          f"{supported_here()}", file=file, key=KEY, value=value)
    _quiet_torchao()
    try:
        import torchao.quantization  # noqa: F401
    except ImportError as exc:
        raise ConfigError(f"{value!r} needs torchao, which is not importable here ({exc}); use no_change",
                          file=file, key=KEY, value=value) from None
    return SUPPORTED[value]


def _config(scheme: Scheme):
    from torchao.quantization import Float8WeightOnlyConfig, Int8WeightOnlyConfig

    return Int8WeightOnlyConfig() if scheme.name == "int8" else Float8WeightOnlyConfig()


def quantisable(module: torch.nn.Module) -> bool:
    """Plain float Linears not quantised yet (the same set diffusers' loader quantises)."""
    return (type(module) is torch.nn.Linear and not is_quantised(module)
            and module.weight.dtype.is_floating_point)


def quantise_module(model: torch.nn.Module, scheme: Scheme) -> tuple[int, int]:
    """Quantise `model`'s Linears in place, frozen; returns (quantised count, float bytes replaced)."""
    from torchao.quantization import quantize_

    _quiet_torchao()
    names = {id(m) for m in model.modules() if quantisable(m)}
    float_bytes = sum(m.weight.numel() * m.weight.element_size() for m in model.modules() if id(m) in names)
    quantize_(model, _config(scheme), filter_fn=lambda m, _fqn: id(m) in names)
    model.requires_grad_(False)
    return len(names), float_bytes


def weight_bytes(model: torch.nn.Module) -> int:
    """Bytes of the model's weights as stored (int8/fp8 data plus scales for quantised ones)."""
    total = 0
    for t in list(model.parameters()) + list(model.buffers()):
        inner = [getattr(t, n) for n in getattr(t, "tensor_data_names", ()) if getattr(t, n, None) is not None]
        total += sum(x.numel() * x.element_size() for x in inner) if inner else t.numel() * t.element_size()
    return total


def is_quantised(module: torch.nn.Module) -> bool:
    weight = getattr(module, "weight", None)
    return weight is not None and type(weight).__module__.startswith("torchao")


def loading_config(scheme: Scheme | None, denoiser_name: str) -> Any:
    """diffusers' pipeline quantisation config for the denoiser, so its Linears are quantised one by one
    as they load (peak RAM: the quantised weights plus one layer, not a whole float copy)."""
    if scheme is None:
        return None
    from diffusers import PipelineQuantizationConfig, TorchAoConfig

    _quiet_torchao()
    return PipelineQuantizationConfig(quant_mapping={denoiser_name: TorchAoConfig(_config(scheme))})


def quantise_base(model: torch.nn.Module, value: str, scheme: Scheme | None,
                  log: Callable[[str, str], None]) -> None:
    """Quantise what the loader left in float (a family's own loading path, a single file) and say what
    happened; called before the slider is attached."""
    if scheme is None:
        return
    on_load = sum(1 for m in model.modules() if is_quantised(m))
    count, _ = quantise_module(model, scheme)
    when = "while loading" if on_load and not count else "after loading" if count and not on_load else \
        f"{on_load} while loading, {count} after"
    if scheme.note:
        log(f"{KEY} '{value}': {scheme.note}", "warning" if "quanto" in value else "info")
    log(f"{KEY} '{value}': {on_load + count} Linear layers of the frozen base quantised to {scheme.name} "
        f"({when}; weights now {weight_bytes(model) / 2**20:.1f} MiB); the slider trains in full precision on "
        "top", "info")


def _quiet_torchao() -> None:
    """torchao logs a line per CUDA-only kernel library it can't load on a CPU machine: noise, not news."""
    logging.getLogger("torchao").setLevel(logging.ERROR)
    # PEFT's torchao LoRA layer warns that merge() needs a requantisation recipe; a slider is never
    # merged into its base (it stays a separate, scalable adapter), so the warning is noise here.
    warnings.filterwarnings("ignore", message="TorchaoLoraLinear was instantiated")
