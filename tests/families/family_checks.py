"""Checks shared by the per-family tests: target resolution, per-sample scale, agreement with the pipeline."""
from __future__ import annotations

from collections import Counter
from contextlib import nullcontext
from typing import Callable

import torch

from sliderstudio.adapters import adapters
from sliderstudio.adapters.targets import resolve_on_module, resolve_targets, text_path_modules
from sliderstudio.families.base import Family
from sliderstudio.families.loading import load_pipeline

PROMPT = "a photo of a red square"


def slider_report(family: Family, model: str):
    """The slider preset resolved on the meta skeleton, with the checks every family must pass."""
    report = resolve_targets(family, str(model), "slider")
    assert report.total > 0
    assert text_path_modules(report.module_names) == [], "a slider target is on the text path"
    assert len(set(report.module_names)) == report.total
    return report


def entry_counts(report) -> dict[str, int]:
    return {e.pattern: e.count for e in report.entries}


def block_counts(names: list[str], depth: int = 1) -> Counter:
    """How many selected modules live under each top-level container (`layers`, `noise_refiner`, …)."""
    return Counter(".".join(n.split(".")[:depth]) for n in names)


def all_module_names(family: Family, model: str) -> list[str]:
    from pathlib import Path

    return [n for n, _ in family.skeleton(Path(model)).named_modules()]


def with_random_slider(family: Family, model: str, b_std: float = 0.05, seed: int = 0):
    """A loaded pipeline whose denoiser carries a slider with non-zero lora_B (so strengths matter)."""
    pipe = load_pipeline(family, str(model))
    denoiser = family.denoiser(pipe)
    names = resolve_on_module(denoiser, family.presets["slider"]).module_names
    adapters.attach_lora(denoiser, names, 2, 2, seed=seed)
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
                                size: int = 64, size_context: Callable = lambda pipe, size: nullcontext()) -> None:
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

    pipe_kwargs = dict(prompt=[PROMPT], num_inference_steps=2, guidance_scale=1.0, height=size, width=size,
                       generator=torch.Generator("cpu").manual_seed(0), output_type="latent",
                       callback_on_step_end=grab, callback_on_step_end_tensor_inputs=["latents"])
    if family.id == "z_image":
        pipe_kwargs["guidance_scale"] = 0.0  # Z-Image applies CFG whenever guidance > 0
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
