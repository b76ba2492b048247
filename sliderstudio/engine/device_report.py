"""Which device a run trains on and how much memory it uses: the `Device` event's figures.

Read often (every few seconds of a run), so every figure here is a cheap query: the CUDA
driver's free/total and torch's own allocator counter (no stream synchronisation), and on the
CPU two small files under /proc. psutil is used only when /proc is missing (macOS, Windows) and
psutil happens to be installed; without either, the CPU figures are None rather than guessed.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from sliderstudio.kernel.events import Device

PROC_MEMINFO = Path("/proc/meminfo")
PROC_STATM = Path("/proc/self/statm")


def device_label(device: torch.device) -> str:
    """The name a person recognises: the GPU's model and its torch index, or the CPU's thread count."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"{torch.cuda.get_device_name(index)} (cuda:{index})"
    if device.type == "cpu":
        return f"CPU ({torch.get_num_threads()} threads)"
    return str(device).upper() if device.type == "mps" else str(device)


def device_report(device: torch.device, step: int = 0) -> Device:
    """The `Device` event for `device` now."""
    if device.type == "cuda":
        return _cuda_report(device, step)
    if device.type == "mps":
        return _mps_report(device, step)
    used, free, total = system_memory()
    return Device(device_label(device), device.type, used, free, total, process_rss(), step)


def _cuda_report(device: torch.device, step: int) -> Device:
    index = device.index if device.index is not None else torch.cuda.current_device()
    free, total = torch.cuda.mem_get_info(index)
    return Device(device_label(device), "cuda", total - free, free, total, torch.cuda.memory_reserved(index), step)


def _mps_report(device: torch.device, step: int) -> Device:
    """Apple GPUs share system RAM: the device figures are the system's, the run's share is MPS's."""
    used, free, total = system_memory()
    return Device(device_label(device), "mps", used, free, total, torch.mps.driver_allocated_memory(), step)


def system_memory(meminfo: Path = PROC_MEMINFO) -> tuple[int | None, int | None, int | None]:
    """(used, available, total) RAM in bytes; `used` = total − available, as `free -h` counts it."""
    fields = _read_meminfo(meminfo)
    if "MemTotal" in fields and "MemAvailable" in fields:
        total, free = fields["MemTotal"], fields["MemAvailable"]
        return total - free, free, total
    try:
        import psutil
    except ImportError:
        return None, None, None
    vm = psutil.virtual_memory()
    return vm.total - vm.available, vm.available, vm.total


def process_rss(statm: Path = PROC_STATM) -> int | None:
    """This process's resident memory in bytes (the second field of /proc/self/statm, in pages)."""
    try:
        pages = int(statm.read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, IndexError, ValueError):
        pass
    try:
        import psutil
    except ImportError:
        return None
    return psutil.Process().memory_info().rss


def _read_meminfo(path: Path) -> dict[str, int]:
    """/proc/meminfo as bytes by key ("MemTotal:  16318164 kB")."""
    try:
        text = path.read_text()
    except OSError:
        return {}
    out = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            out[key] = int(parts[0]) * (1024 if parts[1:] == ["kB"] else 1)
    return out
