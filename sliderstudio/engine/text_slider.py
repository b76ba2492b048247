"""The text-pair slider objective (Concept Sliders' textual sliders, SPEC §2.6): no images needed.

For a noisy latent x_t the frozen base (slider at 0) predicts with the neutral, positive and
negative prompts; the slider at strength s, prompted with the neutral prompt, must predict

    target(s) = ε(x_t, neutral) + s · η · (ε(x_t, positive) − ε(x_t, negative))

(the mirrored micro-batch at −s reuses the same x_t, noise and timestep), and with each anchor
prompt it must predict what the base does (preservation, weighted by `anchor_weight`). The
combination is linear in the prediction, so it holds for ε, v and flow-velocity families alike;
everything goes through the Family interface (encode_prompts, collate, noisy_and_target, predict).

Where x_t comes from: Concept Sliders denoises fresh noise part-way with the neutral prompt at every
step (up to ~50 forwards per step). Here the frozen base renders the neutral prompt `samples` times
once, before training (seeds fixed, so a resumed run has the same renders), and each micro-batch
noises one render to a sampled timestep with the family's own schedule. The slider thus trains on
the base's own images at every noise level, like an image slider on its data, at the cost of one
prediction batch per step; measured in docs/TRAINING.md.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch

from sliderstudio.config.text_pairs import TextPair, active_pairs, negative_id, positive_id
from sliderstudio.families.base import Conditioning, Family

if TYPE_CHECKING:
    from sliderstudio.engine.sampler import MicroBatch
    from sliderstudio.adapters.slider_adapter import SliderAdapter
    from sliderstudio.engine.slider_step import SliderStep

Logger = Callable[[str, str], None]


def text_target(neutral: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor, strength: float,
                guidance: float) -> torch.Tensor:
    """What the slider at `strength` must predict: the neutral prediction moved along the concept."""
    return neutral + (strength * guidance) * (positive - negative)


@dataclass
class PairData:
    """One pair ready to train: its settings, encoded prompts and the base renders' latents."""

    pair: TextPair
    neutral: Conditioning
    positive: Conditioning
    negative: Conditioning
    anchors: list[Conditioning]
    renders: torch.Tensor  # (samples, *latent shape): the frozen base's renders of the neutral prompt
    size: int  # render side in pixels (what collate's size conditioning needs)


