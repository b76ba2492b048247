"""Several sliders at once, each at its own strength (issue #16 item 4).

A composition renders one batch with every slider scaled per sample: image j has slider i at
`rows[j][i]`. LoRA (PEFT) sliders each get an adapter name of their own on the denoiser and their
own per-sample scale hook, so they add up independently. LyCORIS sliders may share a module with
each other (LyCORIS chains its wrappers) and with a PEFT LoRA (LyCORIS patches the base layer that
PEFT wraps); one mixer per wrapped module computes the chain with every LyCORIS slider at 0 and
with each one alone at 1, then returns `base + Σ sᵢ·(fullᵢ − base)`. That is the single-slider
formula of `lycoris_adapter.LycorisPerSample` summed, so:

- every strength 0 adds exact zeros: the base model, bit for bit;
- one slider at s and the others at 0 adds exact zeros to the single-slider computation, so the
  image is the single-slider render, bit for bit.

A LyCORIS file that is not linear in its strength (DoRA-style) is held at its strength for the
whole forward and the batch is rendered one image at a time, as for a single such slider.
Sliders trained on a ControlNet are not composed (their host is a different module).
"""
from __future__ import annotations

import math
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch
from PIL import Image
from torch import nn

from sliderstudio.adapters import adapters
from sliderstudio.adapters.adapter_io import load_into, read_metadata
from sliderstudio.kernel.build_lock import BUILD_LOCK
from sliderstudio.kernel.errors import InputError
from sliderstudio.adapters.slider_adapter import _ATTACHED, PeftSlider, SliderAdapter, file_kind
from sliderstudio.families.base import Family

COMPANION = "companion"
SUFFIX = ".safetensors"
StepHook = Callable[[int, int], None]


def parse_lora_arg(text: str, key: str = "--lora") -> tuple[Path, float | None]:
    """`FILE.safetensors[:STRENGTH]` → (path, strength or None). The strength is what follows the
    file's `.safetensors`, so a drive letter or a colon inside a folder name is never mistaken for it."""
    at = text.rfind(SUFFIX)
    if at < 0:
        raise InputError("only .safetensors adapters are loaded (pickles can run code); expected "
                         "FILE.safetensors or FILE.safetensors:STRENGTH", key=key, value=text)
    path, rest = Path(text[:at + len(SUFFIX)]), text[at + len(SUFFIX):]
    if not path.is_file():
        raise InputError("no such adapter file", file=path, key=key)
    if not rest:
        return path, None
    try:
        strength = float(rest[1:]) if rest.startswith(":") else math.nan
    except ValueError:
        strength = math.nan
    if not math.isfinite(strength):
        raise InputError("the strength after ':' must be a number, e.g. A.safetensors:0.8", key=key, value=text)
    return path, strength


def load_companion(family: Family, pipe: Any, path: Path, index: int) -> SliderAdapter:
    """Attach one more slider to the pipeline's denoiser, beside the ones already there."""
    meta = read_metadata(path)
    trained_for = meta.get("family")
    if trained_for and not family.answers_to(str(trained_for)):
        raise InputError(f"this adapter was trained for '{trained_for}' (its metadata) but the model is "
                         f"'{family.id}'", file=path, key="--lora")
    if meta.get("controlnet"):
        raise InputError("a slider trained on a ControlNet cannot be composed with others", file=path, key="--lora")
    host, host_name = family.denoiser(pipe), family.denoiser_name
    before = _ATTACHED.get(host)   # the main slider stays the host's registered one
    name = f"{COMPANION}_{index}"
    try:
        if file_kind(path) == "lycoris":
            from sliderstudio.adapters.lycoris_adapter import load_lycoris

            with peft_unwrapped(host):
                handle: SliderAdapter = load_lycoris(path, host, host_name)
        elif hasattr(pipe, "load_lora_weights"):
            with BUILD_LOCK:
                pipe.load_lora_weights(str(path), adapter_name=name)
            handle = PeftSlider(host, host_name, adapter=name)
        else:
            handle = PeftSlider(host, host_name, load_into(host, host_name, path, name), adapter=name)
    finally:
        if before is not None:
            _ATTACHED[host] = before
    activate_all(host)
    return handle


