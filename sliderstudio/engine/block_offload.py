"""Offloading the denoiser's blocks: its frozen weights live in CPU memory and each group of blocks is
copied to the device just before it runs, for cards too small for the whole model (`offload_blocks`).

The moving is diffusers' group offloading (its ModuleGroup and GroupOffloadingHook, the hooks
`ModelMixin.enable_group_offload` installs). The grouping is ours, for one reason: diffusers'
`apply_group_offloading` moves *every* parameter of a block, the slider's LoRA/LyCORIS tensors
included, so they would leave the device after each forward and their gradients would arrive on the
wrong device. Here each group lists the block's frozen parameters and buffers explicitly and the
adapter's parameters are left out: they stay on the compute device, trainable, the same objects the
optimizer holds.

Offloading needs gradient checkpointing to save anything in training: autograd keeps every Linear
weight a forward used (a transposed view of the same storage) for the backward pass, so without
checkpointing each streamed block's device copy stays alive until backward. With checkpointing the
forward keeps only block inputs, and backward recomputes one block at a time, whose hooks onload it
again. The trainer turns checkpointing on with offloading and says so.

Transfers are synchronous. diffusers' stream prefetch (`use_stream`) loads "the next group" in the
order of the first forward; backward recomputes the blocks in reverse, so each prefetch would bring a
block that no forward offloads again, and by the end of backward every block would be on the device.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import torch
from torch import nn

from sliderstudio.kernel.errors import ConfigError

KEY = "offload_blocks"
# torchao's int8/fp8 weights are tensor subclasses whose inner data diffusers' hooks swap between
# devices; the values this build quantises with are all torchao. bitsandbytes' 4-bit weights are
# quantised when they first reach the GPU and cannot be streamed back and forth.
MOVABLE_PRECISIONS = frozenset({"no_change", "int8-torchao", "int8-quanto", "fp8-torchao", "fp8wo-torchao"})
MIN_STREAMED_SHARE = 0.5  # below this, offloading would cost transfers and save little
_HOOK = "group_offloading"  # diffusers' hook name: its pipelines find the onload device by it


@dataclass
class Tally:
    """What the hooks did: onloads and offloads per group, and the most groups on the device at once."""

    onloads: list[int]
    offloads: list[int]
    on_device: set[int] = field(default_factory=set)
    most_on_device: int = 0
    order: list[tuple[str, int]] = field(default_factory=list)

    def onloaded(self, index: int) -> None:
        self.onloads[index] += 1
        self.on_device.add(index)
        self.most_on_device = max(self.most_on_device, len(self.on_device))
        self.order.append(("on", index))

    def offloaded(self, index: int) -> None:
        self.offloads[index] += 1
        self.on_device.discard(index)
        self.order.append(("off", index))


def block_lists(model: nn.Module) -> list[str]:
    """The model's top-level lists of repeated blocks (what diffusers' block-level offloading groups).
    A list whose items are lists themselves (Stable Cascade's levels) is left out: an item is never
    called, so a hook on it would never onload it; its weights stay with the model's stem."""
    return [name for name, child in model.named_children()
            if isinstance(child, (nn.ModuleList, nn.Sequential)) and len(child) > 0
            and all(_callable(block) for block in child)]


def _callable(block: nn.Module) -> bool:
    return not isinstance(block, nn.ModuleList) and type(block).forward is not nn.Module.forward


def offload_problem(model: nn.Module, min_share: float | None = None) -> str | None:
    """Why block offloading cannot stream this denoiser (None: it can). `min_share`: the least share of
    the weights the blocks must hold for offloading to be worth it (judged on the full-size model)."""
    name = type(model).__name__
    if not getattr(type(model), "_supports_group_offloading", False):
        return f"{name} is not a diffusers model that supports group offloading"
    if not getattr(type(model), "_supports_gradient_checkpointing", False):
        return f"{name} has no gradient checkpointing, without which offloading saves nothing in training"
    if not block_lists(model):
        return f"{name} has no list of repeated blocks at its top level to stream"
    sizes = offload_sizes(model, 1)
    share = 1 - sizes.stem[0] / max(1, sizes.stem[0] + sizes.in_blocks[0])
    if share < (MIN_STREAMED_SHARE if min_share is None else min_share):
        return (f"{name}'s streamable blocks hold only {share:.0%} of its weights (the rest is not in a list of "
                "blocks that are called one by one)")
    return None


def require_offloadable(family: Any, base_model_precision: str, controlnet: bool, file: str | None = None,
                        model: nn.Module | None = None) -> None:
    """Exit-2 reasons, before any weight loads: a denoiser the hooks cannot stream (judged on the family's
    full-size model built on the meta device unless `model` is given), a quantisation whose weights
    cannot move, or a ControlNet slider (its frozen denoiser is a wrapper of two models)."""
    if controlnet:
        raise ConfigError("block offloading is not available for ControlNet sliders", file=file, key=KEY,
                          value=True)
    if base_model_precision not in MOVABLE_PRECISIONS:
        raise ConfigError(f"base_model_precision {base_model_precision!r} makes weights the offloading hooks "
                          f"cannot move between CPU and device; use one of {', '.join(sorted(MOVABLE_PRECISIONS))}",
                          file=file, key=KEY, value=True)
    if model is None:
        from sliderstudio.families.full_size import full_size_skeleton

        model = full_size_skeleton(family.id)
    problem = offload_problem(model)
    if problem:
        raise ConfigError(f"{family.label}'s denoiser cannot be offloaded: {problem}", file=file, key=KEY,
                          value=True)


def _counted_group_class() -> type:
    from diffusers.hooks.group_offloading import ModuleGroup

    class CountedGroup(ModuleGroup):
        """diffusers' group, reporting each move to a Tally, and keeping one group of blocks on the device:
        onloading one offloads any other still there (backward's recomputation onloads but never offloads)."""

        def __init__(self, *args: Any, tally: Tally, index: int, peers: list[Any], **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.tally, self.index, self.peers = tally, index, peers

        @torch.compiler.disable()
        def onload_(self) -> None:
            for other in [g for g in self.peers if g is not self and g.index in self.tally.on_device]:
                other.offload_()
            super().onload_()
            self.tally.onloaded(self.index)

        @torch.compiler.disable()
        def offload_(self) -> None:
            super().offload_()
            self.tally.offloaded(self.index)

        def ensure(self, *_: Any) -> None:
            """A forward pre-hook on every module inside the group's blocks: gradient checkpointing recomputes
            parts of a block (a UNet's resnets) in backward without calling the block, so the block's own
            hook does not run then."""
            if self.index not in self.tally.on_device:
                self.onload_()

    return CountedGroup


@dataclass
class BlockOffload:
    """The installed hooks of one denoiser: its groups of blocks and what stays on the device."""

    groups: list[Any]
    tally: Tally
    onload_device: torch.device
    kept: int        # adapter tensors left on the compute device
    blocks: int
    stem_bytes: int  # weights outside the blocks: on the device for the whole run

    def describe(self) -> str:
        mib = sum(_group_bytes(g) for g in self.groups) / 2**20
        return (f"{KEY}: {self.blocks} blocks in {len(self.groups)} groups stream from CPU memory to "
                f"{self.onload_device} one group at a time ({mib:.1f} MiB of frozen weights; the "
                f"{self.stem_bytes / 2**20:.1f} MiB outside the blocks stay on {self.onload_device}); "
                f"{self.kept} adapter tensors stay on {self.onload_device}")


def _group_bytes(group: Any) -> int:
    return sum(t.numel() * t.element_size() for t in [*group.parameters, *group.buffers])


def _windows(model: nn.Module, per_group: int) -> list[list[nn.Module]]:
    """Consecutive blocks of each top-level block list, `per_group` at a time."""
    return [list(getattr(model, n))[i:i + per_group] for n in block_lists(model)
            for i in range(0, len(getattr(model, n)), per_group)]


def _move(tensors: Iterable[torch.Tensor], device: torch.device) -> int:
    moved = 0
    for t in tensors:
        if t.device != device:
            t.data = t.data.to(device)
        moved += t.numel() * t.element_size()
    return moved


def install(model: nn.Module, onload_device: torch.device, keep: Iterable[torch.Tensor], blocks_per_group: int = 1,
            offload_device: torch.device = torch.device("cpu")) -> BlockOffload:
    """Stream `model`'s frozen block weights from `offload_device`, a group of blocks at a time; the tensors
    in `keep` (the adapter's) and everything outside the blocks move to the device once and stay. Call
    after the adapter is attached."""
    from diffusers.hooks import HookRegistry
    from diffusers.hooks.group_offloading import GroupOffloadingConfig, GroupOffloadingHook, GroupOffloadingType

    problem = offload_problem(model, min_share=0.0)  # worth it or not was judged on the full-size model
    if problem:
        raise ConfigError(problem, key=KEY, value=True)
    keep = list(keep)
    keep_ids = {id(t) for t in keep}
    per_group = max(1, blocks_per_group)
    config = GroupOffloadingConfig(onload_device, offload_device, GroupOffloadingType.BLOCK_LEVEL,
                                   non_blocking=False, record_stream=False, low_cpu_mem_usage=False,
                                   num_blocks_per_group=per_group, exclude_kwargs=getattr(model, "_skip_keys", None))
    group_cls = _counted_group_class()
    windows = _windows(model, per_group)
    tally = Tally([0] * len(windows), [0] * len(windows))
    groups: list[Any] = []
    for index, blocks in enumerate(windows):
        params = [p for b in blocks for p in b.parameters() if id(p) not in keep_ids]
        buffers = [t for b in blocks for t in b.buffers()]
        groups.append(group_cls(modules=[], offload_device=offload_device, onload_device=onload_device,
                                offload_leader=blocks[-1], onload_leader=blocks[0], parameters=params,
                                buffers=buffers, onload_self=True, tally=tally, index=index, peers=groups))
    in_blocks = {id(t) for g in groups for t in [*g.parameters, *g.buffers]}
    stem = [t for t in [*model.parameters(), *model.buffers()] if id(t) not in in_blocks and id(t) not in keep_ids]
    stem_bytes = _move(stem, onload_device)
    _move(keep, onload_device)
    for group, blocks in zip(groups, windows):
        for block in blocks:
            HookRegistry.check_if_exists_or_initialize(block).register_hook(
                GroupOffloadingHook(group, config=config), _HOOK)
            for inner in list(block.modules())[1:]:
                inner.register_forward_pre_hook(group.ensure)
    return BlockOffload(groups, tally, onload_device, len(keep_ids), sum(len(w) for w in windows), stem_bytes)


@dataclass(frozen=True)
class OffloadSizes:
    """Parameter counts for the planner: outside the blocks (always on the device while a step runs,
    autograd keeps them for backward) and the largest group of consecutive blocks."""

    stem: tuple[int, int, int]       # (parameters, Linear weight elements, Linear output rows)
    largest_group: tuple[int, int, int]
    groups: int
    in_blocks: tuple[int, int, int]


def _counts(modules: Iterable[nn.Module]) -> tuple[int, int, int]:
    params = linear = rows = 0
    for module in modules:
        params += sum(p.numel() for p in module.parameters())
        for m in module.modules():
            if isinstance(m, nn.Linear):
                linear += m.weight.numel()
                rows += m.weight.shape[0]
    return params, linear, rows


def offload_sizes(model: nn.Module, blocks_per_group: int) -> OffloadSizes:
    """Counted on the model itself (a meta-device skeleton works: only shapes are read)."""
    per = max(1, blocks_per_group)
    windows = _windows(model, per)
    total = _counts([model])
    counted = [_counts(w) for w in windows]
    in_blocks = tuple(sum(c[i] for c in counted) for i in range(3))
    stem = tuple(t - b for t, b in zip(total, in_blocks))
    largest = max(counted, key=lambda c: c[0]) if counted else (0, 0, 0)
    return OffloadSizes(stem, largest, len(windows), in_blocks)  # type: ignore[arg-type]


def offload_for_training(model: nn.Module, adapter_params: list[torch.Tensor], device: torch.device,
                         blocks_per_group: int, checkpointing: bool,
                         log: Callable[[str, str], None]) -> BlockOffload:
    """Install the hooks for a training run: gradient checkpointing on (see the module's docstring), the
    adapter on the device, the frozen blocks in CPU memory."""
    if not checkpointing and hasattr(model, "enable_gradient_checkpointing"):
        model.enable_gradient_checkpointing()
        log(f"{KEY}: gradient_checkpointing turned on as well (without it autograd keeps every streamed block's "
            "weights on the device until backward, and offloading would save nothing)", "info")
    offload = install(model, device, adapter_params, blocks_per_group)
    log(offload.describe(), "info")
    return offload
