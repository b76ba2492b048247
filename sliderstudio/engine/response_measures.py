"""How far a render moved from the strength-0 render, and whether it broke down (any model, offline).

Why a generic measure: for a real model there is no attribute meter for "smile" or "age", but two
things can always be measured without a network or a classifier:

- the *distance* of each render to the strength-0 render of the same prompt and seed, in pixel
  space (RMS over RGB in 0-1) and in the model's latent space (the latents the VAE decoded,
  relative to the strength-0 latents' norm). A slider that works moves them more the further the
  dial goes; where the distance stops growing the slider has saturated.
- a *breakdown* check: the render's own statistics leaving the band of the strength-0 render's.
  Broken sliders turn images into noise (much more high-frequency energy), wash them out into a
  flat field (variance collapse), or blow the colours out (saturation jumps). Thresholds were set
  on the toy model's sweeps from -8 to +8 (docs/USING-SLIDERS.md, "Calibrated range").

Numpy only; the renders arrive as PIL images or arrays, the latents as numpy arrays.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

#: Broken when the high-frequency energy grows past this multiple of the strength-0 render's.
NOISE_RATIO = 1.6
#: Broken when the pixel standard deviation falls below this fraction of the strength-0 render's.
FLAT_RATIO = 0.35
#: Broken when the mean saturation moves further than this from the strength-0 render's (0-1 scale).
SATURATION_SHIFT = 0.3


@dataclass(frozen=True)
class ImageStats:
    """A render's own statistics, all on 0-1 pixel values."""

    saturation: float  # mean HSV saturation
    contrast: float  # standard deviation over all pixels and channels
    high_freq: float  # mean |Laplacian| of the grey image

    def to_dict(self) -> dict:
        return asdict(self)


def pixels(image) -> np.ndarray:
    """HxWx3 float array in 0-1 from a PIL image or an array in 0-255."""
    arr = np.asarray(image.convert("RGB") if hasattr(image, "convert") else image, dtype=np.float64)
    if arr.ndim != 3 or arr.shape[2] < 3:
        raise ValueError(f"expected an RGB image, got shape {arr.shape}")
    return arr[:, :, :3] / 255.0


def image_stats(image) -> ImageStats:
    a = pixels(image)
    hi, lo = a.max(axis=2), a.min(axis=2)
    saturation = np.where(hi > 0, (hi - lo) / np.maximum(hi, 1e-9), 0.0)
    grey = a.mean(axis=2)
    lap = np.abs(4 * grey[1:-1, 1:-1] - grey[:-2, 1:-1] - grey[2:, 1:-1] - grey[1:-1, :-2] - grey[1:-1, 2:])
    return ImageStats(float(saturation.mean()), float(a.std()), float(lap.mean()) if lap.size else 0.0)


def pixel_distance(image, reference) -> float:
    """RMS difference in 0-1 RGB: 0 for the same image, ~0.5 for unrelated noise."""
    a, b = pixels(image), pixels(reference)
    if a.shape != b.shape:
        raise ValueError(f"images differ in size: {a.shape} vs {b.shape}")
    return float(np.sqrt(np.mean((a - b) ** 2)))


def latent_distance(latent: np.ndarray, reference: np.ndarray) -> float:
    """Norm of the difference relative to the reference's norm (scale-free across families)."""
    a, b = np.asarray(latent, np.float64), np.asarray(reference, np.float64)
    return float(np.linalg.norm(a - b) / max(float(np.linalg.norm(b)), 1e-12))


def breakdown_reason(stats: ImageStats, reference: ImageStats) -> str | None:
    """Why a render has broken down next to its strength-0 render, or None.

    'noise': high-frequency energy beyond NOISE_RATIO x the reference's; 'flat': contrast below
    FLAT_RATIO x the reference's; 'saturation': mean saturation moved by more than SATURATION_SHIFT.
    """
    if stats.high_freq > NOISE_RATIO * max(reference.high_freq, 1e-3):
        return "noise"
    if stats.contrast < FLAT_RATIO * reference.contrast:
        return "flat"
    if abs(stats.saturation - reference.saturation) > SATURATION_SHIFT:
        return "saturation"
    return None