@contextmanager
def peft_unwrapped(host: nn.Module) -> Iterator[None]:
    """PEFT's wrappers swapped for their base layers while LyCORIS builds its network, then put back.

    LyCORIS only wraps plain Linear/Conv modules, and a module holding a PEFT LoRA is PEFT's
    wrapper; LyCORIS patches the base layer's forward, which the PEFT wrapper still calls, so both
    sliders act on the module afterwards.
    """
    from peft.tuners.tuners_utils import BaseTunerLayer

    swaps = []
    for name, module in list(host.named_modules()):
        if isinstance(module, BaseTunerLayer) and isinstance(getattr(module, "base_layer", None), nn.Module):
            parent_name, _, child = name.rpartition(".")
            swaps.append((host.get_submodule(parent_name) if parent_name else host, child, module))
    for parent, child, module in swaps:
        setattr(parent, child, module.base_layer)
    try:
        yield
    finally:
        for parent, child, module in reversed(swaps):
            setattr(parent, child, module)


def activate_all(host: nn.Module) -> None:
    """Every PEFT adapter on the host active (a loader may switch the others off), none trainable."""
    for layer in adapters.lora_layers(host):
        layer.set_adapter(list(layer.lora_A.keys()))
    host.requires_grad_(False)


def render_rows(family: Family, pipe: Any, sliders: Sequence[SliderAdapter], rows: Sequence[Sequence[float]],
                prompts: list[str], seed: int, steps: int, guidance: float, size: int, start_fraction: float = 0.0,
                negative_prompt: str | None = None, on_step: StepHook | None = None) -> list[Image.Image]:
    """prompts[j] rendered with sliders[i] at rows[j][i]; one pipeline call where every slider allows."""
    if not sliders:
        return family.render(pipe, prompts, seed, steps, guidance, size, negative_prompt, on_step)
    if any(len(row) != len(sliders) for row in rows):
        raise ValueError("every row needs one strength per slider")
    if all(s.batched for s in sliders):
        return _render_batch(family, pipe, sliders, rows, prompts, seed, steps, guidance, size, start_fraction,
                             negative_prompt, on_step)
    images: list[Image.Image] = []
    for k, (prompt, row) in enumerate(zip(prompts, rows)):
        hook = (lambda done, total, k=k: on_step(done + k * total, total * len(prompts))) if on_step else None
        images += _render_batch(family, pipe, sliders, [row], [prompt], seed, steps, guidance, size,
                                start_fraction, negative_prompt, hook)
    return images


def _render_batch(family: Family, pipe: Any, sliders: Sequence[SliderAdapter], rows: Sequence[Sequence[float]],
                  prompts: list[str], seed: int, steps: int, guidance: float, size: int, start_fraction: float,
                  negative_prompt: str | None, on_step: StepHook | None) -> list[Image.Image]:
    columns = [[float(row[i]) for row in rows] for i in range(len(sliders))]
    start_step = min(steps, math.ceil(start_fraction * steps)) if start_fraction > 0 else 0
    with ExitStack() as stack:
        vectors = _enter_scales(stack, sliders, columns)
        if start_step:
            for vec in vectors:
                vec.zero_()

        def step_done(done: int, total: int) -> None:
            if done == start_step:
                for vec, column in zip(vectors, columns):
                    vec.copy_(vec.new_tensor(column))
            if on_step:
                on_step(done, total)

        return family.render(pipe, prompts, seed, steps, guidance, size, negative_prompt, step_done)


def _enter_scales(stack: ExitStack, sliders: Sequence[SliderAdapter], columns: list[list[float]]) -> list[torch.Tensor]:
    """Open every slider's per-sample scale; returns the strength vectors in slider order."""
    from sliderstudio.adapters.lycoris_adapter import LycorisSlider

    vectors: list[torch.Tensor] = [torch.tensor(c, dtype=torch.float32) for c in columns]
    lycoris = [(s, v) for s, v in zip(sliders, vectors) if isinstance(s, LycorisSlider)]
    for slider, column, k in zip(sliders, columns, range(len(sliders))):
        if not isinstance(slider, LycorisSlider):
            vectors[k] = stack.enter_context(slider.per_sample(column)).values
    if lycoris:
        stack.enter_context(LycorisMix([s for s, _ in lycoris], [v for _, v in lycoris]))
    return vectors


