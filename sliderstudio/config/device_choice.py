"""Which devices a run trains on: the `devices` choice (cpu, one GPU, some GPUs, all GPUs) and the launch
it makes (how many processes, which GPUs they see).

Why this shape:
- One value says it all, the same in the config, on the command line (`--devices`) and in the app:
  `cpu`, a GPU index (`1`), a list (`0,2`), `all`, or nothing (the old default: a GPU when there is
  one, num_processes of them). SimpleTuner has no key for it (it leaves the GPUs to accelerate's
  config, whose `gpu_ids` we pass), so it is a key of ours; `num_processes` stays SimpleTuner's.
- Several GPUs are handed to accelerate's launcher as `--gpu_ids`, which sets CUDA_VISIBLE_DEVICES
  for the processes: process k then trains on cuda:k, the k-th chosen GPU. One GPU needs no launcher:
  the one process trains on cuda:<index>.
- The GPUs are read once from torch (index, name, memory) by `detect_gpus`; everything else takes
  the list as an argument, so the rules are tested without a GPU.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

from sliderstudio.kernel.errors import ConfigError

CPU, ALL = "cpu", "all"
_INDICES = re.compile(r"^\d+(,\d+)*$")


@dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    memory: int  # bytes

    def label(self) -> str:
        return f"GPU {self.index} · {self.name} · {self.memory / 2**30:.0f} GiB"


@dataclass(frozen=True)
class LaunchPlan:
    """How `train` starts: `processes` processes on `kind` devices; `gpu_ids` the chosen GPUs (None: the
    launcher's default, every visible one); `device` the `--device` of the process(es): in several, each takes cuda:<its local rank>."""

    kind: str
    processes: int
    gpu_ids: tuple[int, ...] | None = None
    device: str | None = None

    @property
    def launched(self) -> bool:
        """Several processes, started by accelerate's launcher; one runs in this process."""
        return self.processes > 1

    def environment(self) -> dict[str, str]:
        """What the launched processes' environment gains: the chosen GPUs, renumbered from 0 (one
        process gains nothing: it trains on cuda:<index> itself)."""
        if not self.launched or not self.gpu_ids:
            return {}
        return {"CUDA_VISIBLE_DEVICES": ",".join(map(str, self.gpu_ids))}

    def launcher_arguments(self) -> list[str]:
        """accelerate launch's own option for the same thing (it sets the variable above)."""
        if not self.launched or not self.gpu_ids:
            return []
        return ["--gpu_ids", ",".join(map(str, self.gpu_ids))]


def detect_gpus() -> list[Gpu]:
    """The CUDA GPUs torch sees, by index (none without CUDA)."""
    import torch

    if not torch.cuda.is_available():
        return []
    gpus = []
    for index in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(index)
        gpus.append(Gpu(index, props.name, int(props.total_memory)))
    return gpus


def normalise(value: str | None, file: str | None = None) -> str | None:
    """The canonical spelling of a `devices` value (spaces dropped, lower case); exit 2 naming it if
    it is none of cpu, all, or GPU indices separated by commas, or names a GPU twice."""
    if value is None:
        return None
    text = str(value).replace(" ", "").lower()
    if text in ("", "auto"):
        return None
    if text in (CPU, ALL):
        return text
    if not _INDICES.match(text):
        raise ConfigError("devices is cpu, all, a GPU index such as 0, or indices such as 0,1",
                          file=file, key="devices", value=value)
    indices = [int(i) for i in text.split(",")]
    if len(set(indices)) != len(indices):
        raise ConfigError("a GPU is named twice", file=file, key="devices", value=value)
    return ",".join(map(str, indices))


def chosen_gpus(value: str, gpus: Sequence[Gpu], file: str | None = None) -> tuple[int, ...]:
    """The GPU indices `value` (all, or a list) names; exit 2 naming a GPU this machine does not have."""
    found = [g.index for g in gpus]
    if value == ALL:
        if not found:
            raise ConfigError("all GPUs asked for, but this machine has no CUDA device", file=file,
                              key="devices", value=value)
        return tuple(found)
    indices = tuple(int(i) for i in value.split(","))
    missing = [i for i in indices if i not in found]
    if missing:
        have = f"{len(found)} CUDA device{'s' if len(found) != 1 else ''}" + \
            (f" ({', '.join(map(str, found))})" if found else "")
        raise ConfigError(f"GPU {missing[0]} does not exist: this machine has {have}", file=file,
                          key="devices", value=value)
    return indices


def plan_launch(devices: str | None, num_processes: int, requested: str | None, gpus: Sequence[Gpu] | None = None,
                file: str | None = None) -> LaunchPlan:
    """The launch for the project's `devices` and `num_processes` and `--device` (exit 2 on a conflict).

    With GPUs chosen, one process trains on each: num_processes is their count (1, the default, follows
    the choice; any other count that differs is refused, more processes than devices included).
    """
    value = normalise(devices, file)
    if value is None:
        return LaunchPlan(device_kind(requested), num_processes, None, requested)
    if requested:
        raise ConfigError(f"--device {requested} and devices '{value}' both choose the device: use one of them",
                          file=file, key="devices", value=devices)
    if value == CPU:
        return LaunchPlan("cpu", num_processes, None, "cpu")
    ids = chosen_gpus(value, detect_gpus() if gpus is None else gpus, file)
    if num_processes not in (1, len(ids)):
        raise ConfigError(f"{num_processes} processes asked for, but devices '{value}' names {len(ids)} GPU"
                          f"{'s' if len(ids) != 1 else ''}: one process trains on each chosen GPU",
                          file=file, key="num_processes", value=num_processes)
    if len(ids) == 1:
        return LaunchPlan("cuda", 1, ids, f"cuda:{ids[0]}")
    return LaunchPlan("cuda", len(ids), ids, "cuda")


def options(gpus: Sequence[Gpu]) -> list[tuple[str | None, str]]:
    """What the app offers, as (devices value, label): automatic, the CPU, each GPU, and all of them."""
    found = [(None, "Automatic (a GPU when there is one)"), (CPU, "CPU")]
    found += [(str(g.index), g.label()) for g in gpus]
    if len(gpus) > 1:
        total = sum(g.memory for g in gpus) / 2**30
        found.append((ALL, f"All {len(gpus)} GPUs · {total:.0f} GiB"))
    return found


def process_count(value: str | None, gpus: Sequence[Gpu]) -> int | None:
    """The process count a GPU choice implies (one per GPU); None where the count stays the user's."""
    value = normalise(value)
    if value is None or value == CPU:
        return None
    if value == ALL:
        return max(1, len(gpus))
    return len(value.split(","))


def device_kind(device: str | None) -> str:
    """'cuda' or 'cpu': the kind of device the processes train on (cuda when available by default)."""
    if device:
        return "cuda" if device.startswith("cuda") else device.split(":")[0]
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
