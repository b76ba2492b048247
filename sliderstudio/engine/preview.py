"""Render one prompt and seed at several slider strengths in one batched call (SPEC §6).

Every strength gets the same initial noise; a per-sample adapter scale lets them share one forward
per denoising step. With a start fraction the slider is off for the first part of the denoising
and on afterwards, which keeps the composition of all strengths the same. An adapter whose output
is not linear in its strength (a foreign LyCORIS file with DoRA-style decomposition) renders one
call per strength instead, with the same seed, so the images still line up.

Adapters are loaded by our own code for every kind (`slider_adapter.load_slider`), LoRA files made
by other tools through diffusers' loader where the pipeline has one.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

import torch
from PIL import Image, ImageDraw

from sliderstudio.kernel.build_lock import BUILD_LOCK
from sliderstudio.adapters import adapter_io
from sliderstudio.kernel import atomic
from sliderstudio.adapters.adapters import SLIDER
from sliderstudio.engine.checkpoints import list_checkpoints
from sliderstudio.kernel.errors import InputError
from sliderstudio.engine.quantise import NO_CHANGE, loading_config, quantise_base, require_runnable
from sliderstudio.adapters.slider_adapter import PeftSlider, SliderAdapter, attached, file_kind, load_slider
from sliderstudio.families.base import Family
from sliderstudio.families.loading import load_pipeline

StepHook = Callable[[int, int], None]


def render_strengths(family: Family, pipe: Any, prompts: list[str], strengths: list[float], seed: int,
                     steps: int, guidance: float, size: int, start_fraction: float = 0.0,
                     negative_prompt: str | None = None, on_step: StepHook | None = None,
                     adapter: SliderAdapter | None = None) -> list[Image.Image]:
    """prompts[i] is rendered at strengths[i]; all from `seed`. One pipeline call where the adapter allows."""
    adapter = adapter or attached(family.denoiser(pipe))
    if adapter is None:
        return family.render(pipe, prompts, seed, steps, guidance, size, negative_prompt, on_step)
    if adapter.batched:
        return _render_scaled(family, pipe, adapter, prompts, strengths, seed, steps, guidance, size,
                              start_fraction, negative_prompt, on_step)
    images: list[Image.Image] = []
    for k, (prompt, strength) in enumerate(zip(prompts, strengths)):
        hook = (lambda done, total, k=k: on_step(done + k * total, total * len(prompts))) if on_step else None
        images += _render_scaled(family, pipe, adapter, [prompt], [strength], seed, steps, guidance, size,
                                 start_fraction, negative_prompt, hook)
    return images


def _render_scaled(family: Family, pipe: Any, adapter: SliderAdapter, prompts: list[str], strengths: list[float],
                   seed: int, steps: int, guidance: float, size: int, start_fraction: float,
                   negative_prompt: str | None, on_step: StepHook | None) -> list[Image.Image]:
    start_step = min(steps, math.ceil(start_fraction * steps)) if start_fraction > 0 else 0
    with adapter.per_sample(strengths) as scale:
        if start_step:
            scale.values.zero_()

        def step_done(done: int, total: int) -> None:
            if done == start_step:
                scale.values.copy_(scale.values.new_tensor(strengths))
            if on_step:
                on_step(done, total)

        return family.render(pipe, prompts, seed, steps, guidance, size, negative_prompt, step_done)


def latest_adapter(output_dir: Path) -> Path | None:
    """The newest adapter of a run: the final file, or the latest checkpoint's while training."""
    candidates = [output_dir / adapter_io.ADAPTER_NAME]
    candidates += [c / adapter_io.ADAPTER_NAME for c in list_checkpoints(output_dir)]
    existing = [c for c in candidates if c.exists()]
    return max(existing, key=lambda p: p.stat().st_mtime_ns) if existing else None


