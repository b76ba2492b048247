"""Measure a slider from pixels: does the dial move one attribute, evenly, and nothing else?

Why pixels: a slider is judged by what it does to images, not by its loss. In the toy shapes world
(`sliderstudio.toy.world`: one flat shape on a flat background) every attribute can be read back
from a rendered image with simple, robust statistics, so a strength sweep (-1 ... +1 on a fixed
prompt and seed) can be scored with numbers instead of eyeballing:

- ``range``: how far the attribute moves (value at the highest strength minus at the lowest);
- ``spearman``: whether it moves monotonically with strength (+1 / -1 = perfectly monotonic);
- ``smoothness``: whether the steps are even (0 = equal steps, larger = jerkier);
- ``preservation``: how much the *other* attributes drift from their strength-0 values;
- ``collapsed``: images that are no longer one shape on a flat background (noise, blank, a mess).

Numpy only (PIL images are accepted as input); no Qt, so the app, the CLI and the tests share it.
"""

from __future__ import annotations

import colorsys
from dataclasses import asdict, dataclass, field
from typing import Iterable, Sequence

import numpy as np

from sliderstudio.toy.world import BACKGROUND_COLOURS, SHAPE_COLOURS
from sliderstudio.engine.sweep_stats import smoothness, spearman

#: Attributes a sweep can be scored on.
ATTRIBUTES: tuple[str, ...] = ("area", "brightness", "hue")
#: Minimum RGB distance from the background for a pixel to count as shape (noise floor).
MIN_CONTRAST = 24.0
#: Kind thresholds. Ideal shapes: circle (fill 0.785, asymmetry 0), square (1, 0), upright
#: triangle (0.5, 0.5). Circles and squares are symmetric however blurred, so a clearly
#: bottom-heavy mask is a triangle; otherwise a full bounding box is a square. The values sit
#: between the classes both on exact renders and on renders passed through the toy VAE, whose
#: blur rounds square corners (fill ~0.85) and fattens small triangles (measured: 99.7 % / 89 %
#: correct, against 99.7 % / 84 % for nearest-prototype matching).
TRIANGLE_MIN_ASYMMETRY = 0.2
SQUARE_MIN_FILL = 0.87
#: Collapse thresholds (`collapse_reason`). Measured on 150 held-out renders of the toy base model
#: and every image of the demo's sweep (2 seeds x 4 prompts x 5 strengths): border noise at most
#: 0.47, colour spread at most 0.19, largest blob share at least 0.97; the demo's collapsed image
#: (green triangle, seed 1, strength -1): 0.77 / 0.30 / 0.45; uniform noise: 1.0 / 0.70.
COLLAPSE_MAX_BORDER_NOISE = 0.6
COLLAPSE_MAX_COLOUR_SPREAD = 0.25
COLLAPSE_MIN_BLOB_SHARE = 0.8
#: Below this area fraction the shape has vanished (a 32 px image: about 2 pixels).
COLLAPSE_MIN_AREA = 0.002


@dataclass(frozen=True)
class ImageMeasure:
    """What one image shows, read from its pixels.

    Colours are RGB 0-255 floats; area is the shape's fraction of the image, counting each edge
    pixel by how much of it the shape covers (`coverage_area`); mask_area counts the pixels at
    least half-way from the background to the shape (the measure before issue #16's re-measure);
    centroid is (x, y) as fractions of width/height; brightness is the shape's mean luma in 0-1;
    hue is in degrees.
    """

    background_rgb: tuple[float, float, float]
    shape_rgb: tuple[float, float, float]
    area: float
    centroid: tuple[float, float]
    brightness: float
    hue: float
    fill_ratio: float
    asymmetry: float
    kind: str
    shape_colour: str
    background_colour: str
    border_noise: float = 0.0
    colour_spread: float = 0.0
    blob_share: float = 1.0
    collapsed: str | None = None
    mask_area: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def to_array(image) -> np.ndarray:
    """HxWx3 float array from a PIL image or an array (uint8 or float 0-255)."""
    arr = np.asarray(image.convert("RGB") if hasattr(image, "convert") else image, dtype=np.float64)
    if arr.ndim != 3 or arr.shape[2] < 3:
        raise ValueError(f"expected an RGB image, got shape {arr.shape}")
    return arr[:, :, :3]


def background_rgb(arr: np.ndarray) -> np.ndarray:
    """Median of the 1-pixel border: the toy renderer keeps shapes off the border, and the
    median ignores the few border pixels a generated shape may still touch."""
    border = np.concatenate([arr[0], arr[-1], arr[1:-1, 0], arr[1:-1, -1]])
    return np.median(border, axis=0)


