"""The optimizer, chosen by SimpleTuner's name for it, built from maintained packages.

SimpleTuner names its optimizers by backend (`torch-adamw`, `bnb-adamw8bit`, `prodigy`, …). Each name
here maps to a class of torch, bitsandbytes, prodigyopt, lion-pytorch or torchao. Names whose package
this product does not ship (schedule-free, SOAP, Muon, optimi's own kernels) train with an
equivalent or with AdamW, with a warning that says which. A name the machine cannot run (a missing
package, paged optimizers without CUDA) is bad input, refused before the model loads where possible.
"""
from __future__ import annotations

import importlib
import importlib.util
import inspect
from dataclasses import dataclass
from typing import Any, Literal

from sliderstudio.kernel.errors import ConfigError
from sliderstudio.config.simpletuner_keys import KeyNote

Kind = Literal["adam", "ademamix", "lion", "prodigy", "sgd", "eps", "plain"]


@dataclass(frozen=True)
class OptimizerSpec:
    """`target` is 'module:Class'; `kind` says which of the config's settings the class takes."""

    target: str
    kind: Kind
    note: str = ""  # set when the class is a stand-in for what SimpleTuner would run
    needs_cuda: bool = False
    fallback: str = ""  # the OPTIMIZERS name used when this one's package is not installed

    @property
    def package(self) -> str:
        return self.target.split(":")[0].split(".")[0]


_ADAMW = "torch.optim:AdamW"
_SUBSTITUTE = "not available in Slider Studio: torch's AdamW is used instead"


_BNB_FALLBACK = {"adam": "torch-adamw", "ademamix": "torch-adamw", "lion": "optimi-lion", "eps": "torch-adagrad"}


def _bnb(name: str, kind: Kind = "adam", paged: bool = False) -> OptimizerSpec:
    fallback = "torch-adam" if name.endswith(("Adam", "Adam8bit")) else _BNB_FALLBACK[kind]
    return OptimizerSpec(f"bitsandbytes.optim:{name}", kind, needs_cuda=paged, fallback=fallback)


