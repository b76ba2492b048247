"""benchmarks/centroid_floor.py: the movement the toy world forces on a growing shape, and the movement
of a shape that keeps its relative place in the allowed box (how the world draws positions)."""
import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import centroid_floor  # noqa: E402

from sliderstudio.toy.world import BORDER_MARGIN  # noqa: E402


def square_area(width):
    return width * width


def test_a_centred_shape_need_not_move_however_it_grows():
    areas = [square_area(w) for w in (0.3, 0.5, 0.7)]
    forced, rule = centroid_floor.movements((0.5, 0.5), areas, "square", zero=1)
    assert forced == 0.0 and rule == pytest.approx(0.0, abs=1e-12)


def test_an_off_centre_shape_is_pushed_in_and_the_world_rule_moves_it_further():
    centre = (0.3, 0.5)                      # a width-0.4 square at the left of its box [0.24, 0.76]
    areas = [square_area(0.4), square_area(0.7)]
    forced, rule = centroid_floor.movements(centre, areas, "square", zero=0)
    assert forced == pytest.approx(0.35 + BORDER_MARGIN - 0.3)          # the box at width 0.7 starts at 0.39
    u = (0.3 - (0.2 + BORDER_MARGIN)) / (1 - 2 * (0.2 + BORDER_MARGIN))  # its relative place at width 0.4
    left, right = 0.35 + BORDER_MARGIN, 0.65 - BORDER_MARGIN
    assert rule == pytest.approx(math.hypot(left + u * (right - left) - 0.3, 0.0))
    assert rule > forced > 0


def test_a_shrinking_shape_is_never_forced_to_move():
    forced, rule = centroid_floor.movements((0.3, 0.7), [square_area(0.2), square_area(0.4)], "square", zero=1)
    assert forced == 0.0 and rule > 0.0      # the world would spread a smaller shape's positions wider
