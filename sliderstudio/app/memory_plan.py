"""The memory planner: the device peak a training run will reach, and the cheapest options that fit a card.

Weight and adapter sizes are counted, not guessed: the family's full-size denoiser is built on the
meta device from its published config (families/full_size.py) and the slider targets are resolved
on it. Activations follow a per-family model whose constants were measured as saved-tensor bytes
of the real diffusers block classes at reduced width on a CPU (app/activation_probe.py), scaled
to full width, depth and token count. docs/MEMORY.md compares the result with peaks measured on a GPU.
"""
from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from sliderstudio.kernel.errors import ConfigError, InputError
from sliderstudio.kernel.resources import read_config_data
from sliderstudio.families.full_size import full_size, full_size_skeleton

if TYPE_CHECKING:  # torch loads on first use: the app imports this module on its UI thread
    from torch import nn

    from sliderstudio.families.base import Family

GIB = 1024 ** 3
CONSTANTS_FILE = "activation_constants.json"  # in config_data/, read through kernel/resources.py
CARD_PRESETS_GB = (8, 12, 16, 24, 48)
CUDA_CONTEXT_BYTES = int(0.6 * GIB)  # CUDA context, cuBLAS/cuDNN workspaces: held outside torch's allocator
DTYPE_BYTES = {"no": 4, "fp16": 2, "bf16": 2}
# bytes per weight of the quantised Linear layers; SimpleTuner's names, the first number is the weight format
_QUANT_BITS = {"int2": 2, "int4": 4, "uint4": 4, "nf4": 4, "int5": 5, "uint5": 5, "int6": 6, "int8": 8, "uint8": 8,
               "int8dq": 8, "fp8": 8, "fp8wo": 8, "fp8uz": 8, "fp16": 16, "int16": 16, "uint16": 16}
# optimizer state bytes per trainable parameter (fp32 states), by the optimizer's kind of update
_STATE_BYTES = {"adam": 8, "adam8bit": 2, "lion": 4, "lion8bit": 1, "sgd": 4, "eps": 4, "prodigy": 16,
                "adafactor": 1}
FP8_MIN_CAPABILITY = (8, 9)  # fp8 matmuls: Ada / Hopper or newer


@dataclass(frozen=True)
class PlanOptions:
    """The settings that change the device peak (TrainConfig keys of the same names)."""

    mixed_precision: str = "bf16"
    base_model_precision: str = "no_change"
    gradient_checkpointing: bool = False
    train_batch_size: int = 1
    resolution: int = 1024
    lora_rank: int = 16
    lora_type: str = "standard"
    optimizer: str = "adamw_bf16"
    targets: str | tuple[str, ...] = "slider"  # a preset name or explicit module patterns
    caches_complete: bool = False  # every latent and caption cached: the encoders never reach the device
    offload_blocks: bool = False  # the denoiser's blocks stream from CPU memory (engine.block_offload)
    offload_blocks_per_group: int = 1
    processes: int = 1  # num_processes: train_batch_size is split among them (engine.distributed)
    fsdp: bool = False  # the frozen denoiser weights sharded over the processes (engine.fsdp)


@dataclass(frozen=True)
class Breakdown:
    """Estimated bytes on the device at the peak of a training step, by what holds them."""

    family: str
    options: PlanOptions
    weights: int
    adapter: int          # the adapter's fp32 parameters
    optimizer: int        # their gradients and the optimizer's states
    activations: int
    encoders: int         # during training: the VAE decoder (the trainer moves the encoders off the device)
    caching: int = 0      # first run, before training: text encoders + VAE on the device to fill the cache
    overhead: int = CUDA_CONTEXT_BYTES
    adapter_params: int = 0
    notes: tuple[str, ...] = ()

    @property
    def training(self) -> int:
        """The peak of a training step."""
        return self.weights + self.adapter + self.optimizer + self.activations + self.encoders + self.overhead

    @property
    def caching_peak(self) -> int:
        """The first run's peak while it fills the cache (no adapter state or activations yet); an
        offloaded denoiser waits in CPU memory until the cache is full."""
        return (0 if self.options.offload_blocks else self.weights) + self.caching + self.overhead

    @property
    def total(self) -> int:
        """The run's device peak: the larger of the caching phase and a training step."""
        return max(self.training, self.caching_peak)

    def rows(self) -> list[tuple[str, int]]:
        return [("denoiser weights", self.weights), ("adapter", self.adapter),
                ("gradients + optimizer", self.optimizer), ("activations", self.activations),
                ("VAE decoder", self.encoders), ("CUDA context", self.overhead), ("training step", self.training),
                ("caching (first run)", self.caching_peak), ("peak", self.total)]

    def table(self) -> str:
        return "\n".join(f"{name:<24}{gib(value):>8.1f} GiB" for name, value in self.rows())