@dataclass
class TextSlider:
    """The text objective for every micro-batch that belongs to a text pair (by sampler entry id)."""

    pairs: dict[str, PairData]  # sampler entry id (both + and −) → its pair

    def owns(self, mb: MicroBatch) -> bool:
        return mb.bucket_id in self.pairs

    def loss(self, step: SliderStep, mb: MicroBatch) -> torch.Tensor:
        """The micro-batch's loss with the slider at mb.strength (graph kept for backward)."""
        data = self.pairs[mb.bucket_id]
        latents = data.renders[list(mb.items)]
        noise, timesteps = step.noise_for(mb, latents.shape)
        noisy, _ = step.family.noisy_and_target(step.schedule, latents, noise, timesteps)
        n = len(mb.items)
        noisy, timesteps = noisy.to(step.device, step.dtype), timesteps.to(step.device)
        prompts = [data.neutral, data.positive, data.negative, *data.anchors]
        with torch.no_grad(), step.adapter.strength(0.0), step.autocast():
            base = self._predict(step, data, noisy, timesteps, prompts).float()
        parts = base.split(n)
        target = text_target(parts[0], parts[1], parts[2], mb.strength, data.pair.eta(mb.strength))
        trained = [data.neutral, *data.anchors]
        with step.adapter.strength(mb.strength), step.autocast():
            pred = self._predict(step, data, noisy, timesteps, trained).float()
        loss = self._distance(step, pred[:n], target, timesteps)
        if data.anchors and data.pair.anchor_weight > 0:
            anchor_target = torch.cat(parts[3:])
            loss = loss + data.pair.anchor_weight * self._distance(step, pred[n:], anchor_target,
                                                                   timesteps.repeat(len(data.anchors)))
        return loss

    @staticmethod
    def _predict(step: SliderStep, data: PairData, noisy: torch.Tensor, timesteps: torch.Tensor,
                 prompts: list[Conditioning]) -> torch.Tensor:
        """One forward for the batch under each prompt in turn (prompt-major order)."""
        n = noisy.shape[0]
        conds = [c for c in prompts for _ in range(n)]
        cond = step.family.collate(conds, step.device, step.dtype, data.size)
        k = len(prompts)
        return step.family.predict(step.denoiser, noisy.repeat(k, *([1] * (noisy.dim() - 1))),
                                   timesteps.repeat(k), cond)

    @staticmethod
    def _distance(step: SliderStep, pred: torch.Tensor, target: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """The step's own loss (loss_type, min-SNR weighting), so text pairs train like image buckets."""
        return step._error(pred, target, timesteps)


# ----------------------------------------------------------------------------- set-up before training

def pair_prompts(pairs: dict[str, TextPair]) -> list[str]:
    """Every prompt the pairs need encoded, once each, in a stable order."""
    prompts = {p for pair in pairs.values() for p in (pair.neutral, pair.positive, pair.negative, *pair.anchors)}
    return sorted(prompts)


def to_pixels(image: Any) -> torch.Tensor:
    """A PIL render → (3, H, W) in [-1, 1], what Family.encode_images takes."""
    arr = np.asarray(image.convert("RGB"), dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(arr).permute(2, 0, 1)


def render_seed(seed: int, sample: int) -> int:
    """Seed of a pair's k-th base render: fixed by the run's seed, apart from validation's."""
    return (seed * 7919 + 104_729 * (sample + 1)) % (2**31)


def base_renders(family: Family, pipe: Any, pairs: dict[str, TextPair], adapter: SliderAdapter, seed: int,
                 steps: int, guidance: float, size: int) -> dict[str, torch.Tensor]:
    """The frozen base's renders of each pair's neutral prompt, as latents: name → (samples, …).

    One pipeline call per sample index covers every pair that has that many samples (the renders of
    one call share a seed, but their prompts differ), with the slider at 0.
    """
    latents: dict[str, list[torch.Tensor]] = {name: [] for name in pairs}
    most = max(p.samples for p in pairs.values())
    with torch.no_grad(), adapter.strength(0.0):
        for k in range(most):
            names = [name for name, p in pairs.items() if p.samples > k]
            images = family.render(pipe, [pairs[name].neutral for name in names], render_seed(seed, k), steps,
                                   guidance, size)
            encoded = family.encode_images(pipe, torch.stack([to_pixels(im) for im in images]))
            for name, latent in zip(names, encoded):
                latents[name].append(latent.float().cpu())
    return {name: torch.stack(items) for name, items in latents.items()}


def rendered_in_eval(family: Family, pipe: Any, pairs: dict[str, TextPair], adapter: SliderAdapter, seed: int,
                     steps: int, guidance: float, size: int) -> dict[str, torch.Tensor]:
    """base_renders with the denoiser in eval mode and any assistant adapter off, as validation renders
    (the training set-up has already switched both to training)."""
    from sliderstudio.adapters.adapters import ASSISTANT, slider_scale

    denoiser = family.denoiser(pipe)
    was_training = denoiser.training
    denoiser.eval()
    adapter.train(False)
    try:
        with slider_scale(denoiser, 0.0, ASSISTANT):
            return base_renders(family, pipe, pairs, adapter, seed, steps, guidance, size)
    finally:
        denoiser.train(was_training)
        adapter.train(was_training)


def prepare_text_slider(family: Family, pipe: Any, pairs: list[TextPair], adapter: SliderAdapter,
                        conditioning: Callable[[list[str]], dict[str, Conditioning]], seed: int, steps: int,
                        guidance: float, size: int, log: Logger) -> TextSlider | None:
    """Encode the pairs' prompts (through the feature cache) and render their training images."""
    active = active_pairs(pairs)
    if not active:
        return None
    conds = conditioning(pair_prompts(active))
    renders = rendered_in_eval(family, pipe, active, adapter, seed, steps, guidance, size)
    out: dict[str, PairData] = {}
    for name, pair in active.items():
        data = PairData(pair, conds[pair.neutral], conds[pair.positive], conds[pair.negative],
                        [conds[a] for a in pair.anchors], renders[name], size)
        out[positive_id(name)] = out[negative_id(name)] = data
    log(f"text pairs: {len(active)} ({', '.join(active)}), {sum(p.samples for p in active.values())} base renders "
        f"of their neutral prompts at {size} px", "info")
    return TextSlider(out)
