"""How much of a size slider's centroid drift the toy world forces (issue #16's drift target).

    python benchmarks/centroid_floor.py VARIANT.json [VARIANT2.json …]   # from slider_variants.py --out

A bigger shape must sit further from the border (`toy.world.centre_range`), so growing an off-centre
shape moves it. For each held-out sweep of a `slider_variants.py` result this re-renders the base
model's strength-0 image (its centroid), turns each strength's measured area into the width it
implies for the prompt's kind, and prints two figures averaged like the product's drift metric
(mean distance from the strength-0 centroid over the other strengths, then over the sweeps):

- `forced`: the least movement that keeps the shape inside the border margin at that width;
- `world_rule`: the movement if the shape kept its relative place in the allowed box, which is how
  the world draws positions (uniform in the box), so a model that learned the world exactly would
  move a shape this much for the same noise.

~10 s on 2 CPU threads (24 renders).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# width of a shape of this kind from its area (fractions of the image)
WIDTH = {"circle": lambda a: math.sqrt(4 * a / math.pi), "square": math.sqrt, "triangle": lambda a: math.sqrt(2 * a)}
MAX_WIDTH = 0.8  # the world's largest shape


def box(area: float, kind: str) -> tuple[tuple[float, float], tuple[float, float]]:
    from sliderstudio.toy.world import centre_range

    return centre_range(min(MAX_WIDTH, WIDTH[kind](max(area, 0.0))), kind)


def movements(centre: tuple[float, float], areas: list[float], kind: str, zero: int) -> tuple[float, float]:
    """(forced, world_rule) mean movement over the sweep's strengths other than strength 0."""
    (x0, x1), (y0, y1) = box(areas[zero], kind)
    u = min(max((centre[0] - x0) / max(x1 - x0, 1e-9), 0.0), 1.0)   # relative place in the strength-0 box
    v = min(max((centre[1] - y0) / max(y1 - y0, 1e-9), 0.0), 1.0)
    forced, rule = [], []
    for i, area in enumerate(areas):
        if i == zero:
            continue
        (xl, xh), (yl, yh) = box(area, kind)
        forced.append(math.hypot(max(xl - centre[0], 0.0, centre[0] - xh), max(yl - centre[1], 0.0, centre[1] - yh)))
        rule.append(math.hypot(xl + u * (xh - xl) - centre[0], yl + v * (yh - yl) - centre[1]))
    return sum(forced) / len(forced), sum(rule) / len(rule)


def floor_of(result: dict, renderer) -> dict:
    from sliderstudio.toy.metrics import measure_image
    from sliderstudio.toy.sweep_check import STRENGTHS

    zero = list(STRENGTHS).index(0.0)
    forced, rule = [], []
    for sweep in result["per_sweep"]:
        kind = next(k for k in WIDTH if f" {k} " in f" {sweep['prompt']} ")
        centre = measure_image(renderer.render(sweep["prompt"], sweep["seed"], [0.0], 20, 2.0)[0]).centroid
        f, r = movements(centre, sweep["area"], kind, zero)
        forced.append(f)
        rule.append(r)
    n = len(forced)
    return {"label": result.get("label"), "sweeps": n, "measured": result["figures"]["centroid"],
            "forced": round(sum(forced) / n, 4), "world_rule": round(sum(rule) / n, 4)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("results", nargs="+", type=Path)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args(argv)
    import torch

    from sliderstudio.engine.preview import PreviewRenderer
    from sliderstudio.families.registry import get_family

    torch.set_num_threads(a.threads)
    renderers: dict[str, PreviewRenderer] = {}
    for path in a.results:
        result = json.loads(path.read_text())
        model = result.get("model", "sliderstudio:toy")
        renderer = renderers.setdefault(model, PreviewRenderer(get_family("sd1x"), model))
        print(json.dumps(floor_of(result, renderer)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
