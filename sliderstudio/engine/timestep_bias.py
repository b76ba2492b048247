"""SimpleTuner's timestep bias: train more (or less) often at some noise levels.

`timestep_bias_strategy` picks which share of the 1000-step schedule gets `timestep_bias_multiplier`
times its usual weight: "later" the noisiest `timestep_bias_portion` (where the layout, and so a
shape's size, is decided), "earlier" the least noisy one (fine detail), "range" the timesteps from
`timestep_bias_begin` up to (not including) `timestep_bias_end`; "none" (or no key) leaves the
family's own draw alone. The weights are SimpleTuner's; only the way they are applied differs:

Why rejection sampling instead of SimpleTuner's weighted draw over 1000 timesteps: each family
draws timesteps its own way (uniform integers for DDPM, a shifted logit-normal σ·1000 for flow
models, a ratio in [0, 1) for Stable Cascade). Keeping each candidate the family draws with
probability weight / max weight yields exactly the family's density times the bias, on every
family, from the same seeded generator (so resumes and paired negatives repeat the draws). For a
uniform DDPM draw that is SimpleTuner's distribution.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any, Callable

import torch

from sliderstudio.engine.losses import num_train_timesteps

#: SimpleTuner counts the bias in timesteps of a 1000-step schedule, whatever the family's units.
BINS = 1000
STRATEGIES = ("earlier", "later", "range")
#: Candidates drawn per wanted timestep, per round (the acceptance rate is mean weight / max weight).
OVERDRAW = 4
MAX_ROUNDS = 10_000

Sampler = Callable[[Any, int, torch.Generator], torch.Tensor]


class TimestepBiasError(ValueError):
    """A timestep-bias setting that cannot be applied; names the key and its value."""

    def __init__(self, key: str, value: Any, why: str):
        super().__init__(f"{key} = {value!r}: {why}")
        self.key, self.value = key, value


@dataclass(frozen=True)
class TimestepBias:
    """The bias of one run: strategy, multiplier and the biased timesteps [begin, end) of 1000."""

    strategy: str
    multiplier: float
    begin: int
    end: int

    @classmethod
    def from_settings(cls, strategy: str | None, multiplier: float = 1.0, portion: float = 0.25,
                      begin: int = 0, end: int = BINS) -> "TimestepBias | None":
        """The bias these SimpleTuner keys ask for; None when they leave the draw unchanged.

        Raises TimestepBiasError for settings SimpleTuner also refuses (multiplier ≤ 0, portion
        outside [0, 1], a range outside 0…1000 or empty).
        """
        if strategy in (None, "none"):
            return None
        if strategy not in STRATEGIES:
            raise TimestepBiasError("timestep_bias_strategy", strategy, f"expected one of {', '.join(STRATEGIES)} "
                                                                        "or none")
        if multiplier <= 0:
            raise TimestepBiasError("timestep_bias_multiplier", multiplier,
                                    "must be above 0 (it cannot switch timesteps off; "
                                    "timestep_bias_strategy 'none' switches the bias off)")
        if strategy == "range":
            if not 0 <= begin < end <= BINS:
                raise TimestepBiasError("timestep_bias_begin", (begin, end),
                                        f"the range needs 0 <= timestep_bias_begin < timestep_bias_end <= {BINS}")
        else:
            if not 0 <= portion <= 1:
                raise TimestepBiasError("timestep_bias_portion", portion, "must be between 0 and 1")
            count = int(portion * BINS)
            begin, end = (BINS - count, BINS) if strategy == "later" else (0, count)
        if multiplier == 1 or begin == end or (begin, end) == (0, BINS):
            return None
        return cls(strategy, float(multiplier), int(begin), int(end))

    @classmethod
    def from_config(cls, cfg: Any) -> "TimestepBias | None":
        return cls.from_settings(cfg.timestep_bias_strategy, cfg.timestep_bias_multiplier,
                                 cfg.timestep_bias_portion, cfg.timestep_bias_begin, cfg.timestep_bias_end)

    def weights(self) -> torch.Tensor:
        """Weight of each of the 1000 timesteps (1 outside the biased ones), as SimpleTuner builds it."""
        w = torch.ones(BINS)
        w[self.begin:self.end] = self.multiplier
        return w

    def biased_share(self) -> float:
        """The share of a uniform draw that lands in the biased timesteps once the bias applies."""
        inside = (self.end - self.begin) * self.multiplier
        return inside / (inside + BINS - (self.end - self.begin))

    def describe(self) -> str:
        return (f"timestep bias: timesteps {self.begin}-{self.end - 1} of {BINS} weigh ×{self.multiplier:g} "
                f"({self.strategy}; a uniform draw would put {self.biased_share():.0%} of the steps there)")

    @cached_property
    def _acceptance(self) -> torch.Tensor:
        """Chance of keeping a candidate, per timestep: weight / max weight (built once, not every step)."""
        w = self.weights()
        return w / w.max()

    def draw(self, sample: Sampler, schedule: Any, batch: int, generator: torch.Generator) -> torch.Tensor:
        """`batch` timesteps from the family's sampler, reweighted by the bias (rejection sampling)."""
        accept = self._acceptance
        total = num_train_timesteps(schedule)
        kept: list[torch.Tensor] = []
        have = 0
        for _ in range(MAX_ROUNDS):
            candidates = sample(schedule, max(OVERDRAW * batch, 16), generator)
            index = (candidates.float() / total * BINS).long().clamp(0, BINS - 1)
            chosen = candidates[torch.rand(len(candidates), generator=generator) < accept[index]]
            kept.append(chosen)
            have += len(chosen)
            if have >= batch:
                return torch.cat(kept)[:batch]
        raise RuntimeError(f"{self.describe()}: the family's timestep draw never reached the biased weights "
                           f"({have} of {batch} timesteps after {MAX_ROUNDS} rounds)")