def shape_mask(arr: np.ndarray, bg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mask, core): pixels at least half-way / three-quarters from the background to the shape.

    The half-way threshold puts anti-aliased edges on the right side on average, so the mask
    area tracks the true area; the core excludes edge pixels when reading the shape colour.
    """
    dist = np.linalg.norm(arr - bg, axis=2)
    peak = float(dist.max())
    if peak < MIN_CONTRAST:
        empty = np.zeros(dist.shape, dtype=bool)
        return empty, empty
    mask = dist >= max(MIN_CONTRAST, 0.5 * peak)
    core = dist >= max(MIN_CONTRAST, 0.75 * peak)
    return mask, core


def dilate(mask: np.ndarray) -> np.ndarray:
    """`mask` grown by one pixel in the four directions."""
    out = mask.copy()
    out[1:] |= mask[:-1]
    out[:-1] |= mask[1:]
    out[:, 1:] |= mask[:, :-1]
    out[:, :-1] |= mask[:, 1:]
    return out


def coverage_area(arr: np.ndarray, bg: np.ndarray, shape: np.ndarray, mask: np.ndarray) -> float:
    """The shape's area as a fraction of the image, each pixel counted by how much the shape covers it.

    Why not the pixel count of the half-way mask: an anti-aliased (or blurred) edge pixel is a mix
    of background and shape colour, and the threshold rounds it to 0 or 1, so the count moves in
    steps of whole edge pixels. On 32 px renders whose true areas step exactly evenly, those steps
    alone put the smoothness of a perfect sweep at ~0.21; reading each pixel's mix (its position
    between the background and shape colours, clipped to [0, 1]) follows the true area and puts
    it at ~0.06 (tests/test_slider_metrics.py). Only the mask grown by one pixel is read, so
    background noise far from the shape adds nothing.
    """
    if not mask.any():
        return 0.0
    direction = shape - bg
    norm = float(direction @ direction)
    if norm <= 0.0:
        return float(mask.mean())
    mix = np.clip(((arr - bg) @ direction) / norm, 0.0, 1.0)
    return float((mix * dilate(mask)).mean())


def nearest_colour(rgb: Sequence[float], palette: dict[str, tuple[int, int, int]]) -> str:
    """Name of the palette colour closest in RGB (the toy palettes are chosen well separated)."""
    names = list(palette)
    d = np.linalg.norm(np.array([palette[n] for n in names], dtype=float) - np.asarray(rgb, float), axis=1)
    return names[int(np.argmin(d))]


def kind_features(mask: np.ndarray) -> tuple[float, float]:
    """(fill ratio of the bounding box, asymmetry (bottom - top) / total of the bbox halves).

    Circle ~ (0.785, 0), square ~ (1, 0), upright triangle ~ (0.5, 0.5): two features make the
    call robust where blur pushes the fill ratio of a circle towards a triangle's.
    """
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        return 0.0, 0.0
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    box = mask[y0:y1, x0:x1].astype(float)
    fill = float(box.mean())
    rows = box.sum(axis=1)
    h = len(rows)
    top, bottom = rows[: h // 2].sum(), rows[(h + 1) // 2:].sum()
    asym = float((bottom - top) / max(top + bottom, 1e-9))
    return fill, asym


def classify_kind(mask: np.ndarray) -> str:
    """'triangle' if bottom-heavy, else 'square' if it fills its box, else 'circle';
    'none' for an empty mask."""
    if not mask.any():
        return "none"
    fill, asym = kind_features(mask)
    if asym > TRIANGLE_MIN_ASYMMETRY:
        return "triangle"
    return "square" if fill > SQUARE_MIN_FILL else "circle"


def luma(rgb: Sequence[float]) -> float:
    """Rec. 601 luma in 0-1: the perceived brightness used by the brightness attribute."""
    r, g, b = (float(c) / 255.0 for c in rgb[:3])
    return 0.299 * r + 0.587 * g + 0.114 * b


def hue_degrees(rgb: Sequence[float]) -> float:
    r, g, b = (min(max(float(c) / 255.0, 0.0), 1.0) for c in rgb[:3])
    return colorsys.rgb_to_hsv(r, g, b)[0] * 360.0


def border_noise(arr: np.ndarray, bg: np.ndarray) -> float:
    """Fraction of border pixels far from the background colour. The toy world keeps shapes off
    the border on a flat background, so a noisy border means the image has no background left."""
    border = np.concatenate([arr[0], arr[-1], arr[1:-1, 0], arr[1:-1, -1]])
    return float((np.linalg.norm(border - bg, axis=1) > MIN_CONTRAST).mean())


def colour_spread(arr: np.ndarray, mask: np.ndarray, shape: np.ndarray) -> float:
    """Median RGB distance (/255) of the shape's pixels from its colour: a flat shape is ~0.05,
    noise that passes for a shape is far more (0.3-0.7)."""
    if not mask.any():
        return 0.0
    return float(np.median(np.linalg.norm(arr[mask] - shape, axis=1)) / 255.0)


def blob_sizes(mask: np.ndarray) -> np.ndarray:
    """Pixel counts of the 4-connected blobs of `mask`, largest first.

    Labels spread as the minimum of each pixel's neighbours until nothing changes (numpy only:
    no image library needed for images of toy size).
    """
    if not mask.any():
        return np.zeros(0, dtype=int)
    h, w = mask.shape
    none = h * w + 1
    labels = np.where(mask, np.arange(h * w).reshape(h, w), none)
    while True:
        low = labels.copy()
        low[1:] = np.minimum(low[1:], labels[:-1])
        low[:-1] = np.minimum(low[:-1], labels[1:])
        low[:, 1:] = np.minimum(low[:, 1:], labels[:, :-1])
        low[:, :-1] = np.minimum(low[:, :-1], labels[:, 1:])
        low = np.where(mask, low, none)
        if np.array_equal(low, labels):
            break
        labels = low
    return np.sort(np.unique(labels[mask], return_counts=True)[1])[::-1]


def collapse_reason(area: float, border: float, spread: float, blob_share: float) -> str | None:
    """Why an image is not one shape on a flat background, or None when it is.

    'blank': no shape left; 'noise': the background or the shape is no longer flat; 'mess':
    the shape pixels fall apart into several blobs (two shapes, or fragments).
    """
    if area < COLLAPSE_MIN_AREA:
        return "blank"
    if border > COLLAPSE_MAX_BORDER_NOISE or spread > COLLAPSE_MAX_COLOUR_SPREAD:
        return "noise"
    if blob_share < COLLAPSE_MIN_BLOB_SHARE:
        return "mess"
    return None


def measure_image(image) -> ImageMeasure:
    """Measure one image (PIL or HxWx3 array). An image with no visible shape gets area 0,
    kind 'none', centroid at the centre and the background colour as shape colour."""
    arr = to_array(image)
    bg = background_rgb(arr)
    mask, core = shape_mask(arr, bg)
    h, w = mask.shape
    if mask.any():
        shape = np.median(arr[core if core.any() else mask], axis=0)
        ys, xs = np.nonzero(mask)
        centroid = (float((xs.mean() + 0.5) / w), float((ys.mean() + 0.5) / h))
    else:
        shape, centroid = bg, (0.5, 0.5)
    fill, asym = kind_features(mask)
    blobs = blob_sizes(mask)
    share = float(blobs[0] / blobs.sum()) if len(blobs) else 0.0
    noise, spread = border_noise(arr, bg), colour_spread(arr, mask, shape)
    return ImageMeasure(
        background_rgb=tuple(float(c) for c in bg), shape_rgb=tuple(float(c) for c in shape),
        area=coverage_area(arr, bg, shape, mask), mask_area=float(mask.mean()), centroid=centroid, brightness=luma(shape), hue=hue_degrees(shape),
        fill_ratio=fill, asymmetry=asym, kind=classify_kind(mask),
        shape_colour=nearest_colour(shape, SHAPE_COLOURS),
        background_colour=nearest_colour(bg, BACKGROUND_COLOURS),
        border_noise=noise, colour_spread=spread, blob_share=share,
        collapsed=collapse_reason(float(mask.mean()), noise, spread, share),
    )


# ----------------------------------------------------------------------------- sweep statistics


def attribute_value(m: ImageMeasure, attribute: str) -> float:
    """The scalar a slider is expected to move; hue is unwrapped later, per sweep."""
    if attribute not in ATTRIBUTES:
        raise ValueError(f"unknown attribute {attribute!r}; expected one of {ATTRIBUTES}")
    return float(getattr(m, attribute))


def _unwrap_degrees(values: np.ndarray) -> np.ndarray:
    return np.degrees(np.unwrap(np.radians(values)))


@dataclass(frozen=True)
class Preservation:
    """Mean drift of the non-target attributes from their strength-0 values (lower is better).

    shape_colour and background: RGB distance / 255; centroid: shift as a fraction of the image
    width; area: absolute change in area fraction. The field the slider is meant to change is
    None (shape_colour for brightness/hue sliders, area for size sliders). The *_changes fields
    are the fraction of non-zero strengths whose colour name / kind differs from strength 0.
    """

    shape_colour: float | None
    background: float
    centroid: float
    area: float | None
    colour_name_changes: float | None
    background_name_changes: float
    kind_changes: float


@dataclass(frozen=True)
class SweepMetrics:
    """Scores of one prompt/seed swept over strengths (sorted ascending)."""

    attribute: str
    strengths: list[float]
    values: list[float]
    range: float
    spearman: float
    smoothness: float
    preservation: Preservation
    #: Strengths whose image collapsed, with the reason ("noise", "blank", "mess").
    collapsed: list[tuple[float, str]] = field(default_factory=list)
    measures: list[ImageMeasure] = field(default_factory=list, repr=False)

    def to_dict(self, with_measures: bool = False) -> dict:
        d = asdict(self)
        if not with_measures:
            d.pop("measures")
        return d


def _reference_index(strengths: np.ndarray) -> int:
    """Index of strength 0, or the strength closest to 0 when the sweep skips it."""
    return int(np.argmin(np.abs(strengths)))


def preservation(measures: Sequence[ImageMeasure], strengths: Sequence[float], attribute: str) -> Preservation:
    """Drift of everything but `attribute`, relative to the sample at strength 0."""
    s = np.asarray(strengths, float)
    ref = measures[_reference_index(s)]
    others = [m for m, v in zip(measures, s) if m is not ref] or [ref]
    mean = lambda f: float(np.mean([f(m) for m in others]))  # noqa: E731
    rgb = lambda a, b: float(np.linalg.norm(np.subtract(a, b)) / 255.0)  # noqa: E731
    colour_target = attribute in ("brightness", "hue")
    return Preservation(
        shape_colour=None if colour_target else mean(lambda m: rgb(m.shape_rgb, ref.shape_rgb)),
        background=mean(lambda m: rgb(m.background_rgb, ref.background_rgb)),
        centroid=mean(lambda m: float(np.hypot(m.centroid[0] - ref.centroid[0], m.centroid[1] - ref.centroid[1]))),
        area=None if attribute == "area" else mean(lambda m: abs(m.area - ref.area)),
        colour_name_changes=None if colour_target else mean(lambda m: float(m.shape_colour != ref.shape_colour)),
        background_name_changes=mean(lambda m: float(m.background_colour != ref.background_colour)),
        kind_changes=mean(lambda m: float(m.kind != ref.kind)),
    )


def sweep_metrics(strengths: Sequence[float], images: Sequence, attribute: str = "area") -> SweepMetrics:
    """Score one sweep: `images[i]` rendered at `strengths[i]` (same prompt and seed).

    `images` may be PIL images, arrays or already computed `ImageMeasure`s.
    """
    if len(strengths) != len(images) or not strengths:
        raise ValueError("need one image per strength, at least one")
    order = np.argsort(np.asarray(strengths, float), kind="stable")
    s = np.asarray(strengths, float)[order]
    ms = [images[i] if isinstance(images[i], ImageMeasure) else measure_image(images[i]) for i in order]
    vals = np.array([attribute_value(m, attribute) for m in ms])
    if attribute == "hue":
        vals = _unwrap_degrees(vals)
    return SweepMetrics(
        attribute=attribute, strengths=[float(x) for x in s], values=[float(v) for v in vals],
        range=float(vals[-1] - vals[0]), spearman=spearman(s, vals), smoothness=smoothness(vals),
        preservation=preservation(ms, s, attribute),
        collapsed=[(float(x), m.collapsed) for x, m in zip(s, ms) if m.collapsed], measures=ms,
    )


def _mean_or_none(xs: Iterable[float | None]) -> float | None:
    vals = [x for x in xs if x is not None]
    return float(np.mean(vals)) if vals else None


def aggregate(sweeps: Sequence[SweepMetrics]) -> dict:
    """Averages over sweeps (e.g. several prompts x seeds) of every scalar score.

    Also reports `abs_spearman` (direction-free monotonicity) and `min_spearman` (the worst
    sweep), since one non-monotonic prompt hides easily in a mean, and `collapsed`: how many of
    the `images` are no longer a shape on a background (one such image spoils a slider).
    """
    if not sweeps:
        return {"n": 0}
    pres = {k: _mean_or_none(asdict(sw.preservation)[k] for sw in sweeps)
            for k in asdict(sweeps[0].preservation)}
    return {
        "n": len(sweeps),
        "attribute": sweeps[0].attribute,
        "range": float(np.mean([sw.range for sw in sweeps])),
        "spearman": float(np.mean([sw.spearman for sw in sweeps])),
        "abs_spearman": float(np.mean([abs(sw.spearman) for sw in sweeps])),
        "min_spearman": float(min(sw.spearman for sw in sweeps)),
        "smoothness": float(np.mean([sw.smoothness for sw in sweeps])),
        "max_smoothness": float(max(sw.smoothness for sw in sweeps)),
        "preservation": pres,
        "images": int(sum(len(sw.strengths) for sw in sweeps)),
        "collapsed": int(sum(len(sw.collapsed) for sw in sweeps)),
    }


class ToyMeter:
    """The toy world's attributes as an `engine.attribute_meters.AttributeMeter` (registered by `sliderstudio.toy`)."""

    attributes = ATTRIBUTES

    def measure(self, image) -> ImageMeasure:
        return measure_image(image)

    def value(self, measure: ImageMeasure, attribute: str) -> float:
        return attribute_value(measure, attribute)


TOY_METER = ToyMeter()
