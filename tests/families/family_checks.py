"""Checks shared by the per-family tests: target resolution, per-sample scale, agreement with the pipeline."""
from __future__ import annotations

from collections import Counter
from contextlib import nullcontext
from pathlib import Path
from typing import Callable

import torch

from sliderstudio.adapters import adapters
from sliderstudio.adapters.targets import TargetReport, resolve_on_module, resolve_targets, text_path_modules
from sliderstudio.families.base import Family
from sliderstudio.families.loading import load_pipeline

PROMPT = "a photo of a red square"


def check_slider_targets(family: Family, model: Path, case) -> TargetReport:
    """The slider preset on the tiny model's meta skeleton against the family's expectations (`cases.py`):
    counts per entry exactly, nothing on the family's text path, each module once, the context modules
    present but unselected, and no selected name containing a `never` piece."""
    report = resolve_targets(family, str(model), "slider")
    assert {e.pattern: e.count for e in report.entries} == case.slider
    assert report.total == len(set(report.module_names)) == sum(case.slider.values()) > 0
    assert text_path_modules(report.module_names, family) == [], "a slider target is on the text path"
    if case.blocks is not None:
        assert Counter(n.split(".")[0] for n in report.module_names) == case.blocks
    names = {n for n, _ in family.skeleton(model).named_modules()}
    chosen = set(report.module_names)
    for suffix in case.context:
        present = {n for n in names if n == suffix or n.endswith("." + suffix)}
        assert present, f"the tiny model has no '{suffix}' module to exclude"
        assert not present & chosen, f"'{suffix}' is on the text path but selected"
    assert set(case.present) <= names
    assert not [n for n in chosen for part in case.never if part in n]
    assert set(case.selected) <= chosen
    return report


def with_random_slider(family: Family, model: str | Path, b_std: float = 0.05, seed: int = 0, rank: int = 2):
    """A loaded pipeline whose denoiser carries a slider (rank = alpha) on the slider preset with random
    lora_B (so strengths matter)."""
    pipe = load_pipeline(family, str(model))
    denoiser = family.denoiser(pipe)
    names = resolve_on_module(denoiser, family.presets["slider"]).module_names
    adapters.attach_lora(denoiser, names, rank, rank, seed=seed)
    adapters.activate(denoiser, adapters.SLIDER)
    gen = torch.Generator().manual_seed(seed)
    for name, param in denoiser.named_parameters():
        if "lora_B" in name:
            param.data = torch.randn(param.shape, generator=gen) * b_std
    return pipe, denoiser


def batch_inputs(family: Family, pipe, latent_shape: tuple[int, ...], prompts: list[str]):
    gen = torch.Generator().manual_seed(1)
    cond = family.collate(family.encode_prompts(pipe, prompts), torch.device("cpu"), torch.float32, 64)
    x = torch.randn((len(prompts), *latent_shape), generator=gen)
    t = torch.linspace(150.0, 850.0, len(prompts))
    return x, t, cond


def check_per_sample_scale(family: Family, model: str, latent_shape=(4, 8, 8),
                           prompts=(PROMPT, "a dog", "a big blue circle on a dark background")) -> None:
    """Strengths [-1, 0.5, 0] in one batched forward equal three forwards at one strength each, row by row,
    and the strength-0 row equals the denoiser with adapters disabled (the base model) exactly."""
    pipe, denoiser = with_random_slider(family, model)
    x, t, cond = batch_inputs(family, pipe, latent_shape, list(prompts))
    strengths = [-1.0, 0.5, 0.0]
    with torch.no_grad():
        with adapters.PerSampleScale(denoiser, strengths):
            batched = family.predict(denoiser, x, t, cond)
        separate = []
        for s in strengths:
            with adapters.slider_scale(denoiser, s):
                separate.append(family.predict(denoiser, x, t, cond))
        denoiser.disable_adapters()
        base = family.predict(denoiser, x, t, cond)
        denoiser.enable_adapters()
    for i, full in enumerate(separate):
        assert torch.allclose(batched[i], full[i], atol=1e-5, rtol=1e-4), f"row {i} (strength {strengths[i]})"
    assert torch.equal(batched[2], base[2])
    assert not torch.allclose(batched[0], base[0], atol=1e-4), "the slider had no effect"


def check_matches_pipeline_step(family: Family, model: str, to_ours: Callable[[torch.Tensor], torch.Tensor],
                                size: int = 64, size_context: Callable | None = None, guidance: float = 1.0) -> None:
    """Training's prediction drives the scheduler exactly as the pipeline's own loop does.

    Render two steps, capture the latents the pipeline holds after each, and redo the second Euler step
    with `family.predict` on our cached-conditioning path: x₂ = x₁ + (σ₂ − σ₁)·v(x₁, σ₁). A wrong
    timestep direction or scale, output sign, latent packing or caption encoding shows up here.
    """
    pipe = load_pipeline(family, str(model))
    seen: list[torch.Tensor] = []

    def grab(_pipe, _step, _t, kwargs):
        seen.append(kwargs["latents"].detach().clone())
        return kwargs

    size_context = size_context or (lambda pipe, size: nullcontext())
    pipe_kwargs = dict(prompt=[PROMPT], num_inference_steps=2, guidance_scale=guidance, height=size, width=size,
                       generator=torch.Generator("cpu").manual_seed(0), output_type="latent",
                       callback_on_step_end=grab, callback_on_step_end_tensor_inputs=["latents"])
    with size_context(pipe, size):
        pipe(**pipe_kwargs)
    sigmas, timesteps = pipe.scheduler.sigmas, pipe.scheduler.timesteps
    x1, x2 = to_ours(seen[0]).float(), to_ours(seen[1]).float()
    cond = family.collate(family.encode_prompts(pipe, [PROMPT]), torch.device("cpu"), torch.float32, size)
    with torch.no_grad():
        v = family.predict(family.denoiser(pipe), x1, timesteps[1].reshape(1), cond)
    ours = x1 + (sigmas[2] - sigmas[1]) * v
    assert sigmas[1] not in (0.0, 1.0)
    assert torch.allclose(ours, x2, atol=1e-4, rtol=1e-4), (ours - x2).abs().max()