OPTIMIZERS: dict[str, OptimizerSpec] = {
    # SimpleTuner's AdamW for bf16 weights; the adapter's weights are fp32 here, so torch's AdamW is exact.
    "adamw_bf16": OptimizerSpec(_ADAMW, "adam"),
    "torch-adamw": OptimizerSpec(_ADAMW, "adam"),
    "torch-adam": OptimizerSpec("torch.optim:Adam", "adam"),
    "torch-radam": OptimizerSpec("torch.optim:RAdam", "adam"),
    "torch-nadam": OptimizerSpec("torch.optim:NAdam", "adam"),
    "torch-adamax": OptimizerSpec("torch.optim:Adamax", "adam"),
    "torch-sgd": OptimizerSpec("torch.optim:SGD", "sgd"),
    "torch-rmsprop": OptimizerSpec("torch.optim:RMSprop", "eps"),
    "torch-adagrad": OptimizerSpec("torch.optim:Adagrad", "eps"),
    "torch-adadelta": OptimizerSpec("torch.optim:Adadelta", "eps"),
    "torch-asgd": OptimizerSpec("torch.optim:ASGD", "sgd"),
    "torch-adafactor": OptimizerSpec("torch.optim:Adafactor", "sgd"),
    "optimi-adamw": OptimizerSpec(_ADAMW, "adam", "torch's AdamW runs the same algorithm (optimi is not shipped)"),
    "optimi-adam": OptimizerSpec("torch.optim:Adam", "adam", "torch's Adam runs the same algorithm"),
    "optimi-radam": OptimizerSpec("torch.optim:RAdam", "adam", "torch's RAdam runs the same algorithm"),
    "optimi-sgd": OptimizerSpec("torch.optim:SGD", "sgd", "torch's SGD runs the same algorithm"),
    "optimi-lion": OptimizerSpec("lion_pytorch:Lion", "lion", "lion-pytorch's Lion runs the same algorithm"),
    "optimi-stableadamw": OptimizerSpec(_ADAMW, "adam", _SUBSTITUTE),
    "optimi-adan": OptimizerSpec(_ADAMW, "adam", _SUBSTITUTE),
    "optimi-ranger": OptimizerSpec(_ADAMW, "adam", _SUBSTITUTE),
    "adamw_schedulefree": OptimizerSpec(_ADAMW, "adam", _SUBSTITUTE),
    "adamw_schedulefree+aggressive": OptimizerSpec(_ADAMW, "adam", _SUBSTITUTE),
    "adamw_schedulefree+no_kahan": OptimizerSpec(_ADAMW, "adam", _SUBSTITUTE),
    "soap": OptimizerSpec(_ADAMW, "adam", _SUBSTITUTE),
    "muon": OptimizerSpec(_ADAMW, "adam", _SUBSTITUTE),
    "bnb-adamw": _bnb("AdamW"),
    "bnb-adamw8bit": _bnb("AdamW8bit"),
    "bnb-adamw-paged": _bnb("PagedAdamW", paged=True),
    "bnb-adamw8bit-paged": _bnb("PagedAdamW8bit", paged=True),
    "bnb-adam": _bnb("Adam"),
    "bnb-adam8bit": _bnb("Adam8bit"),
    "bnb-lion": _bnb("Lion", "lion"),
    "bnb-lion8bit": _bnb("Lion8bit", "lion"),
    "bnb-lion-paged": _bnb("PagedLion", "lion", paged=True),
    "bnb-lion8bit-paged": _bnb("PagedLion8bit", "lion", paged=True),
    "bnb-ademamix": _bnb("AdEMAMix", "ademamix"),
    "bnb-ademamix8bit": _bnb("AdEMAMix8bit", "ademamix"),
    "bnb-ademamix-paged": _bnb("PagedAdEMAMix", "ademamix", paged=True),
    "bnb-ademamix8bit-paged": _bnb("PagedAdEMAMix8bit", "ademamix", paged=True),
    "bnb-adagrad": _bnb("Adagrad", "eps"),
    "bnb-adagrad8bit": _bnb("Adagrad8bit", "eps"),
    "ao-adamw8bit": OptimizerSpec("torchao.optim:AdamW8bit", "adam", fallback="torch-adamw"),
    "ao-adamw4bit": OptimizerSpec("torchao.optim:AdamW4bit", "adam", fallback="torch-adamw"),
    "ao-adamfp8": OptimizerSpec("torchao.optim:AdamFp8", "adam", fallback="torch-adamw"),
    "ao-adamwfp8": OptimizerSpec("torchao.optim:AdamWFp8", "adam", fallback="torch-adamw"),
    "prodigy": OptimizerSpec("prodigyopt:Prodigy", "prodigy"),
}
_INSTALL_HINT = {"bitsandbytes": " (pip install 'sliderstudio[bnb]' for 8-bit state)",
                 "torchao": " (not shipped: its optimizers compile on first use, minutes on a CPU; bnb-adamw8bit "
                            "is the 8-bit AdamW Slider Studio supports)"}
_PIP_NAMES = {"bitsandbytes": "bitsandbytes", "prodigyopt": "prodigyopt", "lion_pytorch": "lion-pytorch",
              "torchao": "torchao"}


def optimizer_spec(name: str, file: str = "config.json") -> OptimizerSpec:
    spec = OPTIMIZERS.get(name)
    if spec is None:
        raise ConfigError(f"{name!r} is not one of SimpleTuner's optimizers: {', '.join(OPTIMIZERS)}",
                          file=file, key="optimizer", value=name)
    return spec


def resolve_optimizer(name: str, file: str = "config.json") -> tuple[OptimizerSpec, str]:
    """The spec that will run for `name`, and a note when it is a stand-in (substitute or missing package)."""
    spec = optimizer_spec(name, file)
    if importlib.util.find_spec(spec.package) is not None:
        return spec, spec.note
    pip = _PIP_NAMES.get(spec.package, spec.package)
    if not spec.fallback:
        raise ConfigError(f"optimizer {name!r} needs the '{pip}' package, which is not installed",
                          file=file, key="optimizer", value=name)
    stand_in = OPTIMIZERS[spec.fallback]
    return stand_in, (f"the '{pip}' package is not installed{_INSTALL_HINT.get(spec.package, '')}: "
                      f"{spec.fallback} ({stand_in.target.replace(':', '.')}) runs instead, with full-precision state")


def check_optimizer(config: Any, file: str) -> list[KeyNote]:
    """Refuse an unknown optimizer or a malformed optimizer_config before the model loads; note stand-ins."""
    _, note = resolve_optimizer(config.optimizer, file)
    parse_optimizer_config(config.optimizer_config, file)
    return [KeyNote("changed", "optimizer", f"{config.optimizer!r}: {note}", file)] if note else []