class PreviewRenderer:
    """Holds a loaded pipeline so that repeated previews (the app's A/B view) cost only the render.

    A slider trained on a ControlNet renders through diffusers' ControlNet pipeline with a
    conditioning image (`control_image`, or `set_control_image` later); the ControlNet comes from
    `controlnet` or from the adapter's own metadata.
    """

    def __init__(self, family: Family, model_path: str, lora_path: str | Path | None = None,
                 controlnet: str | Path | None = None, control_image: str | Path | None = None,
                 base_model_precision: str = NO_CHANGE):
        self.family = family
        scheme = require_runnable(base_model_precision, torch.device("cpu"))  # refused before any weight loads
        self.pipe = load_pipeline(self.family, model_path,
                                  quantization_config=loading_config(scheme, self.family.denoiser_name))
        quantise_base(self.family.denoiser(self.pipe), base_model_precision, scheme, lambda _msg, _level: None)
        self.lora_path: Path | None = None
        self.adapter: SliderAdapter | None = None
        self.controlnet_path = Path(controlnet) if controlnet else None
        self.control_image_path = Path(control_image) if control_image else None
        self._control_pipe: Any = None
        self.companions: list[tuple[Path, SliderAdapter, float]] = []   # composed sliders (composition.py)
        if lora_path:
            self.load_lora(lora_path)

    def load_lora(self, path: str | Path) -> None:
        """Load (or swap to) an adapter file: LoRA or LyCORIS, on the denoiser or on a ControlNet."""
        path = Path(path)
        meta = adapter_io.read_metadata(path)  # refuses pickles and unreadable files with a clear error
        trained_for = meta.get("family")
        if trained_for and not self.family.answers_to(str(trained_for)):
            raise InputError(f"this adapter was trained for '{trained_for}' (its metadata) but the model is "
                             f"'{self.family.id}'", file=path, key="family")
        if self.adapter is not None:
            self.adapter.remove()
            self.adapter = None
        host, host_name = self._host_for(meta)
        if host_name != "controlnet" and file_kind(path) == "standard" and hasattr(self.pipe, "load_lora_weights"):
            with BUILD_LOCK:
                self.pipe.load_lora_weights(str(path), adapter_name=SLIDER)
            self.adapter = PeftSlider(host, host_name)
        else:
            from sliderstudio.engine.composition import peft_unwrapped

            with peft_unwrapped(host):   # LyCORIS beside composed PEFT sliders (no-op without them)
                self.adapter = load_slider(path, host, host_name)
        self.lora_path = path
        if self.companions:   # a loader may have switched the composed sliders' PEFT adapters off
            from sliderstudio.engine.composition import activate_all

            activate_all(self.family.denoiser(self.pipe))

    def set_companions(self, items: list[tuple[str | Path, float]]) -> None:
        """More sliders rendered with every image, each at its own strength (composition).

        Only a change of files reloads them; a new strength alone costs nothing. They sit on the
        denoiser beside the main adapter, so a ControlNet slider cannot be composed.
        """
        from sliderstudio.engine.composition import load_companion

        paths = [Path(p) for p, _ in items]
        if paths != [p for p, _, _ in self.companions]:
            if paths and self._control_pipe is not None:
                raise InputError("a slider trained on a ControlNet cannot be composed with others", key="--lora")
            for _, handle, _ in reversed(self.companions):
                handle.remove()
            self.companions = []
            try:
                for k, path in enumerate(paths):
                    self.companions.append((path, load_companion(self.family, self.pipe, path, k), 0.0))
            except Exception:   # nothing half-loaded stays on the model
                self.set_companions([])
                raise
        self.companions = [(p, h, float(s)) for (p, h, _), (_, s) in zip(self.companions, items)]

    def _host_for(self, meta: dict[str, Any]) -> tuple[Any, str]:
        if not meta.get("controlnet") and self.controlnet_path is None:
            self._control_pipe = None
            return self.family.denoiser(self.pipe), self.family.denoiser_name
        from sliderstudio.adapters.controlnet import control_pipeline, load_controlnet

        source = self.controlnet_path or Path(meta.get("controlnet_model") or "")
        if not (source / "config.json").exists():
            raise InputError("this adapter was trained on a ControlNet; give its folder (--controlnet)",
                             file=source, key="controlnet")
        denoiser = self.family.denoiser(self.pipe)
        if self.family.controlnet is None:
            raise InputError(f"this adapter was trained on a ControlNet, which {self.family.label} does not support",
                             key="controlnet")
        controlnet = load_controlnet(self.family, source, denoiser.dtype, denoiser.device)
        self._control_pipe = control_pipeline(self.family, self.pipe, controlnet)
        return controlnet, "controlnet"

    def _render_pipe(self, size: int) -> Any:
        if self._control_pipe is None:
            return self.pipe
        if self.control_image_path is None:
            raise InputError("this adapter was trained on a ControlNet: a control image is needed",
                             key="--control-image")
        from sliderstudio.adapters.controlnet import ControlPipe, load_control_image

        return ControlPipe(self._control_pipe, load_control_image(self.control_image_path, size),
                           self.family.controlnet.image_kwarg)

    def render(self, prompt: str, seed: int, strengths: list[float], steps: int = 20, guidance: float = 2.0,
               start_fraction: float = 0.0, size: int | None = None, negative_prompt: str | None = None,
               on_step: StepHook | None = None) -> list[Image.Image]:
        size = size or self.family.default_size(self.pipe)
        if self.companions:
            from sliderstudio.engine.composition import render_rows

            sliders = ([self.adapter] if self.adapter else []) + [h for _, h, _ in self.companions]
            fixed = [s for _, _, s in self.companions]
            rows = [([s] if self.adapter else []) + fixed for s in strengths]
            return render_rows(self.family, self._render_pipe(size), sliders, rows, [prompt] * len(strengths),
                               seed, steps, guidance, size, start_fraction, negative_prompt, on_step)
        return render_strengths(self.family, self._render_pipe(size), [prompt] * len(strengths), list(strengths),
                                seed, steps, guidance, size, start_fraction, negative_prompt, on_step,
                                adapter=self.adapter)


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