@dataclass(frozen=True)
class Advice:
    """Whether a plan fits a card, and if not the cheapest change of options that does (None: nothing does)."""

    card_gb: float
    plan: Breakdown
    changes: dict[str, Any] = field(default_factory=dict)
    fitted: Breakdown | None = None

    @property
    def fits(self) -> bool:
        return self.plan.total <= card_bytes(self.card_gb)

    def summary(self) -> str:
        card = f"{self.card_gb:g} GB"
        if self.fits:
            return f"≈ {gib(self.plan.total):.1f} GiB on the device — fits {card}"
        if self.fitted is None:
            return f"≈ {gib(self.plan.total):.1f} GiB on the device — won't fit {card}, no supported option fits"
        return (f"≈ {gib(self.plan.total):.1f} GiB — won't fit {card}: try {describe(self.changes)} "
                f"(≈ {gib(self.fitted.total):.1f} GiB)")


def gib(value: int) -> float:
    return value / GIB


def card_bytes(card_gb: float) -> int:
    """A card sold as N GB exposes about N GiB (a 24 GB card reports 23.6–24 GiB); the planner takes N GiB."""
    return int(card_gb * GIB)


def describe(changes: dict[str, Any]) -> str:
    return ", ".join(f"{key} {value}" for key, value in changes.items()) or "no change"


# --- the model's sizes ---------------------------------------------------------------------------

@lru_cache(maxsize=None)
def _skeleton(family_id: str) -> "nn.Module":
    return full_size_skeleton(family_id)


@dataclass(frozen=True)
class DenoiserSizes:
    params: int
    linear_weights: int   # parameters in Linear weights: what weight-only quantisation shrinks
    linear_rows: int      # their output rows: one scale each after quantisation


@lru_cache(maxsize=None)
def denoiser_sizes(family_id: str) -> DenoiserSizes:
    from torch import nn

    model = _skeleton(family_id)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    return DenoiserSizes(sum(p.numel() for p in model.parameters()),
                         sum(m.weight.numel() for m in linears), sum(m.weight.shape[0] for m in linears))


def lora_params(layer: "nn.Module", rank: int) -> int:
    """PEFT LoRA's parameter count on one layer: r·(in+out) for a Linear, r·(in·k…) + out·r for a conv."""
    from torch import nn

    weight = layer.weight
    if isinstance(layer, nn.Linear):
        return rank * (weight.shape[0] + weight.shape[1])
    return rank * (weight[0].numel() + weight.shape[0])


@lru_cache(maxsize=None)
def adapter_params(family_id: str, targets: str | tuple[str, ...], rank: int) -> int:
    from sliderstudio.adapters.targets import resolve_on_module
    from sliderstudio.families.registry import get_family

    model = _skeleton(family_id)
    patterns = list(targets) if isinstance(targets, tuple) else get_family(family_id).presets[targets]
    names = resolve_on_module(model, patterns).module_names
    return sum(lora_params(model.get_submodule(n), rank) for n in names)


# --- bytes per component -------------------------------------------------------------------------

def quant_bits(precision: str) -> int | None:
    """Bits per quantised weight for a base_model_precision value (None: no_change)."""
    if precision == "no_change":
        return None
    head = precision.split("-")[0]
    if head not in _QUANT_BITS:
        raise ConfigError("the memory planner does not know this precision", key="base_model_precision",
                          value=precision)
    return _QUANT_BITS[head]


OFFLOAD_GROUPS_ON_DEVICE = 2  # the group computing and the one autograd still holds for its backward


def offloaded_sizes(family_id: str, per_group: int) -> DenoiserSizes:
    """What an offloaded denoiser keeps on the device: everything outside its blocks, and two groups."""
    from sliderstudio.engine.block_offload import offload_sizes

    sizes = offload_sizes(_skeleton(family_id), per_group)
    return DenoiserSizes(*(stem + OFFLOAD_GROUPS_ON_DEVICE * group
                           for stem, group in zip(sizes.stem, sizes.largest_group)))


