"""Encoding images whose training sizes differ (aspect buckets): one encoder call per size, cache tags per image.

`torch.stack` needs one shape, so a chunk of cache misses is split by size, encoded group by group and
put back in the caller's order. Each image's cache tag carries its own size, so a latent cached at one
aspect bucket is never served for another.
"""
from __future__ import annotations

from typing import Callable

import torch

from sliderstudio.engine.aspect_buckets import Size
from sliderstudio.engine.buckets import ScannedBucket
from sliderstudio.engine.caches import transform_tag


def image_size(s: ScannedBucket, index: int, fallback: int) -> Size:
    """The image's aspect-bucket size, or the bucket's square when sizes were not assigned."""
    return s.target(index) or (fallback, fallback)


def image_tags(s: ScannedBucket, fallback: int, seed: int) -> list[str]:
    b = s.bucket
    downsample = (b.maximum_image_size, b.target_downsample_size, b.resolution_type)
    return [transform_tag(image_size(s, i, fallback), b.crop, crop_tag(s, i), seed, downsample)
            for i in range(s.count)]


def crop_tag(s: ScannedBucket, index: int) -> str:
    """The crop style, plus the face centre for face crops (a changed detection must re-encode)."""
    if s.bucket.crop and s.bucket.crop_style == "face":
        from sliderstudio.engine.face_crops import tag

        return f"face/{tag(s.focus_at(index))}"
    return s.bucket.crop_style


def encode_by_size(indices: list[int], size_of: Callable[[int], Size], load: Callable[[int], torch.Tensor],
                   encode: Callable[[torch.Tensor], torch.Tensor | list[torch.Tensor]]) -> list[torch.Tensor]:
    """Encode `indices` in groups of one size; results come back in the order of `indices`."""
    groups: dict[Size, list[int]] = {}
    for i in indices:
        groups.setdefault(size_of(i), []).append(i)
    out: dict[int, torch.Tensor] = {}
    for members in groups.values():
        encoded = encode(torch.stack([load(i) for i in members]))
        out.update(zip(members, list(encoded)))
    return [out[i] for i in indices]
