"""Which way does the slider point? A test with the model's own denoising loss (any family).

Why the loss: "does +1 add the concept named by the positive bucket" needs an independent judge of
the concept, and for a real model there is none offline except the model itself. The slider was
trained so that its prediction at the positive strengths fits the positive images' true targets and
at the negative strengths the negative ones'. For the same noise and timestep, a slider that points
the right way therefore denoises the positive images better at +m than at -m, and the negative
images better at -m than at +m. The margin is

    (L_pos(-m) - L_pos(+m) + L_neg(+m) - L_neg(-m)) / mean of the four losses

positive when +m adds what the positive buckets show. m is the largest trained strength.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch

#: Micro-batches per side (positive, negative) the test uses: enough to average out one odd image.
BATCHES_PER_SIDE = 4
#: How far into the sampling order to look for signed micro-batches.
SEARCH = 64


def signed_batches(step: Any, sampler: Any, per_side: int = BATCHES_PER_SIDE) -> tuple[list[Any], list[Any]]:
    """The first `per_side` positive and negative image micro-batches of the sampling order."""
    pos, neg = [], []
    text = getattr(step, "text", None)  # text-pair micro-batches have no images to denoise
    for mb in sampler.take(SEARCH):
        if mb.preserve or mb.strength == 0 or (text is not None and text.owns(mb)):
            continue
        side = pos if mb.strength > 0 else neg
        if len(side) < per_side:
            side.append(mb)
        if len(pos) >= per_side and len(neg) >= per_side:
            break
    return pos, neg


def _mean_loss(step: Any, batches: list[Any], strength: float) -> float:
    with torch.no_grad():
        return float(sum(float(step.loss(replace(mb, strength=strength))) for mb in batches) / len(batches))


def loss_polarity(step: Any, sampler: Any, magnitude: float) -> dict[str, Any] | None:
    """The four losses and the margin (see the module docstring), or None without signed image buckets."""
    pos, neg = signed_batches(step, sampler)
    if not pos or not neg or magnitude <= 0:
        return None
    losses = {"positive_at_plus": _mean_loss(step, pos, magnitude), "positive_at_minus": _mean_loss(step, pos, -magnitude),
              "negative_at_plus": _mean_loss(step, neg, magnitude), "negative_at_minus": _mean_loss(step, neg, -magnitude)}
    mean = sum(losses.values()) / 4
    margin = (losses["positive_at_minus"] - losses["positive_at_plus"]
              + losses["negative_at_plus"] - losses["negative_at_minus"]) / max(mean, 1e-12)
    return {"strength": magnitude, "batches": [len(pos), len(neg)], "margin": margin,
            **{k: round(v, 6) for k, v in losses.items()}}
