"""One slider micro-batch (SPEC §2): set the slider's scale, ordinary denoising loss, restore.

- Signed buckets: the slider is scaled by the bucket's strength and the target is the true one
  (ε, v or flow velocity). No sign flip, no loss weighting.
- Neutral buckets (preserve): the slider is applied at ±m and the target is the base model's own
  prediction on the same noisy input (slider at 0, no grad).
- Paired negatives reuse the noise and timesteps of the positive batch they follow.
Noise and timesteps come from a generator seeded by (seed, micro-batch index), so a resumed run
draws exactly what an uninterrupted one would. They are drawn for the whole global micro-batch and
each process keeps its items' rows, so several processes (core.distributed) draw what one would.
"""
from __future__ import annotations

import random
from contextlib import nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, ContextManager

import torch
import torch.nn.functional as F

from sliderstudio.core.sampler import MicroBatch
from sliderstudio.core.slider_adapter import PeftSlider, SliderAdapter
from sliderstudio.families.base import Conditioning, Family

if TYPE_CHECKING:
    from sliderstudio.core.text_slider import TextSlider


@dataclass
class StepData:
    """Everything cached for training: latents by (bucket, image index), conditioning by caption."""

    latents: dict[tuple[str, int], torch.Tensor]
    captions: dict[tuple[str, int], str]
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
    text: TextSlider | None = None  # text-pair sliders (core.text_slider): their micro-batches use that objective

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
        shape = torch.Size((mb.global_size or local, *shape[1:]))  # drawn per global item (core.distributed)
        noise = torch.randn(shape, generator=g)
        if self.noise_offset:
            # one offset per sample and channel, broadcast over the rest (H, W, and frames for video latents);
            # always drawn, so whether it applies never changes the timesteps drawn after it
            per_channel = (shape[0], shape[1], *([1] * (len(shape) - 2)))
            offset = self.noise_offset * torch.randn(per_channel, generator=g)
            if self.noise_offset_probability >= 1 or \
                    random.Random(f"{self.seed}:{source}:offset").random() < self.noise_offset_probability:
                noise = noise + offset
        timesteps = self.family.sample_timesteps(self.schedule, shape[0], g)
        if mb.global_size:  # this process's rows: the same draws whatever the number of processes
            rows = torch.tensor(mb.positions, dtype=torch.long)
            return noise[rows], timesteps[rows]
        return noise, timesteps

    def caption(self, mb: MicroBatch, item: int) -> str:
        text = self.data.captions[(mb.bucket_id, item)]
        if self.caption_dropout and random.Random(f"{self.seed}:{mb.index}:{item}").random() < self.caption_dropout:
            return ""
        return text

    def inputs(self, mb: MicroBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, Conditioning]:
        latents = torch.stack([self.data.latents[(mb.bucket_id, i)] for i in mb.items])
        noise, timesteps = self.noise_for(mb, latents.shape)
        noisy, target = self.family.noisy_and_target(self.schedule, latents, noise, timesteps)
        conds = [self.data.conditioning[self.caption(mb, i)] for i in mb.items]
        cond = self.family.collate(conds, self.device, self.dtype, self.data.collate_size(mb))
        return (noisy.to(self.device, self.dtype), timesteps.to(self.device), target.to(self.device), cond)

    def control_for(self, mb: MicroBatch) -> ContextManager:
        """ControlNet runs: the batch's conditioning images in force on the wrapped denoiser."""
        if self.data.control is None:
            return nullcontext()
        images = torch.stack([self.data.control[(mb.bucket_id, i)] for i in mb.items])
        return self.denoiser.conditioned_on(images.to(self.device, self.dtype))

    def loss(self, mb: MicroBatch) -> torch.Tensor:
        """The micro-batch's loss with the slider scaled by its strength (graph kept for backward),
        weighed by this process's share of a split micro-batch (1 in one process)."""
        if self.text is not None and self.text.owns(mb):
            return mb.share * self.text.loss(self, mb)
        noisy, timesteps, target, cond = self.inputs(mb)
        with self.control_for(mb):
            if mb.preserve:
                with torch.no_grad(), self.adapter.strength(0.0), self.autocast():
                    target = self.family.predict(self.denoiser, noisy, timesteps, cond)
            with self.adapter.strength(mb.strength), self.autocast():
                pred = self.family.predict(self.denoiser, noisy, timesteps, cond)
        if self.loss_fn is not None:  # loss_type huber / smooth_l1 (core.losses)
            return mb.share * self.loss_fn(pred, target, timesteps)
        return mb.share * F.mse_loss(pred.float(), target.float())