def weight_bytes(sizes: DenoiserSizes, options: PlanOptions) -> int:
    dense = DTYPE_BYTES[options.mixed_precision]
    bits = quant_bits(options.base_model_precision)
    if bits is None:
        return sizes.params * dense
    quantised = sizes.linear_weights * bits // 8 + sizes.linear_rows * 4  # + one fp32 scale per output row
    return quantised + (sizes.params - sizes.linear_weights) * dense


def optimizer_state_bytes(name: str) -> int:
    lowered = name.lower()
    if "prodigy" in lowered:
        return _STATE_BYTES["prodigy"]
    if "adafactor" in lowered:
        return _STATE_BYTES["adafactor"]
    if "lion" in lowered:
        return _STATE_BYTES["lion8bit" if "8bit" in lowered else "lion"]
    if "8bit" in lowered:
        return _STATE_BYTES["adam8bit"]
    if any(k in lowered for k in ("sgd", "rmsprop", "adagrad", "adadelta", "asgd")):
        return _STATE_BYTES["sgd"]
    return _STATE_BYTES["adam"]


@lru_cache(maxsize=1)
def activation_constants() -> dict[str, dict[str, float]]:
    """Saved elements per token per hidden unit, by block kind, measured by app/activation_probe.py."""
    return json.loads(read_config_data(CONSTANTS_FILE))["kinds"]


def unet_units(config: dict[str, Any]) -> float:
    """A UNet's depth in 'block units at full latent resolution': each level's resnet and transformer
    layers weighted by its width and by the 1/4 pixels per level down (the activation scaling)."""
    channels = config["block_out_channels"]
    if "down_num_layers_per_block" in config:  # Stable Cascade's Stage C: res + timestep + attention per layer
        layers = [d + u for d, u in zip(config["down_num_layers_per_block"], config["up_num_layers_per_block"])]
        return sum(c / channels[0] / 4 ** i * n * 2 for i, (c, n) in enumerate(zip(channels, layers)))
    per_level = config.get("transformer_layers_per_block", 1)
    per_level = per_level if isinstance(per_level, list) else [per_level] * len(channels)
    units = 0.0
    for i, (c, kind) in enumerate(zip(channels, config["down_block_types"])):
        attention = 5 * per_level[i] if "CrossAttn" in kind else 0  # 2 down + 3 up slots
        units += c / channels[0] / 4 ** i * (5 + attention)
    return units


def image_tokens(activation: dict[str, Any], resolution: int) -> int:
    side = max(1, round(resolution / activation["latent_downsample"] / activation["patch"]))
    return side * side


def activation_bytes(family_id: str, options: PlanOptions) -> int:
    """Saved activations at the peak of backward: the per-kind constants × tokens × width × blocks."""
    fs = full_size(family_id)
    act = fs.activation
    kinds = activation_constants()
    tokens = image_tokens(act, options.resolution)
    per_token, block_max = 0.0, 0.0
    for kind, count, width in act["blocks"]:
        k = kinds[kind]
        seen = tokens + (act["text_tokens"] if k.get("joint", False) else 0)
        saved = k["gc" if options.gradient_checkpointing else "nogc"]
        if kind == "unet":  # one constant for the whole UNet, scaled by depth; its biggest block ≈ 2 units
            units = unet_units(fs.config)
            count = units / unet_units(full_size(k["family"]).config)
            block = k["nogc"] * width * count * 2 / units
        else:
            block = k["nogc"] * width * seen / tokens
        per_token += saved * width * count * seen / tokens
        block_max = max(block_max, block)
    if options.gradient_checkpointing:
        per_token += block_max  # one block recomputed in backward holds its full activations
    # the constants are bytes of a bf16 run; an fp32 run ("no") keeps about twice as many
    scale = DTYPE_BYTES[options.mixed_precision] / 2
    return int(per_token * tokens * options.train_batch_size * scale)


VAE_DECODER_SHARE = 0.6  # SD's VAE: 49.5 M of its 83.7 M parameters are the decoder


def encoder_bytes(family_id: str, options: PlanOptions) -> tuple[int, int]:
    """(during training, while caching): the trainer keeps only the VAE decoder on the device once the
    cache is full; a first run holds every text encoder and the whole VAE while it fills the cache."""
    fs = full_size(family_id)
    dtype = DTYPE_BYTES[options.mixed_precision]
    decoder = int(fs.vae.params * VAE_DECODER_SHARE) * dtype
    caching = 0 if options.caches_complete else (sum(c.params for c in fs.text_encoders) + fs.vae.params) * dtype
    return decoder, caching