def parse_optimizer_config(text: Any, file: str = "config.json") -> dict[str, Any]:
    """SimpleTuner's 'key=value,key=value' (or a JSON object) → keyword arguments."""
    if text is None or text == "":
        return {}
    if isinstance(text, dict):
        return dict(text)
    out: dict[str, Any] = {}
    for item in str(text).split(","):
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"expected 'name=value' pairs separated by commas (got {item.strip()!r})",
                              file=file, key="optimizer_config", value=text)
        out[key.strip()] = _scalar(raw.strip())
    return out


def _scalar(raw: str) -> Any:
    lowered = raw.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    for cast in (int, float):
        try:
            return cast(raw)
        except ValueError:
            pass
    return raw


def settings_for(spec: OptimizerSpec, config: Any) -> dict[str, Any]:
    """The config's settings this kind of optimizer takes; optimizer_beta* win over adam_beta*."""
    beta1 = config.optimizer_beta1 if config.optimizer_beta1 is not None else config.adam_beta1
    beta2 = config.optimizer_beta2 if config.optimizer_beta2 is not None else config.adam_beta2
    wd = {"weight_decay": config.adam_weight_decay}
    if spec.kind == "adam" or spec.kind == "prodigy":
        return {"betas": (beta1, beta2), "eps": config.adam_epsilon, **wd}
    if spec.kind == "ademamix":
        return {"betas": (beta1, beta2, 0.9999), "eps": config.adam_epsilon, **wd}
    if spec.kind == "lion":
        explicit = config.optimizer_beta1 is not None or config.optimizer_beta2 is not None
        return {**({"betas": (beta1, beta2)} if explicit else {}), **wd}
    if spec.kind == "eps":
        return {"eps": config.adam_epsilon, **wd}
    if spec.kind == "sgd":
        return wd
    return {}


def build_optimizer(params: list[Any], config: Any, device: Any, file: str = "config.json") -> Any:
    """The optimizer over the adapter's parameters; a setting the class does not take is a ConfigError."""
    spec, _ = resolve_optimizer(config.optimizer, file)
    if spec.needs_cuda and getattr(device, "type", str(device)) != "cuda":
        raise ConfigError(f"optimizer {config.optimizer!r} pages its state through CUDA memory and this run is on "
                          f"{device}; use the same name without '-paged'", file=file, key="optimizer",
                          value=config.optimizer)
    module, name = spec.target.split(":")
    cls = getattr(importlib.import_module(module), name)
    kwargs = {**settings_for(spec, config), **parse_optimizer_config(config.optimizer_config, file)}
    if spec.target in _FUSABLE:
        kwargs.update(kernel_settings(device, kwargs))
    accepted = inspect.signature(cls.__init__).parameters
    unknown = sorted(k for k in kwargs if k not in accepted)
    if unknown and not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values()):
        raise ConfigError(f"{cls.__name__} has no setting {', '.join(map(repr, unknown))}; it takes "
                          f"{', '.join(k for k in accepted if k not in ('self', 'params'))}",
                          file=file, key="optimizer_config", value=config.optimizer_config)
    return cls(params, lr=effective_learning_rate(config), **kwargs)


# torch's Adam and AdamW have a fused kernel (one launch for every parameter) and a foreach one (a few
# launches per step) besides the per-parameter loop; on an adapter's hundreds of small tensors the loop's
# launches dominate the optimizer's time.
_FUSABLE = frozenset({_ADAMW, "torch.optim:Adam"})


def kernel_settings(device: Any, given: dict[str, Any]) -> dict[str, Any]:
    """fused=True where torch has a fused kernel for the device, else foreach=True; optimizer_config wins."""
    if "fused" in given or "foreach" in given:
        return {}
    try:
        from torch.optim.optimizer import _get_fused_kernels_supported_devices as fused_devices
    except ImportError:  # a private helper: without it, CUDA is the device known to have the kernels
        fused_devices = lambda: ["cuda"]  # noqa: E731
    if getattr(device, "type", str(device)) in fused_devices():
        return {"fused": True}
    return {"foreach": True}


def effective_learning_rate(config: Any) -> float:
    """SimpleTuner's lr_scale: × (devices × batch × accumulation), or its square root; one device here."""
    if not config.lr_scale:
        return config.learning_rate
    factor = config.train_batch_size * config.gradient_accumulation_steps
    return config.learning_rate * (factor ** 0.5 if config.lr_scale_sqrt else factor)
