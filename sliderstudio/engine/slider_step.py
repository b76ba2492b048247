"""One slider micro-batch (SPEC §2): set the slider's scale, ordinary denoising loss, restore.

- Signed buckets: the slider is scaled by the bucket's strength and the target is the true one
  (ε, v or flow velocity). No sign flip, no loss weighting.
- Neutral buckets (preserve): the slider is applied at ±m and the target is the base model's own
  prediction on the same noisy input (slider at 0, no grad).
- Paired negatives reuse the noise and timesteps of the positive batch they follow.
- `slider_preserve_weight` scales the neutral (anchor) loss against the signed ones.
- Micro-batches that share an optimizer step (`slider_step_mode: "cycle"`: a positive, its paired
  negative and a neutral) run as ONE forward with a per-sample adapter strength where their latents
  share a shape and the adapter is linear in its strength; otherwise one forward each.
Noise and timesteps come from a generator seeded by (seed, micro-batch index), so a resumed run
draws exactly what an uninterrupted one would. They are drawn for the whole global micro-batch and
each process keeps its items' rows, so several processes (engine.distributed) draw what one would.
"""
from __future__ import annotations

import random
from contextlib import nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, ContextManager, Sequence

import torch
import torch.nn.functional as F

from sliderstudio.config.caption_variants import choose
from sliderstudio.engine.sampler import MicroBatch
from sliderstudio.adapters.slider_adapter import PeftSlider, SliderAdapter
from sliderstudio.engine.losses import SliderLoss
from sliderstudio.engine.snr_weighting import MinSnrWeight
from sliderstudio.engine.timestep_bias import TimestepBias
from sliderstudio.families.base import Conditioning, Family

if TYPE_CHECKING:
    from sliderstudio.engine.text_slider import TextSlider


@dataclass
class StepData:
    """Everything cached for training: latents by (bucket, image index), conditioning by caption."""

    latents: dict[tuple[str, int], torch.Tensor]
    captions: dict[tuple[str, int], str | tuple[str, ...]]  # several: a caption file's lines (caption_variants)
    conditioning: dict[str, Conditioning]
    image_size: dict[str, int]
    control: dict[tuple[str, int], torch.Tensor] | None = None  # ControlNet conditioning images in [0, 1]
    sizes: dict[tuple[str, int], tuple[int, int]] | None = None  # (width, height) of each image's aspect bucket

    def collate_size(self, mb: MicroBatch) -> int | tuple[int, int]:
        """What the family's collate gets: the bucket side, or (height, width) of a non-square batch."""
        size = self.sizes.get((mb.bucket_id, mb.items[0])) if self.sizes else None
        if size is None or size[0] == size[1]:
            return size[0] if size else self.image_size[mb.bucket_id]
        return size[1], size[0]


