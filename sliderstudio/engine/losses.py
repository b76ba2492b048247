"""The regression loss between the model's prediction and the slider target (SimpleTuner's loss_type).

`l2` is the mean squared error. `huber` and `smooth_l1` are the pseudo-Huber forms used by
SimpleTuner (after kohya's scheduled Huber loss): per element 2c·(√(d² + c²) − c) and 2(√(d² + c²) − c)
with d = prediction − target. They grow linearly for large errors, so a few outlier pixels (a slider
pair that differs in more than the concept) pull less. The transition point c can depend on the
timestep (`huber_schedule`): constant; exponential, huber_c ** (t/T), so c falls from 1 at clean
timesteps to huber_c at pure noise; or snr, (1 − huber_c)/(1 + σ)² + huber_c with σ the schedule's
noise-to-signal ratio, so noisy timesteps (where targets are least certain) get the robust L1 regime.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class SliderLoss:
    loss_type: str = "l2"
    huber_c: float = 0.1
    huber_schedule: str = "snr"
    schedule: Any = None  # the family's training schedule (DDPM-like, or a FlowSchedule)

    def __call__(self, pred: torch.Tensor, target: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        return self.per_sample(pred, target, timesteps).mean()

    def per_sample(self, pred: torch.Tensor, target: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """The loss of each sample (mean over its elements), shape (batch,): what a per-sample weight scales."""
        pred, target = pred.float(), target.float()
        if self.loss_type == "l2":
            elements = (pred - target) ** 2
        else:
            c = self.transition(timesteps).to(pred.device).view(-1, *([1] * (pred.dim() - 1)))
            soft = torch.sqrt((pred - target) ** 2 + c ** 2) - c
            elements = 2 * c * soft if self.loss_type == "huber" else 2 * soft
        return elements.flatten(1).mean(1)

    def transition(self, timesteps: torch.Tensor) -> torch.Tensor:
        """c per sample for these timesteps, on their device (no host read inside the step: engine.loss_log)."""
        t = timesteps.detach().float()
        if self.huber_schedule == "constant":
            return torch.full_like(t, self.huber_c)
        if self.huber_schedule == "exponential":
            return self.huber_c ** self._fraction(t)
        return (1 - self.huber_c) / (1 + noise_to_signal(self.schedule, t)) ** 2 + self.huber_c

    def _fraction(self, t: torch.Tensor) -> torch.Tensor:
        total = num_train_timesteps(self.schedule)
        return (t / total).clamp(0, 1)


def num_train_timesteps(schedule: Any) -> float:
    """Timesteps of the schedule's full noise range: DDPM's and flow's 1000, 1.0 for a schedule that
    counts noise as a ratio (Stable Cascade), so t / this is the noise level in [0, 1] on every family."""
    config = getattr(schedule, "config", None)
    value = config.get("num_train_timesteps") if config else None   # diffusers: read it from the config (the
    if value is None:                                                 # attribute read is deprecated and warns)
        value = getattr(schedule, "num_train_timesteps", None)
    return float(value or 1.0)


def noise_to_signal(schedule: Any, t: torch.Tensor) -> torch.Tensor:
    """σ = noise / signal at timestep t: from ᾱ for DDPM schedules, σ_flow/(1 − σ_flow) for flow ones."""
    alphas = getattr(schedule, "alphas_cumprod", None)
    if isinstance(alphas, torch.Tensor):
        a = alphas.float().to(t.device)[t.long().clamp(0, len(alphas) - 1)]
        return torch.sqrt((1 - a) / a.clamp_min(1e-12))
    sigma = (t / num_train_timesteps(schedule)).clamp(0, 1 - 1e-6)
    return sigma / (1 - sigma)


def make_loss(config: Any, schedule: Any) -> SliderLoss:
    return SliderLoss(config.loss_type, config.huber_c, config.huber_schedule, schedule)
