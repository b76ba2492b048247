"""SimpleTuner's `snr_gamma`: Min-SNR-γ loss weighting (Hang et al., 2023, "Efficient Diffusion
Training via Min-SNR Weighting Strategy").

Why: at clean timesteps the signal-to-noise ratio (SNR = ᾱ / (1 − ᾱ)) is huge and an ε-prediction
loss there is easy and large in weight for the little it teaches; at noisy ones the reverse. Min-SNR
weighs each sample by min(SNR, γ) / SNR for an ε-prediction target and min(SNR, γ) / (SNR + 1) for a
v-prediction target, so timesteps less noisy than SNR = γ count less and the rest as before.
The weights need a DDPM-style schedule (its ᾱ table); flow-matching schedules and Stable Cascade's
ratio have none here, and the run says it trains them unweighted.

SimpleTuner's `use_soft_min_snr` swaps the SNR the weights read for a "soft" one,
(σ·σ_d)² / (σ² + σ_d²)² with σ = √(1 − ᾱ) and σ_d = `soft_min_snr_sigma_data`, then weighs as above.
That soft value never exceeds 1/4, so with γ ≥ 1/4 an ε-prediction sample keeps weight 1 and a
v-prediction one weighs soft / (soft + 1): it is kept as SimpleTuner computes it, not "fixed", so a
config moved over trains the same.
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
    soft_sigma_data: float | None = None  # use_soft_min_snr's σ_d; None: the ordinary SNR

    @classmethod
    def for_schedule(cls, gamma: float | None, schedule: Any,
                     soft_sigma_data: float | None = None) -> "MinSnrWeight | None":
        """The weighting for this run's schedule; None when `gamma` is unset or the schedule has no ᾱ."""
        alphas = getattr(schedule, "alphas_cumprod", None)
        if gamma is None or not isinstance(alphas, torch.Tensor):
            return None
        prediction = (getattr(schedule, "config", None) or {}).get("prediction_type")
        return cls(float(gamma), schedule, prediction == "v_prediction", soft_sigma_data)

    def snr(self, timesteps: torch.Tensor) -> torch.Tensor:
        """ᾱ / (1 − ᾱ), the inverse square of engine.losses' noise-to-signal; or the soft SNR."""
        ratio_sq = noise_to_signal(self.schedule, timesteps).pow(2)  # (1 − ᾱ) / ᾱ
        if self.soft_sigma_data is None:
            return ratio_sq.reciprocal()
        sigma_sq, data_sq = ratio_sq / (1 + ratio_sq), self.soft_sigma_data ** 2  # σ² = 1 − ᾱ
        return sigma_sq * data_sq / (sigma_sq + data_sq) ** 2

    def __call__(self, timesteps: torch.Tensor) -> torch.Tensor:
        """One weight per sample, on the timesteps' device."""
        snr = self.snr(timesteps)
        clipped = snr.clamp(max=self.gamma)
        return clipped / (snr + 1) if self.v_prediction else clipped / snr.clamp_min(1e-12)

    def describe(self) -> str:
        target = "v-prediction" if self.v_prediction else "ε-prediction"
        ends = self(torch.tensor([0, self.schedule.alphas_cumprod.numel() - 1]))
        if self.soft_sigma_data is not None:
            head = f"soft min-SNR weighting: γ {self.gamma:g}, σ_data {self.soft_sigma_data:g} ({target})"
            if torch.allclose(ends, torch.ones_like(ends)) and not self.v_prediction and self.gamma >= 0.25:
                return f"{head}; the soft SNR (at most 0.25) stays under γ, so every timestep weighs 1"
            return f"{head}; weights {float(ends[0]):.3g} at the cleanest to {float(ends[1]):.3g} at the noisiest"
        return (f"min-SNR weighting: γ {self.gamma:g} ({target}); timesteps with SNR above {self.gamma:g} weigh "
                f"less, down to {float(ends[0]):.3g} at the cleanest")