@dataclass
class SliderStep:
    family: Family
    denoiser: torch.nn.Module
    schedule: Any
    data: StepData
    seed: int
    device: torch.device
    dtype: torch.dtype
    caption_dropout: float = 0.0
    noise_offset: float = 0.0
    autocast: Callable[[], ContextManager] = nullcontext
    adapter: SliderAdapter | None = None  # None: the PEFT `slider` adapter on the denoiser
    loss_fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor] | None = None  # None: MSE
    noise_offset_probability: float = 1.0  # SimpleTuner's: the share of micro-batches that get the offset
    preserve_weight: float = 1.0  # slider_preserve_weight: the neutral/anchor loss against the signed ones
    text: TextSlider | None = None  # text-pair sliders (engine.text_slider): their micro-batches use that objective
    timestep_bias: TimestepBias | None = None  # SimpleTuner's timestep_bias_* keys (engine.timestep_bias)
    snr_weight: MinSnrWeight | None = None  # SimpleTuner's snr_gamma (engine.snr_weighting)

    def __post_init__(self) -> None:
        if self.adapter is None:
            self.adapter = PeftSlider(self.denoiser, "")

    def generator(self, index: int) -> torch.Generator:
        return torch.Generator("cpu").manual_seed((self.seed * 1_000_003 + index) % (2**63))

    def noise_for(self, mb: MicroBatch, shape: torch.Size) -> tuple[torch.Tensor, torch.Tensor]:
        """Noise and timesteps of this micro-batch; a paired negative redraws its positive's.

        Redrawing from the positive's seed instead of remembering its tensors keeps the pairing
        exact across a resume that starts between the two batches.
        """
        source = mb.index - 1 if mb.paired else mb.index
        g = self.generator(source)
        local = shape[0]
        shape = torch.Size((mb.global_size or local, *shape[1:]))  # drawn per global item (engine.distributed)
        noise = torch.randn(shape, generator=g)
        if self.noise_offset:
            # one offset per sample and channel, broadcast over the rest (H, W, and frames for video latents);
            # always drawn, so whether it applies never changes the timesteps drawn after it
            per_channel = (shape[0], shape[1], *([1] * (len(shape) - 2)))
            offset = self.noise_offset * torch.randn(per_channel, generator=g)
            if self.noise_offset_probability >= 1 or \
                    random.Random(f"{self.seed}:{source}:offset").random() < self.noise_offset_probability:
                noise = noise + offset
        if self.timestep_bias is None:
            timesteps = self.family.sample_timesteps(self.schedule, shape[0], g)
        else:
            timesteps = self.timestep_bias.draw(self.family.sample_timesteps, self.schedule, shape[0], g)
        if mb.global_size:  # this process's rows: the same draws whatever the number of processes
            rows = torch.tensor(mb.positions, dtype=torch.long)
            return noise[rows], timesteps[rows]
        return noise, timesteps

    def caption(self, mb: MicroBatch, item: int) -> str:
        text = choose(self.data.captions[(mb.bucket_id, item)], self.seed, mb.index, item)
        if self.caption_dropout and random.Random(f"{self.seed}:{mb.index}:{item}").random() < self.caption_dropout:
            return ""
        return text

    def inputs(self, mb: MicroBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, Conditioning]:
        noisy, timesteps, target = self.noised(mb)
        cond = self.family.collate(self.conds(mb), self.device, self.dtype, self.data.collate_size(mb))
        return noisy, timesteps, target, cond

    def noised(self, mb: MicroBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(noisy latents, timesteps, true target) of the micro-batch, on the training device."""
        latents = torch.stack([self.data.latents[(mb.bucket_id, i)] for i in mb.items])
        noise, timesteps = self.noise_for(mb, latents.shape)
        noisy, target = self.family.noisy_and_target(self.schedule, latents, noise, timesteps)
        return noisy.to(self.device, self.dtype), timesteps.to(self.device), target.to(self.device)

    def conds(self, mb: MicroBatch) -> list[Conditioning]:
        return [self.data.conditioning[self.caption(mb, i)] for i in mb.items]

    def control_for(self, mb: MicroBatch) -> ContextManager:
        """ControlNet runs: the batch's conditioning images in force on the wrapped denoiser."""
        if self.data.control is None:
            return nullcontext()
        images = torch.stack([self.data.control[(mb.bucket_id, i)] for i in mb.items])
        return self.denoiser.conditioned_on(images.to(self.device, self.dtype))

    def weight(self, mb: MicroBatch) -> float:
        """The anchor weight, times this process's share of a split micro-batch (1 in one process)."""
        return (self.preserve_weight if mb.preserve else 1.0) * mb.share

    def loss(self, mb: MicroBatch) -> torch.Tensor:
        """The micro-batch's weighted loss with the slider scaled by its strength (graph kept for backward)."""
        return self.weight(mb) * self._loss(mb)

    def _loss(self, mb: MicroBatch) -> torch.Tensor:
        if self.text is not None and self.text.owns(mb):
            return self.text.loss(self, mb)
        noisy, timesteps, target, cond = self.inputs(mb)
        with self.control_for(mb):
            if mb.preserve:
                with torch.no_grad(), self.adapter.strength(0.0), self.autocast():
                    target = self.family.predict(self.denoiser, noisy, timesteps, cond)
            with self.adapter.strength(mb.strength), self.autocast():
                pred = self.family.predict(self.denoiser, noisy, timesteps, cond)
        return self._error(pred, target, timesteps)

    def _error(self, pred: torch.Tensor, target: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """The loss (MSE, or loss_type huber / smooth_l1: engine.losses), min-SNR weighted per sample if set."""
        if self.snr_weight is None:
            if self.loss_fn is not None:
                return self.loss_fn(pred, target, timesteps)
            return F.mse_loss(pred.float(), target.float())
        per_sample = (self.loss_fn or SliderLoss()).per_sample(pred, target, timesteps)  # SliderLoss(): MSE
        return (per_sample * self.snr_weight(timesteps.to(per_sample.device))).mean()

    # --- several micro-batches in one forward ---------------------------------------------------
    def fusable(self, mbs: Sequence[MicroBatch]) -> bool:
        """One forward can serve these micro-batches: same latent shape, no ControlNet image, and an
        adapter whose output is linear in its strength (so a per-sample factor equals a per-batch scale)."""
        if len(mbs) < 2 or self.data.control is not None or not self.adapter.batched:
            return False
        if not all(mb.items for mb in mbs):
            return False  # this process has no share of one of them (engine.distributed)
        if self.text is not None and any(self.text.owns(mb) for mb in mbs):
            return False  # a text pair's micro-batch has its own objective (engine.text_slider)
        shapes = {tuple(self.data.latents[(mb.bucket_id, mb.items[0])].shape) for mb in mbs}
        sizes = {self.data.collate_size(mb) for mb in mbs}
        return len(shapes) == 1 and len(sizes) == 1

    def fused_loss(self, mbs: Sequence[MicroBatch]) -> torch.Tensor:
        """Mean of the micro-batches' weighted losses, from ONE forward with a per-sample strength.

        Why: ai-toolkit and Concept Sliders push +s and −s through every optimizer step; doing both
        (and the anchor) in one batched forward costs about one forward instead of three. Each part
        keeps its own noise and timesteps (a paired negative shares its positive's), and neutral
        parts get their base-model target from one no-grad forward at strength 0.
        """
        parts = [(*self.noised(mb), self.conds(mb)) for mb in mbs]
        size = self.data.collate_size(mbs[0])
        targets = [p[2] for p in parts]
        kept = [i for i, mb in enumerate(mbs) if mb.preserve]
        if kept:
            base = self._forward([parts[i] for i in kept], [0.0] * sum(len(mbs[i].items) for i in kept), size,
                                 grad=False)
            for i, pred in zip(kept, base.split([len(mbs[i].items) for i in kept])):
                targets[i] = pred
        strengths = [mb.strength for mb in mbs for _ in mb.items]
        preds = self._forward(parts, strengths, size).split([len(mb.items) for mb in mbs])
        losses = [self.weight(mb) * self._error(pred, target, part[1])
                  for mb, pred, target, part in zip(mbs, preds, targets, parts)]
        return torch.stack(losses).sum() / len(mbs)

    def _forward(self, parts: list, strengths: list[float], size: int | tuple[int, int],
                 grad: bool = True) -> torch.Tensor:
        """One denoiser forward over the concatenated parts, each sample at its own slider strength."""
        noisy = torch.cat([p[0] for p in parts])
        timesteps = torch.cat([p[1] for p in parts])
        cond = self.family.collate([c for p in parts for c in p[3]], self.device, self.dtype, size)
        scale = self.adapter.strength(0.0) if not any(strengths) else self.adapter.per_sample(strengths)
        with (nullcontext() if grad else torch.no_grad()), scale, self.autocast():
            return self.family.predict(self.denoiser, noisy, timesteps, cond)
