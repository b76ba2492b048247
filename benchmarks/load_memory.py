"""Peak RAM while loading a model, against the bytes of its weights in the target precision.

`python benchmarks/load_memory.py [--folder DIR]` builds (once) an SD 1.x pipeline folder whose UNet is
mid-size (~130 M parameters, ~500 MB of fp32 safetensors), then loads it through Slider Studio's own
loader in fresh processes: fp32, bf16, and an int8 base (base_model_precision) quantised while
loading, from bf16 or fp32, or (`-after`) quantised after a bf16 load. Each prints the
peak RSS growth during the load (VmHWM after /proc/self/clear_refs, minus RSS before) next to the
weight bytes the loaded pipeline holds. A loader that made a full-precision copy first would show a
peak near fp32 bytes + target bytes; one that loads straight into the target dtype stays near the
target bytes.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

MODES = ("fp32", "bf16", "bf16+int8", "fp32+int8", "bf16+int8-after")


def rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


class AnonPeak:
    """Samples RssAnon every 2 ms: the memory the process itself allocated, without the file pages of
    the mmap'd safetensors (page cache the kernel can drop, which VmHWM counts too)."""

    def __enter__(self) -> "AnonPeak":
        self.peak = rss_kib("RssAnon")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, rss_kib("RssAnon"))

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_kib("RssAnon"))


def build(folder: Path, width: int = 128) -> Path:
    """A tiny SD 1.x pipeline with its UNet swapped for a bigger one (random weights, fp32 on disk);
    `width` 128 gives ~500 MB of fp32 weights, 64 about a quarter of that."""
    if (folder / "model_index.json").exists():
        return folder
    import torch
    from diffusers import UNet2DConditionModel

    from sliderstudio.families.tiny import build_tiny_sd

    build_tiny_sd(folder, "sd1x")
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=2,
        block_out_channels=(width, 2 * width, 4 * width, 4 * width), cross_attention_dim=32, attention_head_dim=8,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3)
    unet.save_pretrained(folder / "unet", safe_serialization=True)
    return folder


def measure(folder: Path, mode: str) -> dict:
    """Load in this process (called in a fresh one per mode) and report peak RSS growth vs weight bytes."""
    import torch

    from sliderstudio.engine.quantise import SUPPORTED, loading_config, quantise_module, weight_bytes
    from sliderstudio.families.loading import load_pipeline
    from sliderstudio.families.registry import get_family

    family = get_family("sd1x")
    family.pipeline_class  # import diffusers' pipeline module now: the window measures the load, not imports
    torch.set_num_threads(2)
    before, anon_before = rss_kib("VmRSS"), rss_kib("RssAnon")
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    with AnonPeak() as anon:
        scheme = SUPPORTED["int8-torchao"] if "+int8" in mode else None
        during = loading_config(scheme, family.denoiser_name) if not mode.endswith("-after") else None
        pipe = load_pipeline(family, str(folder), torch.float32 if mode.startswith("fp32") else torch.bfloat16,
                             quantization_config=during)
        if scheme is not None:
            quantise_module(family.denoiser(pipe), scheme)  # what the loader left in float (all, for -after)
    peak = rss_kib("VmHWM")
    after = rss_kib("VmRSS")
    modules = [m for m in pipe.components.values() if isinstance(m, torch.nn.Module)]
    return {"mode": mode, "weight_mb": sum(weight_bytes(m) for m in modules) / 2**20,
            "peak_delta_mb": (peak - before) / 1024, "after_delta_mb": (after - before) / 1024,
            "anon_peak_delta_mb": (anon.peak - anon_before) / 1024}


def file_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*.safetensors")) / 2**20


def run_all(folder: Path, modes: tuple[str, ...] = MODES) -> list[dict]:
    """Each mode in a fresh process, so one load's freed-but-kept heap can't hide the next one's peak."""
    rows = []
    for mode in modes:
        out = subprocess.run([sys.executable, __file__, "--folder", str(folder), "--one", mode],
                             check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, help="model folder (built here when missing)")
    parser.add_argument("--one", choices=MODES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.folder, args.one)))
        return
    folder = build(args.folder or Path(tempfile.gettempdir()) / "sliderstudio-load-memory-model")
    print(f"model: {folder} ({file_mb(folder):.0f} MB of fp32 safetensors)")
    print("| load as | weight MB | peak anon growth MB | anon peak / weights | peak RSS growth MB "
          "(incl. mmap'd file pages) | RSS growth after MB |")
    print("|---|---|---|---|---|---|")
    for r in run_all(folder):
        print(f"| {r['mode']} | {r['weight_mb']:.0f} | {r['anon_peak_delta_mb']:.0f} | "
              f"{r['anon_peak_delta_mb'] / r['weight_mb']:.2f} | {r['peak_delta_mb']:.0f} | "
              f"{r['after_delta_mb']:.0f} |")


if __name__ == "__main__":
    main()
