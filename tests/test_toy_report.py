"""The sweep report writes a grid, the single images, their index and the metrics."""

import json

from PIL import Image

from sliderstudio.toy.report import SweepItem, write_report
from sliderstudio.toy.world import ShapeSpec, render

STRENGTHS = [1.0, -1.0, 0.0, 0.5, -0.5]  # deliberately unsorted


def _items():
    items = []
    for seed, (kind, colour) in enumerate([("circle", "red"), ("square", "yellow")]):
        base = ShapeSpec(kind, colour, "black", 0.5)
        for s in STRENGTHS:
            items.append(SweepItem(render(base.with_(size=0.5 + 0.2 * s), 32), f"a {colour} {kind}", seed, s))
    return items


def test_write_report(tmp_path):
    metrics = write_report(tmp_path, _items(), "area", base_identical=True)
    grid = Image.open(tmp_path / "sweep.png")
    assert grid.width == 5 * 64 and grid.height > 2 * 64
    index = json.loads((tmp_path / "sweep.json").read_text())
    assert len(index) == 10
    assert [e["strength"] for e in index[:5]] == sorted(STRENGTHS)
    assert all((tmp_path / e["image"]).is_file() for e in index)
    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    assert on_disk == json.loads(json.dumps(metrics))
    assert metrics["base_identical"] is True
    assert metrics["average"]["n"] == 2
    assert metrics["average"]["spearman"] == 1.0
    assert all(sw["strengths"] == sorted(STRENGTHS) for sw in metrics["sweeps"])
    assert metrics["average"]["range"] > 0.3
