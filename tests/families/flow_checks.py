"""Checks shared by the flow-matching transformer families: the slider mechanics (strength 0 is the base
model, opposite strengths act in opposite directions, per-sample scale equals separate forwards)."""
from __future__ import annotations

from pathlib import Path

import torch

from sliderstudio.adapters import adapters
from sliderstudio.families.base import Conditioning, Family
from tests.families.family_checks import with_random_slider

PROMPTS = ["a photo of a red square", "a blue circle on a green background"]


def pipeline_with_slider(family: Family, model: Path, b_std: float = 0.05, seed: int = 0):
    """The tiny pipeline with a rank-4 slider LoRA on the slider preset whose B is random (so it acts)."""
    return with_random_slider(family, model, b_std, seed, rank=4)


def batch_inputs(family: Family, pipe, size: int = 64) -> tuple[torch.Tensor, torch.Tensor, Conditioning, torch.Tensor]:
    """Two different samples (image, noise, timestep, prompt), through the family's own encoders."""
    g = torch.Generator().manual_seed(0)
    latents = family.encode_images(pipe, torch.rand(2, 3, size, size, generator=g) * 2 - 1)
    noise = torch.randn(latents.shape, generator=g)
    timesteps = torch.tensor([250.0, 750.0])
    noisy, target = family.noisy_and_target(family.noise_schedule(pipe), latents, noise, timesteps)
    cond = family.collate(family.encode_prompts(pipe, PROMPTS), torch.device("cpu"), torch.float32, size)
    return noisy, timesteps, cond, target


def predict_at(family: Family, denoiser, inputs, strength: float) -> torch.Tensor:
    noisy, timesteps, cond, _ = inputs
    with torch.no_grad(), adapters.slider_scale(denoiser, strength):
        return family.predict(denoiser, noisy, timesteps, cond)


def check_zero_is_base_and_signs_oppose(family: Family, pipe, denoiser) -> None:
    inputs = batch_inputs(family, pipe)
    denoiser.disable_adapters()
    with torch.no_grad():
        base = family.predict(denoiser, *inputs[:3])
    denoiser.enable_adapters()
    adapters.activate(denoiser, adapters.SLIDER)
    assert base.shape == inputs[3].shape  # the prediction comes back in the target's layout
    assert torch.equal(predict_at(family, denoiser, inputs, 0.0), base)
    up = (predict_at(family, denoiser, inputs, 0.1) - base).flatten()  # small: first-order regime
    down = (predict_at(family, denoiser, inputs, -0.1) - base).flatten()
    assert up.norm() > 0
    assert torch.nn.functional.cosine_similarity(up, down, dim=0) < -0.99


def check_per_sample_scale(family: Family, pipe, denoiser) -> None:
    """One batched forward with strengths (−1, 0.5) equals two forwards at one strength each."""
    inputs = batch_inputs(family, pipe)
    noisy, timesteps, cond, _ = inputs
    with torch.no_grad(), adapters.PerSampleScale(denoiser, [-1.0, 0.5]):
        both = family.predict(denoiser, noisy, timesteps, cond)
    first, second = predict_at(family, denoiser, inputs, -1.0), predict_at(family, denoiser, inputs, 0.5)
    effect = float((first[1] - second[1]).abs().max())  # tiny random models differ a lot in LoRA gain
    assert effect > 0
    tolerance = min(1e-5, 1e-3 * effect)
    assert torch.allclose(both[0], first[0], atol=tolerance) and torch.allclose(both[1], second[1], atol=tolerance)
