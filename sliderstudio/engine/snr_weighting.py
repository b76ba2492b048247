"""SimpleTuner's `snr_gamma`: Min-SNR-γ loss weighting (Hang et al., 2023, "Efficient Diffusion
Training via Min-SNR Weighting Strategy").

Why: at clean timesteps the signal-to-noise ratio (SNR = ᾱ / (1 − ᾱ)) is huge and an ε-prediction
loss there is easy and large in weight for the little it teaches; at noisy ones the reverse. Min-SNR
weighs each sample by min(SNR, γ) / SNR for an ε-prediction target and min(SNR, γ) / (SNR + 1) for a
v-prediction target, so timesteps less noisy than SNR = γ count less and the rest as before.
The weights need a DDPM-style schedule (its ᾱ table); flow-matching schedules and Stable Cascade's
ratio have none here, and the run says it trains them unweighted.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from sliderstudio.engine.losses import noise_to_signal


@dataclass(frozen=True)
class MinSnrWeight:
    gamma: float
    schedule: Any  # a DDPM-style schedule: it has the ᾱ table noise_to_signal reads
    v_prediction: bool = False

    @classmethod
    def for_schedule(cls, gamma: float | None, schedule: Any) -> "MinSnrWeight | None":
        """The weighting for this run's schedule; None when `gamma` is unset or the schedule has no ᾱ."""
        alphas = getattr(schedule, "alphas_cumprod", None)
        if gamma is None or not isinstance(alphas, torch.Tensor):
            return None
        prediction = (getattr(schedule, "config", None) or {}).get("prediction_type")
        return cls(float(gamma), schedule, prediction == "v_prediction")

    def snr(self, timesteps: torch.Tensor) -> torch.Tensor:
        """ᾱ / (1 − ᾱ): the signal-to-noise ratio, the inverse square of engine.losses' noise-to-signal."""
        return noise_to_signal(self.schedule, timesteps).pow(-2)

    def __call__(self, timesteps: torch.Tensor) -> torch.Tensor:
        """One weight per sample, on the timesteps' device."""
        snr = self.snr(timesteps)
        clipped = snr.clamp(max=self.gamma)
        return clipped / (snr + 1) if self.v_prediction else clipped / snr.clamp_min(1e-12)

    def describe(self) -> str:
        target = "v-prediction" if self.v_prediction else "ε-prediction"
        return (f"min-SNR weighting: γ {self.gamma:g} ({target}); timesteps with SNR above {self.gamma:g} weigh "
                f"less, down to {float(self(torch.tensor([0])).item()):.3g} at the cleanest")
