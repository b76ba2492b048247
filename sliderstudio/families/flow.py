"""Shared flow-matching mechanics for the transformer families (SD3, Flux, Z-Image, Wan, …).

Rectified flow: x_σ = (1 − σ)·x₀ + σ·ε, and the model predicts the velocity ε − x₀. σ is drawn
logit-normally and shifted like the family's inference scheduler (σ' = s·σ / (1 + (s − 1)·σ)), so
training spends its steps where sampling does. Families whose model expects another timestep
convention or target sign override `model_timestep` or `noisy_and_target`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from sliderstudio.families.base import Family


@dataclass(frozen=True)
class FlowSchedule:
    shift: float = 1.0
    num_train_timesteps: int = 1000
    logit_mean: float = 0.0
    logit_std: float = 1.0


@dataclass
class FlowFamily(Family):
    prediction: str = "flow_matching"

    def noise_schedule(self, pipe: Any, prediction: str | None = None) -> FlowSchedule:
        config = getattr(pipe.scheduler, "config", {})
        shift = float(config.get("shift", 1.0) or 1.0)
        return FlowSchedule(shift=shift, num_train_timesteps=int(config.get("num_train_timesteps", 1000)))

    def sample_timesteps(self, schedule: FlowSchedule, batch: int, generator: torch.Generator) -> torch.Tensor:
        """σ in (0, 1), returned ×num_train_timesteps as diffusers' flow schedulers count timesteps."""
        u = torch.sigmoid(schedule.logit_mean + schedule.logit_std * torch.randn(batch, generator=generator))
        sigma = schedule.shift * u / (1 + (schedule.shift - 1) * u)
        return sigma * schedule.num_train_timesteps

    def sigmas(self, schedule: FlowSchedule, timesteps: torch.Tensor, ndim: int) -> torch.Tensor:
        sigma = timesteps.float() / schedule.num_train_timesteps
        return sigma.view(-1, *([1] * (ndim - 1)))

    def noisy_and_target(self, schedule: FlowSchedule, latents: torch.Tensor, noise: torch.Tensor,
                         timesteps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        sigma = self.sigmas(schedule, timesteps, latents.dim())
        return (1 - sigma) * latents + sigma * noise, noise - latents

    def encode_images(self, pipe: Any, pixels: torch.Tensor) -> torch.Tensor:
        vae = pipe.vae
        with torch.no_grad():
            latents = vae.encode(pixels.to(vae.device, vae.dtype)).latent_dist.mode()
        shift = getattr(vae.config, "shift_factor", None) or 0.0
        return ((latents - shift) * vae.config.scaling_factor).float().cpu()
