"""Slider metrics on constructed images whose answers are known."""

import math

import numpy as np
import pytest

from sliderstudio.toy.metrics import (
    aggregate, measure_image, nearest_colour, smoothness, spearman, sweep_metrics,
)
from sliderstudio.toy.world import BACKGROUND_COLOURS, SHAPE_COLOURS, ShapeSpec, random_specs, render

STRENGTHS = [-1.0, -0.5, 0.0, 0.5, 1.0]
BASE = ShapeSpec("circle", "red", "blue", 0.5, 0.5, 0.5)


def _size_sweep(reverse: bool = False):
    """Circles whose *area* grows in equal steps (size ~ sqrt(area)), strength -1 ... 1."""
    areas = np.linspace(0.05, 0.35, len(STRENGTHS))  # fraction of the image
    sizes = np.sqrt(areas / (math.pi / 4))
    if reverse:
        sizes = sizes[::-1]
    return [render(BASE.with_(size=float(s)), 64) for s in sizes], areas


def test_measure_one_image():
    m = measure_image(render(ShapeSpec("square", "yellow", "black", 0.5, 0.4, 0.6), 64))
    assert m.kind == "square" and m.shape_colour == "yellow" and m.background_colour == "black"
    assert m.area == pytest.approx(0.25, abs=0.02)  # +-1 px of edge per side
    assert m.centroid == pytest.approx((0.4, 0.6), abs=0.01)
    assert m.shape_rgb == pytest.approx(SHAPE_COLOURS["yellow"], abs=1)


def test_growing_sweep_is_monotonic_with_the_right_range():
    images, areas = _size_sweep()
    sw = sweep_metrics(STRENGTHS, images, "area")
    assert sw.spearman == 1.0
    assert sw.range == pytest.approx(areas[-1] - areas[0], abs=0.01)
    assert sw.smoothness < 0.1  # equal area steps
    assert sw.preservation.area is None  # the target attribute is not a drift
    assert sw.preservation.shape_colour == pytest.approx(0.0, abs=0.01)
    assert sw.preservation.background == 0.0
    assert sw.preservation.centroid < 0.01


def test_reversed_sweep_gives_minus_one():
    images, areas = _size_sweep(reverse=True)
    sw = sweep_metrics(STRENGTHS, images, "area")
    assert sw.spearman == -1.0
    assert sw.range == pytest.approx(areas[0] - areas[-1], abs=0.01)


def test_input_order_does_not_matter():
    images, _ = _size_sweep()
    order = [3, 0, 4, 1, 2]
    sw = sweep_metrics([STRENGTHS[i] for i in order], [images[i] for i in order], "area")
    assert sw.strengths == STRENGTHS and sw.spearman == 1.0


def test_constant_sweep_is_defined_and_preserves_everything():
    images = [render(BASE, 64)] * len(STRENGTHS)
    sw = sweep_metrics(STRENGTHS, images, "area")
    assert (sw.range, sw.spearman, sw.smoothness) == (0.0, 0.0, 0.0)
    p = sw.preservation
    assert (p.shape_colour, p.background, p.centroid) == (0.0, 0.0, 0.0)
    assert (p.colour_name_changes, p.background_name_changes, p.kind_changes) == (0.0, 0.0, 0.0)


def test_colour_shift_is_detected():
    images = [render(BASE.with_(colour="red" if s == 0 else "yellow"), 64) for s in STRENGTHS]
    p = sweep_metrics(STRENGTHS, images, "area").preservation
    expected = np.linalg.norm(np.subtract(SHAPE_COLOURS["yellow"], SHAPE_COLOURS["red"])) / 255
    assert p.shape_colour == pytest.approx(expected, abs=0.01)
    assert p.colour_name_changes == 1.0
    assert p.background == 0.0 and p.kind_changes == 0.0


def test_background_shift_is_detected():
    images = [render(BASE.with_(background="blue" if s <= 0 else "white"), 64) for s in STRENGTHS]
    p = sweep_metrics(STRENGTHS, images, "area").preservation
    assert p.background_name_changes == 0.5
    assert p.background > 0.3


def test_brightness_sweep_and_its_preservation_fields():
    images = [render(BASE.with_(background="gray", shade=s * 0.8), 64) for s in STRENGTHS]
    sw = sweep_metrics(STRENGTHS, images, "brightness")
    assert sw.spearman == 1.0 and sw.range > 0.3
    assert sw.preservation.shape_colour is None and sw.preservation.colour_name_changes is None
    assert sw.preservation.area == pytest.approx(0.0, abs=0.01)


