"""FSDP for models that don't fit one card: the frozen denoiser sharded over the training processes.

Why this shape:
- Only the frozen base is sharded (torch's FSDP2 `fully_shard`: each repeated block, then the root
  for the rest). The slider's parameters (a LoRA is well under 1% of the model) are left out of the
  shards (`ignored_params`) and stay whole on every process. So their gradients are summed by the
  same single all-reduce as without FSDP (engine.distributed.sum_gradients), and the optimizer, the
  strength scaling (strength 0 is the base), the checkpoints and the saved adapter are exactly those
  of a 1-process run: the full adapter state is on the main process already, a checkpoint needs no
  gathering and resumes on any number of processes. The price is the adapter and its optimizer
  states on every process, which the memory planner counts whole.
- The sharding is accelerate's: its FSDP2 plugin (`FullyShardedDataParallelPlugin(fsdp_version=2)`, the
  blocks by class name, the slider's LoRA layers as `ignored_modules`) applied by its
  `fsdp2_prepare_model`, which calls torch's `fully_shard` in place. Not `Accelerator.prepare(model)`:
  on the CPU accelerate 1.15 drops the plugin (it would wrap the model in DDP), and on CUDA prepare
  takes the model over, while the families call their denoiser directly (AccelerateView).
- Every process must join every gather of the sharded weights: each runs the same forwards and
  backwards for every micro-batch (a process with an empty share runs a stand-in at zero weight),
  and validation renders on every process (the main one alone writes the images).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable, Iterable, Sequence

import torch

from sliderstudio.kernel.errors import ConfigError
from sliderstudio.engine.sampler import MicroBatch


@dataclass(frozen=True)
class ShardReport:
    """What was sharded, and what this process holds of the frozen denoiser."""

    blocks: int
    world: int
    local_numel: int   # elements of the denoiser's sharded parameters held by this process
    full_numel: int    # elements of the same parameters unsharded

    def describe(self) -> str:
        share = self.local_numel / self.full_numel if self.full_numel else 0.0
        return (f"FSDP: {self.blocks} blocks and the root of the denoiser sharded over {self.world} processes; "
                f"this process holds {self.local_numel} of its {self.full_numel} frozen parameters "
                f"({share:.1%}); the slider's parameters are whole on every process")


def enabled(cfg: Any, world: int) -> bool:
    """FSDP applies when asked for and there is more than one process to shard over."""
    return bool(getattr(cfg, "fsdp_enable", False)) and world > 1


def check_options(cfg: Any, family: Any, file: str | None) -> None:
    """What FSDP cannot train, refused before any process starts (exit 2 naming the key)."""
    from sliderstudio.engine.distributed import require_fsdp_family

    require_fsdp_family(family, file)
    if getattr(cfg, "offload_blocks", False):
        raise ConfigError("FSDP shards the denoiser over the processes' devices; offload_blocks streams it from "
                          "CPU memory: use one or the other", file=file, key="offload_blocks", value=True)
    if getattr(cfg, "controlnet", False):
        raise ConfigError("FSDP shards the denoiser; a ControlNet slider trains with num_processes alone",
                          file=file, key="fsdp_enable", value=True)
    if getattr(cfg, "base_model_precision", "no_change") != "no_change":
        raise ConfigError("FSDP shards an unquantised base; a quantised base is smaller already: use one or "
                          "the other", file=file, key="base_model_precision", value=cfg.base_model_precision)


def class_names(spec: str | None) -> tuple[str, ...]:
    return tuple(name.strip() for name in (spec or "").split(",") if name.strip())


def repeated_blocks(denoiser: torch.nn.Module, names: Sequence[str] = (), file: str | None = None
                    ) -> list[torch.nn.Module]:
    """The blocks to shard one by one: modules of the named classes, or by default every member of
    the denoiser's ModuleLists of two or more modules of one class (a transformer's block stacks).
    One block gathered at a time is what bounds the memory, hence blocks, not single layers."""
    if names:
        found = [m for m in denoiser.modules() if type(m).__name__ in names]
        if not found:
            present = sorted({type(m).__name__ for m in denoiser.modules()})
            raise ConfigError(f"no module of these classes in {type(denoiser).__name__} (it has e.g. "
                              f"{', '.join(present[:8])})", file=file, key="fsdp_transformer_layer_cls_to_wrap",
                              value=",".join(names))
        return outermost(found)
    stacks = [m for m in denoiser.modules() if isinstance(m, torch.nn.ModuleList) and len(m) >= 2
              and len({type(b) for b in m}) == 1]
    return outermost([block for stack in stacks for block in stack])


def outermost(modules: Iterable[torch.nn.Module]) -> list[torch.nn.Module]:
    """Drop modules nested inside another listed one (FSDP shards a module once)."""
    modules = list(modules)
    inner = {id(sub) for m in modules for sub in m.modules() if sub is not m}
    return [m for m in modules if id(m) not in inner]


def shard(denoiser: torch.nn.Module, keep: Sequence[torch.nn.Parameter], device: torch.device, world: int,
          cfg: Any, file: str | None = None) -> ShardReport:
    """Shard the denoiser's blocks, then its root, leaving `keep` (the slider's parameters) whole, through
    accelerate's FSDP2 plugin and its `fsdp2_prepare_model` (see `AccelerateView` for why not prepare())."""
    from accelerate import FullyShardedDataParallelPlugin
    from accelerate.utils import fsdp2_prepare_model
    from torch.distributed.device_mesh import init_device_mesh

    blocks = repeated_blocks(denoiser, class_names(cfg.fsdp_transformer_layer_cls_to_wrap), file)
    plugin = FullyShardedDataParallelPlugin(
        fsdp_version=2, reshard_after_forward=bool(cfg.fsdp_reshard_after_forward),
        auto_wrap_policy="transformer_based_wrap",
        transformer_cls_names_to_wrap=sorted({type(b).__name__ for b in blocks}),
        ignored_modules=owners(denoiser, keep))
    view = AccelerateView(plugin, init_device_mesh(device.type, (world,)), device)
    sharded = fsdp2_prepare_model(view, denoiser)
    if sharded is not denoiser:  # in place is what the families' direct calls rely on
        raise RuntimeError("accelerate's fsdp2_prepare_model returned another module than the denoiser")
    local, full = sharded_numel(denoiser)
    return ShardReport(len(blocks), world, local, full)


