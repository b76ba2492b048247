"""Shared flow-matching mechanics for the transformer families (SD3, Flux, Z-Image, Wan, …).

Rectified flow: x_σ = (1 − σ)·x₀ + σ·ε, and the model predicts the velocity ε − x₀. σ is drawn
logit-normally and shifted like the family's inference scheduler (σ' = s·σ / (1 + (s − 1)·σ)), so
training spends its steps where sampling does. Families whose model expects another timestep
convention or target sign override `model_timestep` or `noisy_and_target`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import torch

from sliderstudio.families.base import Family


@dataclass(frozen=True)
class FlowSchedule:
    shift: float = 1.0
    num_train_timesteps: int = 1000
    logit_mean: float = 0.0
    logit_std: float = 1.0


def dynamic_shift(config: Any, seq_len: int) -> float:
    """The static-equivalent shift of diffusers' resolution-dependent shifting.

    μ grows linearly with the image's token count between (base_image_seq_len, base_shift) and
    (max_image_seq_len, max_shift); the exponential time shift e^μ/(e^μ + 1/σ − 1) is the static
    formula with s = e^μ (the linear one, with s = μ).
    """
    base_len, max_len = config.get("base_image_seq_len", 256), config.get("max_image_seq_len", 4096)
    base, top = config.get("base_shift", 0.5), config.get("max_shift", 1.15)
    slope = (top - base) / (max_len - base_len)
    mu = base + slope * (seq_len - base_len)
    return math.exp(mu) if config.get("time_shift_type", "exponential") == "exponential" else mu


@dataclass
class FlowFamily(Family):
    prediction: str = "flow_matching"

    def noise_schedule(self, pipe: Any, prediction: str | None = None, image_size: int | None = None) -> FlowSchedule:
        """The inference scheduler's shift: static (`shift`, Wan's `flow_shift`) or, for schedulers with
        resolution-dependent shifting (Flux, Qwen-Image, LTX…), the shift sampling would use at `image_size`."""
        config = getattr(pipe.scheduler, "config", {})
        shift = float(config.get("shift", 1.0) or 1.0)
        if shift == 1.0 and config.get("flow_shift"):
            shift = float(config["flow_shift"])
        if config.get("use_dynamic_shifting") and image_size:
            shift = dynamic_shift(config, self.image_seq_len(pipe, image_size))
        return FlowSchedule(shift=shift, num_train_timesteps=int(config.get("num_train_timesteps", 1000)))

    def image_seq_len(self, pipe: Any, image_size: int) -> int:
        """Image tokens the transformer sees for a square image: (latent side / patch size)²."""
        factor = getattr(pipe, "vae_spatial_compression_ratio", None) or getattr(pipe, "vae_scale_factor", 8)
        side = image_size // (int(factor) * int(self.extra.get("patch_size", 2)))
        return max(1, side) ** 2

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


def training_schedule(family: Family, pipe: Any, config: Any) -> tuple[Any, str | None]:
    """The family's training schedule with SimpleTuner's flow_schedule_shift / flow_schedule_auto_shift applied.

    Returns (schedule, warning). auto-shift wins over a fixed shift, as in SimpleTuner: the shift
    then follows the image's token count, like Flux's resolution-dependent scheduler, using the
    scheduler's own base/max shift when it has them and Flux's defaults otherwise.
    """
    schedule = family.noise_schedule(pipe, config.prediction_type, config.resolution)
    wanted = config.flow_schedule_auto_shift or config.flow_schedule_shift is not None
    if not isinstance(schedule, FlowSchedule):
        note = ("flow_schedule_shift / flow_schedule_auto_shift apply to flow-matching models only; "
                f"{family.id} is not one, so they are ignored") if wanted else None
        return schedule, note
    if config.flow_schedule_auto_shift:
        scheduler_config = dict(getattr(pipe.scheduler, "config", {}) or {})
        shift = dynamic_shift(scheduler_config, family.image_seq_len(pipe, config.resolution))
        return replace(schedule, shift=shift), None
    if config.flow_schedule_shift is not None:
        return replace(schedule, shift=float(config.flow_schedule_shift)), None
    return schedule, None
