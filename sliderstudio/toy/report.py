"""Write a strength-sweep report: a labelled grid, the single images, and the measured metrics.

Why a folder of plain files: the demo's result must be checkable by eye (sweep.png), by script
(sweep.json lists every image with its prompt, seed and strength) and by number (metrics.json
from `sliderstudio.toy.metrics`), by the CLI, the app and the tests alike. The same
figures print as a table (`format_quality`, also written as summary.txt): per sweep and overall
range, Spearman, smoothness, preservation (shape colour, background, centroid drift) and the
images that collapsed (noise, blank, a mess instead of one shape on a background).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw

from sliderstudio.toy.metrics import aggregate, sweep_metrics

#: Small renders are upscaled (nearest neighbour) to at least this many pixels in the grid.
MIN_CELL_PX = 64
HEADER_PX = 14


@dataclass
class SweepItem:
    """One rendered image of a sweep."""

    image: Image.Image
    prompt: str
    seed: int
    strength: float


def _rows(items: list[SweepItem]) -> list[tuple[str, int, list[SweepItem]]]:
    """Group by (prompt, seed) in first-seen order, each row sorted by strength."""
    groups: dict[tuple[str, int], list[SweepItem]] = {}
    for it in items:
        groups.setdefault((it.prompt, it.seed), []).append(it)
    return [(p, s, sorted(g, key=lambda it: it.strength)) for (p, s), g in groups.items()]


def _image_name(row: int, item: SweepItem) -> str:
    return f"row{row:02d}_seed{item.seed}_strength{item.strength:+.2f}.png"


def _grid(rows: list[tuple[str, int, list[SweepItem]]], strengths: list[float]) -> Image.Image:
    """Rows = prompt/seed, columns = strengths ascending, with a strength label per column."""
    w0, h0 = rows[0][2][0].image.size
    scale = max(1, -(-MIN_CELL_PX // max(w0, h0)))
    cw, ch = w0 * scale, h0 * scale
    grid = Image.new("RGB", (cw * len(strengths), HEADER_PX + ch * len(rows)), (255, 255, 255))
    draw = ImageDraw.Draw(grid)
    for c, s in enumerate(strengths):
        draw.text((c * cw + 2, 1), f"{s:+.2f}", fill=(0, 0, 0))
    for r, (_, _, row) in enumerate(rows):
        for it in row:
            cell = it.image.convert("RGB").resize((cw, ch), Image.Resampling.NEAREST)
            grid.paste(cell, (strengths.index(it.strength) * cw, HEADER_PX + r * ch))
    return grid


def _write_json(path: Path, data: object) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n")


def sweep_quality(items: list[SweepItem], attribute: str) -> dict:
    """The quality figures of a sweep: per prompt/seed (`sweeps`) and over all of them (`average`)."""
    if not items:
        raise ValueError("no sweep items to report")
    sweeps = [(prompt, seed, sweep_metrics([it.strength for it in row], [it.image for it in row], attribute))
              for prompt, seed, row in _rows(items)]
    return {
        "attribute": attribute,
        "sweeps": [{"prompt": p, "seed": s, **sw.to_dict()} for p, s, sw in sweeps],
        "average": aggregate([sw for _, _, sw in sweeps]),
    }


def write_report(report_dir: Path, items: list[SweepItem], attribute: str,
                 base_identical: bool | None = None) -> dict:
    """Write sweep.png, images/, sweep.json, metrics.json and summary.txt into `report_dir`; return the metrics.

    `attribute` is a slider_metrics attribute ("area", "brightness", "hue"). `base_identical`,
    when given, records the caller's check that strength 0 reproduces the base model exactly.
    """
    if not items:
        raise ValueError("no sweep items to report")
    report_dir = Path(report_dir)
    (report_dir / "images").mkdir(parents=True, exist_ok=True)
    rows = _rows(items)
    strengths = sorted({it.strength for it in items})
    entries = []
    for r, (prompt, seed, row) in enumerate(rows):
        for it in row:
            rel = f"images/{_image_name(r, it)}"
            it.image.save(report_dir / rel)
            entries.append({"image": rel, "prompt": prompt, "seed": seed, "strength": it.strength})
    _grid(rows, strengths).save(report_dir / "sweep.png")
    _write_json(report_dir / "sweep.json", entries)
    metrics = sweep_quality(items, attribute)
    if base_identical is not None:
        metrics["base_identical"] = bool(base_identical)
    _write_json(report_dir / "metrics.json", metrics)
    (report_dir / "summary.txt").write_text(format_quality(metrics) + "\n")
    return metrics


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _collapsed_text(collapsed: list) -> str:
    return ", ".join(f"{s:+g} {why}" for s, why in collapsed) if collapsed else "none"


def format_quality(metrics: dict) -> str:
    """The quality figures as a text table: one row per sweep, then the overall line.

    Columns: range and Spearman of the attribute, smoothness (0 = even steps), the drift of the
    shape colour, the background and the centroid from strength 0, and the collapsed images.
    """
    head = (f"{'prompt':<40} {'seed':>4} {'range':>7} {'spearman':>8} {'smooth':>6} {'colour':>6} "
            f"{'bg':>6} {'centroid':>8}  collapsed")
    lines = [f"quality ({metrics['attribute']}):", head]
    for sw in metrics["sweeps"]:
        pres = sw["preservation"]
        lines.append(f"{sw['prompt'][:40]:<40} {sw['seed']:>4} {sw['range']:>7.3f} {sw['spearman']:>8.3f} "
                     f"{sw['smoothness']:>6.2f} {_fmt(pres['shape_colour']):>6} {_fmt(pres['background']):>6} "
                     f"{_fmt(pres['centroid']):>8}  {_collapsed_text(sw.get('collapsed', []))}")
    avg = metrics["average"]
    pres = avg["preservation"]
    lines.append(f"{'overall (' + str(avg['n']) + ' sweeps)':<40} {'':>4} {avg['range']:>7.3f} "
                 f"{avg['spearman']:>8.3f} {avg['smoothness']:>6.2f} {_fmt(pres['shape_colour']):>6} "
                 f"{_fmt(pres['background']):>6} {_fmt(pres['centroid']):>8}  "
                 f"{avg.get('collapsed', 0)} of {avg.get('images', 0)} images")
    lines.append(f"worst spearman {avg['min_spearman']:.3f}, worst smoothness {avg.get('max_smoothness', 0.0):.2f}")
    return "\n".join(lines)
