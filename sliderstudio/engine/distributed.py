"""Training on several processes (devices) of one machine, started the way `accelerate launch` starts them.

Why this shape:
- The launcher is accelerate's own (`accelerate.commands.launch`, which hands over to torchrun's
  elastic agent); every collective is an accelerate call (`reduce`, `broadcast_object_list`). Nothing
  here opens a socket or spawns a worker itself.
- The slider cycle stays global: the sampler yields the same global micro-batches for any number of
  processes and each process trains its share of the items (`sampler.split_for_rank`). So every
  process trains the same group at a given micro-batch, noise is drawn per global item, and a run
  resumes on another process count with the same order of data.
- Gradients are summed with one all-reduce per optimizer step (the loss rides along in the same
  buffer): each process weighs its loss by its share of the global batch, so the sum is the gradient
  of the global mean, exactly what one process computes. Shares may be unequal or empty (a batch of 1
  on 2 processes), which torch's DistributedDataParallel wrapper cannot do (it needs a forward on
  every rank), and the families call their denoiser unwrapped.
- The main process alone writes (metrics, heartbeat, checkpoints, the adapter), renders validation
  and sends events; the others follow its commands (stop, pause, save, sample), broadcast each step.
- A process that dies ends the run: the agent stops the others within its monitor interval and the
  launcher names the process, its signal or exit status and the checkpoint a resume continues from.
  Collectives have a timeout as a backstop, so nothing waits forever.
"""
from __future__ import annotations

import os
import socket
import sys
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable, ContextManager, Sequence

from sliderstudio.kernel.errors import ConfigError, SliderStudioError
from sliderstudio.kernel.events import Command, Event, Failed, Log

TIMEOUT_ENV = "SLIDERSTUDIO_DIST_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 1800     # validation on the main process holds the others at the next collective
MONITOR_INTERVAL_S = 0.2     # how often the agent checks that every process is alive


@dataclass(frozen=True)
class Ranks:
    """Which process this is: torchrun's RANK / WORLD_SIZE / LOCAL_RANK, or one process."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


class LaunchFailed(SliderStudioError):
    """A training process died or failed: the run ended on every process (exit status 1)."""


def current_ranks() -> Ranks:
    """Read from the environment the launcher sets; one process when it is not set."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        return Ranks()
    return Ranks(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))


def in_worker() -> bool:
    """True inside a process the launcher started (so it must train, not launch again)."""
    return current_ranks().distributed


def available(kind: str) -> int:
    """How many processes this machine can give one device each: GPUs, or CPU cores."""
    if kind == "cuda":
        import torch

        return torch.cuda.device_count()
    return os.cpu_count() or 1


def check_num_processes(n: int, kind: str, file: str, found: int | None = None) -> None:
    """Refuse more processes than devices (GPUs for cuda, cores for cpu): exit 2 naming the count found."""
    if kind not in ("cuda", "cpu"):
        raise ConfigError(f"several processes train on cuda or cpu devices, not '{kind}'", file=file,
                          key="num_processes", value=n)
    found = available(kind) if found is None else found
    if n > found:
        what = "CUDA devices" if kind == "cuda" else "CPU cores"
        raise ConfigError(f"{n} processes asked for, but this machine has {found} {what}", file=file,
                          key="num_processes", value=n)


def require_fsdp_family(family: Any, file: str | None = None) -> None:
    """FSDP shards a transformer's blocks; a UNet (or Stable Cascade's prior) family cannot: exit 2."""
    if family.denoiser_name != "transformer":
        raise ConfigError(f"FSDP shards the blocks of a transformer denoiser; {family.label} has a "
                          f"{family.denoiser_name}: train it with num_processes alone (every process holds the "
                          "whole model) or the memory options", file=file, key="fsdp_enable", value=True)


def check_launch(project: Any, family: Any, kind: str, processes: int | None = None) -> None:
    """What a run on `processes` (default num_processes) processes needs, checked before any process
    starts (exit 2)."""
    cfg = project.config
    processes = cfg.num_processes if processes is None else processes
    check_num_processes(processes, kind, str(project.config_path))
    if getattr(cfg, "fsdp_enable", False):  # the frozen denoiser sharded over the processes (engine.fsdp)
        from sliderstudio.engine.fsdp import check_options

        check_options(cfg, family, str(project.config_path))
    if cfg.train_batch_size % processes:
        print(f"warning: train_batch_size {cfg.train_batch_size} is not a multiple of num_processes "
              f"{processes}: the global micro-batch is split unevenly and some processes idle for "
              "part of each step", file=sys.stderr, flush=True)


def process_group_timeout() -> timedelta:
    return timedelta(seconds=float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT_S)))


def join_processes(device: Any) -> None:
    """Several processes: start the process group (gloo on the CPU, NCCL on GPUs) at the start of
    set-up, so they meet before the model loads and a missing one shows at once, not after minutes."""
    if not current_ranks().distributed:
        return
    from accelerate import PartialState

    PartialState(cpu=device.type == "cpu", timeout=process_group_timeout())


def main_process_first() -> ContextManager:
    """The main process goes first (it fills the caches), the others follow and read them."""
    if not current_ranks().distributed:
        return nullcontext()
    from accelerate import PartialState

    return PartialState().main_process_first()