def test_hue_is_unwrapped_across_red():
    images = [np.full((16, 16, 3), (0, 0, 0), np.uint8) for _ in range(3)]
    for img, rgb in zip(images, [(255, 0, 40), (255, 0, 0), (255, 40, 0)]):
        img[4:12, 4:12] = rgb
    sw = sweep_metrics([-1, 0, 1], images, "hue")
    assert sw.spearman == 1.0
    assert 0 < sw.range < 30  # ~19 degrees through 0, not ~-340


def test_spearman_ties_and_degenerate_inputs():
    assert spearman([0, 1, 2], [1, 1, 2]) == pytest.approx(math.sqrt(3) / 2)
    assert spearman([0, 1, 2], [5, 5, 5]) == 0.0
    assert spearman([1], [2]) == 0.0
    assert smoothness([0, 1, 2, 3]) == 0.0
    assert smoothness([0, 0, 0]) == 0.0
    assert smoothness([0, 1, 1, 2]) == pytest.approx(np.std([1, 0, 1]) / (2 / 3))


def test_aggregate_averages_and_skips_none():
    up, _ = _size_sweep()
    down, _ = _size_sweep(reverse=True)
    agg = aggregate([sweep_metrics(STRENGTHS, up, "area"), sweep_metrics(STRENGTHS, down, "area")])
    assert agg["n"] == 2 and agg["spearman"] == 0.0 and agg["abs_spearman"] == 1.0
    assert agg["min_spearman"] == -1.0
    assert agg["range"] == pytest.approx(0.0, abs=1e-9)
    assert agg["preservation"]["area"] is None
    assert aggregate([]) == {"n": 0}


def test_nearest_colour_names():
    assert all(nearest_colour(rgb, SHAPE_COLOURS) == n for n, rgb in SHAPE_COLOURS.items())
    assert all(nearest_colour(rgb, BACKGROUND_COLOURS) == n for n, rgb in BACKGROUND_COLOURS.items())


def test_classifiers_on_ground_truth_renders():
    specs = random_specs(2024, 150)
    ms = [measure_image(render(s, 32)) for s in specs]
    assert sum(m.kind == s.kind for m, s in zip(ms, specs)) / len(specs) >= 0.98
    assert all(m.shape_colour == s.colour for m, s in zip(ms, specs))
    assert all(m.background_colour == s.background for m, s in zip(ms, specs))


def test_empty_image_has_no_shape():
    m = measure_image(np.full((32, 32, 3), 120, np.uint8))
    assert m.area == 0.0 and m.kind == "none" and m.centroid == (0.5, 0.5)


def _true_area(spec: ShapeSpec) -> float:
    return spec.size ** 2 * {"circle": math.pi / 4, "square": 1.0, "triangle": 0.5}[spec.kind]


def test_coverage_area_follows_the_true_area_where_the_pixel_count_steps():
    """32 px sweeps whose true areas step exactly evenly: the coverage area is closer to the true
    area than the half-way pixel count, and its smoothness is near 0 where the count's is ~0.2."""
    rng = np.random.default_rng(0)
    cover_err, count_err, cover_smooth, count_smooth = [], [], [], []
    for kind in ("circle", "square", "triangle"):
        for _ in range(8):
            small, big = rng.uniform(0.22, 0.32), rng.uniform(0.65, 0.75)
            areas = np.linspace(small ** 2, big ** 2, 9)
            specs = [ShapeSpec(kind, "red", "white", float(np.sqrt(a)), 0.5, 0.55) for a in areas]
            ms = [measure_image(render(s, 32)) for s in specs]
            truth = [_true_area(s) for s in specs]
            cover_err += list(np.abs(np.subtract([m.area for m in ms], truth)))
            count_err += list(np.abs(np.subtract([m.mask_area for m in ms], truth)))
            cover_smooth.append(smoothness([m.area for m in ms]))
            count_smooth.append(smoothness([m.mask_area for m in ms]))
    assert np.mean(cover_err) < 0.8 * np.mean(count_err)
    assert np.mean(cover_err) < 0.01
    assert np.mean(cover_smooth) < 0.1 < 0.15 < np.mean(count_smooth)


def test_coverage_area_ignores_background_noise_away_from_the_shape():
    clean = np.asarray(render(ShapeSpec("circle", "blue", "white", 0.4, 0.5, 0.5), 32), dtype=float)
    noisy = clean.copy()
    noisy[1:4, 1:4, :2] -= 12.0  # a step towards blue, under MIN_CONTRAST, not next to the shape
    assert measure_image(noisy).area == pytest.approx(measure_image(clean).area, abs=1e-9)
    assert measure_image(clean).mask_area > 0