class LycorisMix:
    """Per-sample strengths for several LyCORIS sliders, also on shared modules (see the module doc)."""

    def __init__(self, sliders: Sequence[Any], values: Sequence[torch.Tensor]):
        self.sliders, self.values = list(sliders), list(values)
        self._saved: list[tuple[nn.Module, Any]] = []

    def __enter__(self) -> "LycorisMix":
        modules: dict[int, tuple[nn.Module, list[tuple[int, Any]]]] = {}
        for i, slider in enumerate(self.sliders):
            for lora in slider.network.loras:
                module = lora.org_module[0]
                modules.setdefault(id(module), (module, []))[1].append((i, lora))
        for module, entries in modules.values():
            top = module.__dict__.get("forward")
            if top is None:   # LyCORIS left this module alone (unsupported type)
                continue
            self._saved.append((module, top))
            module.forward = lambda x, *a, _top=top, _entries=entries, **k: self._mix(_top, _entries, x, *a, **k)
        return self

    def _mix(self, top: Callable[..., torch.Tensor], entries: list[tuple[int, Any]], x: torch.Tensor,
             *args: Any, **kwargs: Any) -> torch.Tensor:
        saved = [lora.multiplier for _, lora in entries]
        linear = [(i, lora) for i, lora in entries if self.sliders[i].batched]
        try:
            for i, lora in entries:   # a non-linear slider renders one image at a time: its own strength
                lora.multiplier = 0.0 if self.sliders[i].batched else float(self.values[i][0])
            base = top(x, *args, **kwargs)
            fulls = []
            for i, lora in linear:
                lora.multiplier = 1.0
                fulls.append((i, top(x, *args, **kwargs)))
                lora.multiplier = 0.0
        finally:
            for (_, lora), multiplier in zip(entries, saved):
                lora.multiplier = multiplier
        out = base
        for i, full in fulls:
            out = out + self._tiled(i, base) * (full - base)
        return out

    def _tiled(self, i: int, like: torch.Tensor) -> torch.Tensor:
        values, batch = self.values[i], like.shape[0]
        if batch % values.numel():
            raise RuntimeError(f"per-sample strength: batch {batch} is not a multiple of {values.numel()} strengths")
        vec = values.repeat(batch // values.numel()).to(device=like.device, dtype=like.dtype)
        return vec.view(batch, *([1] * (like.dim() - 1)))

    def __exit__(self, *exc: object) -> None:
        for module, top in reversed(self._saved):
            module.forward = top
        self._saved.clear()


def preview_plan(lora_args: Sequence[str], strengths: list[float]) -> tuple[Path | None, list[float],
                                                                            list[tuple[Path, float]]]:
    """The CLI's `--lora FILE[:S]` list → (swept adapter, its strengths, the others at theirs).

    One file without `:S` is swept over `strengths` (the others are held at their strength); when
    every file has one, the first gives the single image's strength. Two files without a strength
    would each need the sweep: refused.
    """
    parsed = [parse_lora_arg(text) for text in lora_args]
    swept = [k for k, (_, s) in enumerate(parsed) if s is None]
    if len(swept) > 1:
        raise InputError("give every --lora but one its strength (FILE.safetensors:0.8); the one without is "
                         "swept over --strengths", key="--lora", value=str(parsed[swept[1]][0]))
    if not parsed:
        return None, strengths, []
    main_index = swept[0] if swept else 0
    main_path, main_strength = parsed[main_index]
    main_strengths = strengths if main_strength is None else [main_strength]
    others = [(p, float(s)) for k, (p, s) in enumerate(parsed) if k != main_index]
    return main_path, main_strengths, others


def range_warnings(uses: Sequence[tuple[Path, Sequence[float]]]) -> list[str]:
    """A line for each strength outside its adapter's calibrated range (rendered anyway: the user asked)."""
    from sliderstudio.engine.calibration import recommended_range

    lines = []
    for path, values in uses:
        span = recommended_range(path)
        if span is None:
            continue
        outside = [v for v in values if not span[0] <= v <= span[1]]
        if outside:
            lines.append(f"warning: {path}: strength {', '.join(f'{v:g}' for v in outside)} is outside its "
                         f"calibrated range {span[0]:g} … {span[1]:g}; the image may break down")
    return lines
