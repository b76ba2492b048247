"""Is the asked-for mixed precision slow on this device? Measured at set-up, said as a warning.

On the CPU the weights stay fp32 and bf16 autocast casts them at every op, so bf16 saves no weight
memory and, without AMX matrix units, costs time: one SDXL step took over 5 minutes under bf16
against 22 s in fp32 on such a CPU. Whether a CPU is slow at it is measured, not guessed from its
name: a small convolution + attention forward and backward, timed both ways (about 20-50 ms).
CPUs with AMX (`amx_bf16`) run bf16 natively and are not second-guessed.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

SLOW_RATIO = 1.1  # bf16 taking 10 % longer than fp32 is slower beyond timing noise
NATIVE_BF16_FLAGS = frozenset({"amx_bf16"})


def cpu_flags() -> set[str]:
    """The CPU's feature flags on Linux (`/proc/cpuinfo`); empty where they cannot be read."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def _training_like_step(channels: int = 32, side: int = 8) -> Callable[[bool], None]:
    """Conv + linear + attention, forward and backward, with fp32 weights: what a denoiser step does."""
    g = torch.Generator().manual_seed(0)
    w_conv = torch.randn(channels, channels, 3, 3, generator=g, requires_grad=True)
    w_lin = torch.randn(channels, channels, generator=g, requires_grad=True)
    x = torch.randn(1, channels, side, side, generator=g)

    def run(bf16: bool) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            h = F.conv2d(x, w_conv, padding=1).flatten(2).transpose(1, 2)
            q = F.linear(h, w_lin).view(1, side * side, 2, channels // 2).transpose(1, 2)
            out = F.scaled_dot_product_attention(q, q, q)
        out.float().square().mean().backward()
    return run


def bf16_autocast_ratio(reps: int = 3) -> tuple[float, float, float]:
    """(bf16 time / fp32 time, fp32 seconds, bf16 seconds): best of `reps` interleaved runs, one thread.

    One thread, because the number of interest is the work per op, and a loaded machine's thread
    scheduling would otherwise swamp it; interleaving and the minimum keep one slow moment from
    deciding.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run = _training_like_step()
        run(False)
        run(True)
        fp32, bf16 = [], []
        for _ in range(reps):
            for bf, times in ((False, fp32), (True, bf16)):
                start = time.perf_counter()
                run(bf)
                times.append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)
    return min(bf16) / min(fp32), min(fp32), min(bf16)


def precision_warning(mixed_precision: str, device: torch.device,
                      measure: Callable[[], tuple[float, float, float]] = bf16_autocast_ratio) -> str | None:
    """A warning when `mixed_precision` is slow (or does nothing) on `device`, with the measured alternative."""
    if mixed_precision == "no":
        return None
    if device.type == "cuda":
        if mixed_precision == "bf16" and not torch.cuda.is_bf16_supported():
            return ("mixed_precision 'bf16': this GPU has no native bf16; use 'fp16' (or 'no') for speed")
        return None
    if device.type != "cpu":
        return None
    if mixed_precision == "fp16":
        return "mixed_precision 'fp16' is not used on the CPU: training runs in fp32 (set mixed_precision 'no')"
    if NATIVE_BF16_FLAGS & cpu_flags():
        return None
    ratio, fp32_s, bf16_s = measure()
    if ratio <= SLOW_RATIO:
        return None
    return (f"mixed_precision 'bf16' is slow on this CPU (no AMX; the weights stay fp32 and are cast at every op): "
            f"a small training step took {bf16_s * 1e3:.2f} ms under bf16 against {fp32_s * 1e3:.2f} ms in fp32, so "
            f"mixed_precision 'no' ran {ratio:.1f}× faster here (set mixed_precision 'no')")
