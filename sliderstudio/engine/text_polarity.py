"""Which way does a text-pair slider point? The image polarity test, with the text objective's targets.

Why a test at all, when the objective says +s moves towards (positive − negative): training may not
have learned it (too few steps, a rate that diverged, a guidance that drowned in the anchors), and
the dial's metadata should say what the slider *does*, not what it was asked. A text pair has no
images to denoise, so `polarity.loss_polarity` skips it; here the same margin is computed against
the pair's own targets (`text_slider.text_target`) on the base renders it trained on: for the same
noisy latent and timestep, a slider that points the right way fits the +m target better at +m than
at −m and the −m target better at −m than at +m. The margin

    (L₊(−m) − L₊(+m) + L₋(+m) − L₋(−m)) / mean of the four losses

is positive when +m moves the neutral prediction towards the positive prompt's; `calibration.
decide_polarity` reads it like the image test's (the same POLARITY_MARGIN). Any family: everything
goes through the Family interface, as the training loss does.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from sliderstudio.engine.polarity import BATCHES_PER_SIDE, SEARCH
from sliderstudio.engine.text_slider import TextSlider, text_target


def text_batches(step: Any, sampler: Any, limit: int = BATCHES_PER_SIDE) -> list[Any]:
    """The first `limit` positive text-pair micro-batches of the sampling order (each pair's +s side)."""
    text = getattr(step, "text", None)
    if text is None:
        return []
    found = [mb for mb in sampler.take(SEARCH) if text.owns(mb) and mb.strength > 0]
    return found[:limit]


def _losses(step: Any, mb: Any, magnitude: float) -> dict[str, float]:
    """The four losses of one micro-batch: the slider at ±m against the +m and −m targets."""
    data = step.text.pairs[mb.bucket_id]
    latents = data.renders[list(mb.items)]
    noise, timesteps = step.noise_for(mb, latents.shape)
    noisy, _ = step.family.noisy_and_target(step.schedule, latents, noise, timesteps)
    noisy, timesteps = noisy.to(step.device, step.dtype), timesteps.to(step.device)
    n = len(mb.items)
    with step.adapter.strength(0.0), step.autocast():
        base = TextSlider._predict(step, data, noisy, timesteps, [data.neutral, data.positive, data.negative])
    neutral, positive, negative = base.float().split(n)
    targets = {sign: text_target(neutral, positive, negative, sign * magnitude, data.pair.eta(sign * magnitude))
               for sign in (1.0, -1.0)}
    out = {}
    for sign, name in ((1.0, "plus"), (-1.0, "minus")):
        with step.adapter.strength(sign * magnitude), step.autocast():
            pred = TextSlider._predict(step, data, noisy, timesteps, [data.neutral]).float()
        out[f"positive_at_{name}"] = float(F.mse_loss(pred, targets[1.0]))
        out[f"negative_at_{name}"] = float(F.mse_loss(pred, targets[-1.0]))
    return out


def text_loss_polarity(step: Any, sampler: Any, magnitude: float | None = None) -> dict[str, Any] | None:
    """The four mean losses and the margin (module docstring), or None without text pairs.

    `magnitude`: the strength tested (default: each micro-batch's own trained strength).
    """
    batches = text_batches(step, sampler)
    if not batches:
        return None
    totals: dict[str, float] = {}
    with torch.no_grad():
        for mb in batches:
            for key, value in _losses(step, mb, magnitude or abs(mb.strength)).items():
                totals[key] = totals.get(key, 0.0) + value / len(batches)
    mean = sum(totals.values()) / 4
    margin = (totals["positive_at_minus"] - totals["positive_at_plus"]
              + totals["negative_at_plus"] - totals["negative_at_minus"]) / max(mean, 1e-12)
    return {"kind": "text pairs", "strength": magnitude or abs(batches[0].strength),
            "batches": [len(batches), len(batches)], "margin": margin,
            **totals}
