"""Aspect-ratio buckets: the training size (width, height) of each image (SimpleTuner's dataloader keys).

A micro-batch must hold latents of one shape, so every image gets a target size decided from its own
aspect ratio and its bucket's `resolution` / `resolution_type` / `crop*` keys, rounded to the family's
alignment (VAE downsampling × transformer patch). The size is decided once per image, from the image
header alone, so the plan, the cache key and the step all agree; a paired negative takes its
positive's size so the two stay comparable latent for latent.

Units follow SimpleTuner: `pixel` = short side in pixels, `area` = megapixels, `pixel_area` = the side
of a square of the same area, in pixels (1024 → about 1024² pixels at any aspect).
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass

from sliderstudio.config.config import BucketConfig

Size = tuple[int, int]  # (width, height) in pixels

DEFAULT_ALIGNMENT = 16  # VAE ×8 and 2×2 patches: what most transformer families need


@dataclass(frozen=True)
class SizeRule:
    """Everything besides the image itself that decides its training size."""

    resolution: float
    resolution_type: str
    alignment: int
    crop: bool
    crop_aspect: str
    crop_aspect_buckets: tuple[float, ...]
    seed: int

    def describe(self) -> str:
        return (f"{self.resolution:g} {self.resolution_type}, alignment {self.alignment}, "
                f"crop {'on' if self.crop else 'off'} ({self.crop_aspect})")


def effective_resolution(bucket: BucketConfig, default: float) -> tuple[float, str]:
    """The bucket's resolution and its unit; a small float with `pixel` means megapixels (older configs)."""
    res = float(bucket.resolution if bucket.resolution is not None else default)
    kind = bucket.resolution_type
    if kind == "pixel" and res < 8:
        kind = "area"
    return res, kind


def size_rule(bucket: BucketConfig, default_resolution: float, alignment: int, seed: int) -> SizeRule:
    res, kind = effective_resolution(bucket, default_resolution)
    return SizeRule(res, kind, alignment, bucket.crop, bucket.crop_aspect,
                    tuple(bucket.crop_aspect_buckets or ()), seed)


def image_measure(size: Size, resolution_type: str) -> float:
    """An image's size in the unit `resolution_type` uses (for minimum/maximum_image_size)."""
    w, h = size
    if resolution_type == "area":
        return w * h / 1_000_000
    if resolution_type == "pixel_area":
        return math.sqrt(w * h)
    return float(min(w, h))


def target_area(rule: SizeRule) -> float | None:
    """Pixels of the target for area-based types; None for `pixel` (short side instead)."""
    if rule.resolution_type == "area":
        return rule.resolution * 1_000_000
    if rule.resolution_type == "pixel_area":
        return rule.resolution ** 2
    return None


def align(value: float, alignment: int) -> int:
    return max(alignment, int(round(value / alignment)) * alignment)


def size_for_aspect(aspect: float, rule: SizeRule) -> Size:
    """(w, h) with w/h ≈ `aspect` at the rule's resolution, both sides multiples of the alignment."""
    area = target_area(rule)
    if area is None:
        short = rule.resolution
        w, h = (short * aspect, short) if aspect >= 1 else (short, short / aspect)
    else:
        w, h = math.sqrt(area * aspect), math.sqrt(area / aspect)
    return align(w, rule.alignment), align(h, rule.alignment)


def bucket_aspect(image: Size, rule: SizeRule, key: str) -> float:
    """The aspect ratio the image trains at; `key` (file stem) seeds `crop_aspect: random`."""
    own = image[0] / image[1]
    if rule.crop and rule.crop_aspect == "square":
        return 1.0
    choices = rule.crop_aspect_buckets
    if not rule.crop or rule.crop_aspect == "preserve" or not choices:
        return own
    if rule.crop_aspect == "random":
        return random.Random(f"{rule.seed}:{key}").choice(choices)
    return min(choices, key=lambda a: (abs(math.log(a / own)), a))  # closest


def target_size(image: Size, rule: SizeRule, key: str) -> Size:
    return size_for_aspect(bucket_aspect(image, rule, key), rule)


def label(size: Size | None) -> str:
    """How a plan line shows an aspect bucket: 64x96 (one token, so the columns stay split-able)."""
    return "-" if size is None else f"{size[0]}x{size[1]}"

