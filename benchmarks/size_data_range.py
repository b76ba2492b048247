"""What the demo's size pairs themselves allow: their area range and the smoothness of even steps.

    python benchmarks/size_data_range.py                       # the demo's widths
    python benchmarks/size_data_range.py --widths 0.2,0.24,0.74,0.8

Why, before training anything: a size slider that reproduced its training pairs exactly at ±1
would show the pairs' own area range, so if that is under the issue's 0.35 no training lever can
reach the target with this data; and the smoothness of a sweep whose areas are *exactly* evenly
spaced is the floor the product's metric (32 px renders, half-way threshold) puts under any slider.
Draws `--pairs` full pairs as `toy/demo_project` does, renders each at the 9 strengths −1 … +1
(area interpolated evenly between the pair's ends, as the demo's intensities are), measures every
image with `toy.metrics.measure_image` and prints one JSON object. No model, a few seconds.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

STRENGTHS = tuple(round(-1 + 0.25 * i, 2) for i in range(9))


def even_sweep(small: float, big: float) -> list[float]:
    """Widths at the 9 strengths whose areas step evenly from the small shape's to the big one's."""
    return [(small ** 2 + (s + 1) / 2 * (big ** 2 - small ** 2)) ** 0.5 for s in STRENGTHS]


def measure(widths: tuple[tuple[float, float], tuple[float, float]] | None, pairs: int, seed: int) -> dict:
    import numpy as np

    from sliderstudio.toy.metrics import measure_image, smoothness
    from sliderstudio.toy.demo_project import _size_pairs
    from sliderstudio.toy.world import render

    rng = random.Random(seed)
    rows: list[tuple[str, list[float]]] = []
    for _ in range(pairs):
        big, small = _size_pairs(rng, (1.0,), widths)[0]
        sweep = [big.with_(size=round(w, 4)) for w in even_sweep(small.size, big.size)]
        rows.append((big.kind, [measure_image(render(spec, 32)).area for spec in sweep]))
    ranges = {kind: [a[-1] - a[0] for k, a in rows if k == kind] for kind in ("circle", "square", "triangle")}
    return {"widths": widths, "pairs": pairs,
            "area_range": round(float(np.mean([a[-1] - a[0] for _, a in rows])), 4),
            "area_range_by_kind": {k: round(float(np.mean(v)), 4) for k, v in ranges.items() if v},
            "smoothness_of_even_steps": round(float(np.mean([smoothness(a) for _, a in rows])), 4),
            "mean_area_at_minus1_plus1": [round(float(np.mean([a[0] for _, a in rows])), 4),
                                          round(float(np.mean([a[-1] for _, a in rows])), 4)]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--widths", help="'small_lo,small_hi,big_lo,big_hi' (default: the demo's)")
    ap.add_argument("--pairs", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    widths = None
    if a.widths:
        lo_s, hi_s, lo_b, hi_b = (float(x) for x in a.widths.split(","))
        widths = ((lo_s, hi_s), (lo_b, hi_b))
    print(json.dumps(measure(widths, a.pairs, a.seed), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