class AccelerateView:
    """What accelerate's `fsdp2_prepare_model` reads of an Accelerator: the FSDP2 plugin, the mesh, the
    device, the precision. Not an Accelerator because (measured, accelerate 1.15): on the CPU
    `Accelerator(cpu=True, fsdp_plugin=...)` drops the plugin (distributed_type MULTI_CPU; reading
    `state.fsdp_plugin` raises AttributeError), and on CUDA `Accelerator.prepare(model)` would also
    take the model over (and its optimizer, scheduler and data) where the families call their denoiser
    directly. The helper itself shards in place (the same module object, its forward untouched)."""

    def __init__(self, plugin: Any, mesh: Any, device: torch.device):
        from types import SimpleNamespace

        self.state = SimpleNamespace(fsdp_plugin=plugin)
        self.mesh = mesh
        self.device = device
        self.mixed_precision = "no"   # the slider's parameters stay float32; the frozen base keeps its dtype
        self.is_main_process = torch.distributed.get_rank() == 0
        self.parallelism_config = SimpleNamespace(fsdp_dim_names=())

    @property
    def torch_device_mesh(self) -> Any:
        return _WholeMesh(self.mesh)


class _WholeMesh:
    """accelerate indexes its mesh by the FSDP dimension names; ours is one dimension, all processes."""

    def __init__(self, mesh: Any):
        self.mesh = mesh

    def __getitem__(self, _names: tuple) -> Any:
        return self.mesh


def owners(module: torch.nn.Module, keep: Sequence[torch.nn.Parameter]) -> list[torch.nn.Module]:
    """The submodules that hold `keep` directly (the slider's LoRA layers): accelerate's plugin leaves
    modules, not parameters, out of the shards. None when the slider lives outside the denoiser (LyCORIS)."""
    wanted = {id(p) for p in keep}
    return [m for m in module.modules() if any(id(p) in wanted for p in m.parameters(recurse=False))]


def sharded_numel(module: torch.nn.Module) -> tuple[int, int]:
    """(elements this process holds, elements unsharded) of the module's sharded (DTensor) parameters."""
    from torch.distributed.tensor import DTensor

    local = full = 0
    for p in module.parameters():
        if isinstance(p, DTensor):
            local += p.to_local().numel()
            full += p.numel()
    return local, full


def stand_in(mb: MicroBatch) -> MicroBatch:
    """A micro-batch for a process whose share is empty: the bucket's first item, trained at zero
    weight, so this process joins the gathers of the others' forward and backward."""
    return replace(mb, items=(0,), stems=mb.stems[:1], positions=(0,))


def same_forwards(mbs: Sequence[MicroBatch], world: int) -> bool:
    """Whether every process has a share of each micro-batch (decided alike on every process, from the
    global sizes): only then may they fuse micro-batches into one forward, all the same way."""
    return all(not mb.global_size or mb.global_size >= world for mb in mbs)


def zero_weight_backward(loss_of: Callable[[MicroBatch], torch.Tensor], backward: Callable[[torch.Tensor], Any],
                         mb: MicroBatch) -> None:
    """The stand-in's forward and backward: the collectives run, its gradient contribution is zero."""
    backward(loss_of(stand_in(mb)) * 0.0)
