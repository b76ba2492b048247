"""Render one prompt and seed at several slider strengths in one batched call (SPEC §6).

Every strength gets the same initial noise; a per-sample adapter scale lets them share one forward
per denoising step. With a start fraction the slider is off for the first part of the denoising
and on afterwards, which keeps the composition of all strengths the same.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

from PIL import Image, ImageDraw

from sliderstudio.core import adapter_io, atomic
from sliderstudio.core.adapters import SLIDER, PerSampleScale, lora_layers
from sliderstudio.core.checkpoints import list_checkpoints
from sliderstudio.families.base import Family
from sliderstudio.families.loading import load_pipeline
from sliderstudio.families.registry import get_family


def render_strengths(family: Family, pipe: Any, prompts: list[str], strengths: list[float], seed: int,
                     steps: int, guidance: float, size: int, start_fraction: float = 0.0,
                     negative_prompt: str | None = None,
                     on_step: Callable[[int, int], None] | None = None) -> list[Image.Image]:
    """prompts[i] is rendered at strengths[i]; all from `seed`. One pipeline call."""
    denoiser = family.denoiser(pipe)
    if not any(SLIDER in layer.lora_A for layer in lora_layers(denoiser)):
        return family.render(pipe, prompts, seed, steps, guidance, size, negative_prompt, on_step)
    start_step = min(steps, math.ceil(start_fraction * steps)) if start_fraction > 0 else 0
    with PerSampleScale(denoiser, strengths) as scale:
        if start_step:
            scale.values.zero_()

        def step_done(done: int, total: int) -> None:
            if done == start_step:
                scale.values.copy_(scale.values.new_tensor(strengths))
            if on_step:
                on_step(done, total)

        return family.render(pipe, prompts, seed, steps, guidance, size, negative_prompt, step_done)


def delete_adapter(denoiser: Any, name: str) -> None:
    """Remove one adapter from every layer (PEFT), so a newer checkpoint can take its place."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    for module in denoiser.modules():
        if isinstance(module, BaseTunerLayer) and name in getattr(module, "lora_A", {}):
            module.delete_adapter(name)
    config = getattr(denoiser, "peft_config", None)
    if isinstance(config, dict):
        config.pop(name, None)


def latest_adapter(output_dir: Path) -> Path | None:
    """The newest adapter of a run: the final file, or the latest checkpoint's while training."""
    candidates = [output_dir / adapter_io.ADAPTER_NAME]
    candidates += [c / adapter_io.ADAPTER_NAME for c in list_checkpoints(output_dir)]
    existing = [c for c in candidates if c.exists()]
    return max(existing, key=lambda p: p.stat().st_mtime_ns) if existing else None


class PreviewRenderer:
    """Holds a loaded pipeline so that repeated previews (the app's A/B view) cost only the render."""

    def __init__(self, family: str, model_path: str, lora_path: str | Path | None = None):
        self.family = get_family(family)
        self.pipe = load_pipeline(self.family, model_path)
        self.lora_path: Path | None = None
        if lora_path:
            self.load_lora(lora_path)

    def load_lora(self, path: str | Path) -> None:
        """Load (or swap to) an adapter file through diffusers' own loader."""
        path = Path(path)
        adapter_io.read_metadata(path)  # refuses pickles and unreadable files with a clear error
        denoiser = self.family.denoiser(self.pipe)
        if self.lora_path is not None:
            delete_adapter(denoiser, SLIDER)
        if hasattr(self.pipe, "load_lora_weights"):
            self.pipe.load_lora_weights(str(path), adapter_name=SLIDER)
        else:
            adapter_io.load_into(denoiser, self.family.denoiser_name, path, SLIDER)
        self.lora_path = path

    def render(self, prompt: str, seed: int, strengths: list[float], steps: int = 20, guidance: float = 2.0,
               start_fraction: float = 0.0, size: int | None = None, negative_prompt: str | None = None,
               on_step: Callable[[int, int], None] | None = None) -> list[Image.Image]:
        size = size or self.family.default_size(self.pipe)
        return render_strengths(self.family, self.pipe, [prompt] * len(strengths), list(strengths), seed, steps,
                                guidance, size, start_fraction, negative_prompt, on_step)


def grid(images: list[Image.Image], labels: list[str], columns: int | None = None) -> Image.Image:
    """Images in a row (or rows of `columns`), each with its label underneath."""
    columns = columns or len(images)
    w, h = images[0].size
    label_h = 14
    rows = math.ceil(len(images) / columns)
    sheet = Image.new("RGB", (columns * w, rows * (h + label_h)), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (im, label) in enumerate(zip(images, labels)):
        x, y = (i % columns) * w, (i // columns) * (h + label_h)
        sheet.paste(im, (x, y))
        draw.text((x + 2, y + h + 1), label, fill="black")
    return sheet


def save_image(image: Image.Image, path: Path) -> None:
    atomic.write_with(path, lambda tmp: image.save(tmp, format="PNG"))
