"""The role ↔ strength rule, without Qt."""
import pytest

from sliderstudio.gui.viewmodels.roles import default_strength, role_of, snap, strength_for_role


@pytest.mark.parametrize("value, expected", [(0.333, 0.35), (-0.024, 0.0), (-0.026, -0.05), (1.7, 1.7),
                                             (-3, -3.0), (12, 10.0), (-10.02, -10.0), (0.1 + 0.2, 0.3)])
def test_snap_rounds_to_step_and_clamps(value, expected):
    assert snap(value) == expected
    assert str(snap(-0.01)) == "0.0"  # never a negative zero (it would read as "negative")


def test_role_follows_sign():
    assert [role_of(s) for s in (0.5, -0.05, 0.0)] == ["positive", "negative", "neutral"]


def test_choosing_a_role_keeps_the_magnitude():
    assert strength_for_role("positive", -0.3) == 0.3
    assert strength_for_role("negative", 0.7) == -0.7
    assert strength_for_role("neutral", -0.7) == 0.0
    assert strength_for_role("negative", 0.0, remembered=0.8) == -0.8
    assert strength_for_role("positive", 0.0, remembered=0.0) == 0.5
    with pytest.raises(ValueError):
        strength_for_role("sideways", 0.1)


def test_new_folders_fill_the_missing_side_first():
    assert default_strength([]) == 0.5
    assert default_strength([0.5]) == -0.5
    assert default_strength([0.5, -0.5]) == 0.0