def plan(family: "Family", options: PlanOptions) -> Breakdown:
    """The estimated device peak of one training step of this family's full-size model."""
    check_options(family, options)
    sizes = denoiser_sizes(family.id)
    n_adapter = adapter_params(family.id, options.targets, options.lora_rank)
    notes = []
    if options.offload_blocks:
        sizes = offloaded_sizes(family.id, options.offload_blocks_per_group)
        notes.append(f"offload_blocks: the denoiser's blocks stream from CPU memory; on the device: its weights "
                     f"outside the blocks and {OFFLOAD_GROUPS_ON_DEVICE} groups of "
                     f"{options.offload_blocks_per_group} block(s); gradient checkpointing comes with it")
        options = replace(options, gradient_checkpointing=True)
    if options.lora_type != "standard":
        notes.append("LyCORIS adapters are sized as a LoRA of the same rank (an estimate)")
    if not options.caches_complete:
        notes.append("caching (first run): text encoders + VAE fill the cache before training; once every "
                     "latent and caption is cached they stay off the device")
    if not full_size(family.id).activation.get("measured", False):
        notes.append(f"activations extrapolated from the {full_size(family.id).activation['like']} measurement")
    decoder, caching = encoder_bytes(family.id, options)
    shards, local = process_split(options, notes)
    # FSDP shards the frozen base only: the slider's parameters and optimizer states are replicated (engine.fsdp)
    return Breakdown(family.id, options, -(-weight_bytes(sizes, options) // shards), n_adapter * 4,
                     n_adapter * (4 + optimizer_state_bytes(options.optimizer)),
                     activation_bytes(family.id, local), decoder, caching, adapter_params=n_adapter, notes=tuple(notes))


def process_split(options: PlanOptions, notes: list[str]) -> tuple[int, PlanOptions]:
    """Per process of num_processes: how many ways the denoiser's weights split (FSDP; the adapter and
    its optimizer states stay whole on every process, as engine.fsdp trains them; otherwise 1, every
    process holds everything whole) and the options of its share of the batch (train_batch_size is
    the global micro-batch, split among the processes)."""
    if options.processes <= 1:
        return 1, options
    local = replace(options, train_batch_size=-(-options.train_batch_size // options.processes))
    notes.append(f"per process of {options.processes}: {local.train_batch_size} of the {options.train_batch_size} "
                 "images of each micro-batch")
    if options.fsdp:
        notes.append(f"FSDP: the frozen denoiser weights split {options.processes} ways, plus one gathered block "
                     "at a time (not counted); the adapter and its optimizer states are whole on every process "
                     "(replicated), activations and the VAE decoder are per process")
        return options.processes, local
    notes.append("every process holds the whole denoiser, adapter and optimizer states (DDP-style)")
    return 1, local


# --- bad input -----------------------------------------------------------------------------------

def check_options(family: "Family", options: PlanOptions, capability: tuple[int, int] | None = None) -> None:
    """Refuse, before any weight is loaded, a memory mode the family cannot use or a quantisation the
    device cannot run (capability: the CUDA compute capability, None when unknown)."""
    if options.gradient_checkpointing and not getattr(type(_skeleton(family.id)),
                                                      "_supports_gradient_checkpointing", False):
        raise ConfigError(f"{family.label}'s denoiser has no gradient checkpointing",
                          key="gradient_checkpointing", value=True)
    if options.mixed_precision not in DTYPE_BYTES:
        raise ConfigError("unknown precision", key="mixed_precision", value=options.mixed_precision)
    import torch

    from sliderstudio.engine.quantise import require_runnable

    # the trainer's own rule: which values run on this machine's device
    require_runnable(options.base_model_precision, torch.device("cuda" if capability else "cpu"))
    bits = quant_bits(options.base_model_precision)
    if bits is not None and options.base_model_precision.startswith("fp8") and capability is not None \
            and capability < FP8_MIN_CAPABILITY:
        raise ConfigError(f"fp8 needs a GPU of compute capability 8.9 or newer; this one is "
                          f"{capability[0]}.{capability[1]}", key="base_model_precision",
                          value=options.base_model_precision)
    if options.offload_blocks:
        from sliderstudio.engine.block_offload import require_offloadable

        require_offloadable(family, options.base_model_precision, False, model=_skeleton(family.id))
    if options.train_batch_size < 1 or options.resolution < 8:
        raise ConfigError("batch size and resolution must be positive", key="resolution", value=options.resolution)
    if options.fsdp:
        from sliderstudio.engine.distributed import require_fsdp_family

        require_fsdp_family(family)


# --- the cheapest options that fit ---------------------------------------------------------------

def candidate_changes(options: PlanOptions, family: "Family") -> list[tuple[float, dict[str, Any]]]:
    """Single changes the product supports, with a cost: the slowdown (or quality loss) each brings."""
    out: list[tuple[float, dict[str, Any]]] = []
    if options.mixed_precision == "no":
        out.append((0.1, {"mixed_precision": "bf16"}))  # faster, not slower, on any bf16 GPU
    if options.train_batch_size > 1:
        out.append((1.0, {"train_batch_size": 1}))  # gradient_accumulation_steps keeps the effective batch
    if not options.gradient_checkpointing and getattr(type(_skeleton(family.id)),
                                                      "_supports_gradient_checkpointing", False):
        out.append((2.0, {"gradient_checkpointing": True}))  # about a third more time per step
    if options.base_model_precision == "no_change":
        out.append((3.0, {"base_model_precision": "int8-torchao"}))
    if not options.offload_blocks and offloadable(family, options.base_model_precision):
        out.append((6.0, {"offload_blocks": True}))  # every step waits for the weights to cross PCIe
    for cost, side in ((10.0, 768), (20.0, 512)):  # the last resort: lower resolution changes the result
        if options.resolution > side:
            out.append((cost, {"resolution": side}))
    return out


def offloadable(family: "Family", base_model_precision: str) -> bool:
    from sliderstudio.engine.block_offload import MOVABLE_PRECISIONS, offload_problem

    return base_model_precision in MOVABLE_PRECISIONS and offload_problem(_skeleton(family.id)) is None


def cheapest_fit(family: "Family", options: PlanOptions, card_gb: float) -> Advice:
    """The plan, and where it does not fit, the cheapest set of changes that does (by summed cost)."""
    base = plan(family, options)
    advice = Advice(card_gb, base)
    if advice.fits:
        return advice
    limit = card_bytes(card_gb)
    choices = candidate_changes(options, family)
    combos = []
    for n in range(1, len(choices) + 1):
        for combo in itertools.combinations(choices, n):
            keys = [k for _, c in combo for k in c]
            if len(keys) != len(set(keys)):  # two resolutions at once
                continue
            combos.append((sum(c for c, _ in combo), n, {k: v for _, c in combo for k, v in c.items()}))
    for _, _, changes in sorted(combos, key=lambda c: (c[0], c[1])):
        trial = plan(family, replace(options, **changes))
        if trial.total <= limit:
            return Advice(card_gb, base, changes, trial)
    return advice


def options_from_config(config: Any) -> PlanOptions:
    """PlanOptions from a TrainConfig (keys the config does not have keep their defaults)."""
    from sliderstudio.adapters.targets import preset_patterns
    from sliderstudio.families.registry import get_family

    name, patterns = preset_patterns(get_family(config.model_family), config)
    targets: str | tuple[str, ...] = tuple(patterns) if name == "custom" else name
    return PlanOptions(config.mixed_precision, getattr(config, "base_model_precision", "no_change"),
                       config.gradient_checkpointing, config.train_batch_size, int(config.resolution),
                       config.lora_rank, config.lora_type, config.optimizer, targets,
                       offload_blocks=getattr(config, "offload_blocks", False),
                       offload_blocks_per_group=getattr(config, "offload_blocks_per_group", 1),
                       processes=getattr(config, "num_processes", 1),
                       fsdp=getattr(config, "fsdp_enable", False) and getattr(config, "num_processes", 1) > 1)


def require_fit(advice: Advice, key: str = "--vram") -> None:
    """Exit-2 input error when no supported option makes the run fit the card."""
    if not advice.fits and advice.fitted is None:
        raise InputError(f"the run needs ≈ {gib(advice.plan.total):.1f} GiB and no supported memory option "
                         f"brings it under {advice.card_gb:g} GB", key=key, value=advice.card_gb)


def cuda_capability() -> tuple[int, int] | None:
    import torch

    return torch.cuda.get_device_capability() if torch.cuda.is_available() else None


def detected_card_gb(default: float = 24.0) -> float:
    """The card size the app assumes: the first GPU's memory, or `default` when there is none."""
    import torch

    if torch.cuda.is_available():
        return round(torch.cuda.get_device_properties(0).total_memory / GIB)
    return default