def free_port() -> int:
    """A free TCP port on this machine for the processes' rendezvous."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_arguments(n: int, kind: str, port: int, command: Sequence[str], devices: Sequence[str] = ()) -> list[str]:
    """`accelerate launch` arguments that run `python -m sliderstudio <command>` on n processes
    (`devices`: the launcher's device options, e.g. --gpu_ids 0,2 from config.device_choice)."""
    args = [*devices, "--multi_gpu", "--num_processes", str(n), "--num_machines", "1", "--mixed_precision", "no",
            "--dynamo_backend", "no", "--main_process_ip", "127.0.0.1", "--main_process_port", str(port),
            "--monitor_interval", str(MONITOR_INTERVAL_S), "--max_restarts", "0"]
    if kind == "cpu":
        args += ["--num_cpu_threads_per_process", str(max(1, (os.cpu_count() or 1) // n))]
    return args + ["-m", "sliderstudio", *command]


def launch(n: int, kind: str, command: Sequence[str], output_dir: Path, devices: Sequence[str] = ()) -> None:
    """Run the training command on n processes and wait; LaunchFailed says which process ended how.

    The processes inherit this one's stdin, stdout and stderr: the main process speaks the event
    wire (`train --events`) and reads the app's commands, the others stay silent on stdout.
    """
    from accelerate.commands.launch import launch_command, launch_command_parser

    args = launch_command_parser().parse_args(launch_arguments(n, kind, free_port(), command, devices))
    from torch.distributed.elastic.multiprocessing.api import SignalException

    try:
        launch_command(args)
    except SignalException:
        return  # stopped from outside (the app, a person): the processes stopped and kept their checkpoint
    except Exception as exc:  # noqa: BLE001 - ChildFailedError, or the agent's own failure
        raise LaunchFailed(failure_message(exc, n, output_dir)) from exc


def failure_message(exc: BaseException, n: int, output_dir: Path) -> str:
    """Which process ended how, and where a resume continues: the one message of a failed run."""
    from sliderstudio.engine import checkpoints

    first = getattr(exc, "get_first_failure", None)
    if first is not None:
        rank, failure = first()
        signal_name = failure.signal_name() if failure.exitcode < 0 else ""
        how = f"was killed by {signal_name}" if signal_name else f"ended with exit status {failure.exitcode}"
        what = f"training process {rank} of {n} (pid {failure.pid}) {how}; the other processes were stopped"
    else:
        what = f"the {n} training processes could not run ({type(exc).__name__}: {exc})"
    latest = checkpoints.latest_checkpoint(output_dir)
    resume = (f"the last checkpoint is {latest.name}: train again with resume_from_checkpoint 'latest' to "
              "continue from it" if latest else "no checkpoint was written yet")
    return f"{what}; {resume}"


def rank_sink(ranks: Ranks) -> Callable[[Event], None]:
    """Events of a process other than the main one: only its failures and warnings, on stderr."""
    def sink(event: Event) -> None:
        if isinstance(event, Failed):
            print(f"[process {ranks.rank}] error: {event.message}", file=sys.stderr, flush=True)
        elif isinstance(event, Log) and event.level == "warning":
            print(f"[process {ranks.rank}] warning: {event.message}", file=sys.stderr, flush=True)
    return sink


def share_command(accelerator: Any, command: Command | None) -> Command | None:
    """The main process's command (or None), the same on every process: all act on it together."""
    from accelerate.utils import broadcast_object_list

    box = [command.value if command is not None else None]
    broadcast_object_list(box, from_process=0)
    return Command(box[0]) if box[0] is not None else None


def share_path(path: Path | None) -> Path | None:
    """The main process's answer (the checkpoint to resume from), the same on every process."""
    from accelerate.utils import broadcast_object_list

    box = [str(path) if path is not None else None]
    broadcast_object_list(box, from_process=0)
    return Path(box[0]) if box[0] is not None else None


def sum_gradients(accelerator: Any, params: Sequence[Any], local_loss: float) -> float:
    """Sum every process's adapter gradients and loss share in one all-reduce; return the global loss.

    Each process weighed its loss by its share of the global batch, so the sum is the global mean's
    gradient; afterwards every process holds the same gradients and takes the same optimizer step.
    """
    import torch

    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    device = grads[0].device
    had = [1.0 if p.grad is not None else 0.0 for p in params]  # a gradient on any process: keep one
    flat = torch.cat([g.reshape(-1).float() for g in grads] +
                     [torch.tensor(had + [local_loss], dtype=torch.float32, device=device)])
    flat = accelerator.reduce(flat, reduction="sum")
    offset, flags = 0, flat[-1 - len(params):-1].tolist()
    for p, g, flag in zip(params, grads, flags):
        n = g.numel()
        # None stays None everywhere (an optimizer skips it), as it would in one process
        p.grad = flat[offset:offset + n].view_as(g).to(g.dtype) if flag > 0 else None
        offset += n
    return float(flat[-1])


def is_peer_failure(exc: BaseException) -> bool:
    """A collective that failed because another process went away (the launcher reports that one)."""
    text = str(exc)
    return current_ranks().distributed and isinstance(exc, RuntimeError) and any(
        word in text for word in ("gloo", "NCCL", "Connection reset", "Connection closed", "timed out"))
