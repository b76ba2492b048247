"""The rule that keeps a bucket's role and its slider_strength consistent, both ways (SPEC §1).

The role is never stored: it *is* the sign of slider_strength. The dial edits the strength
(the role follows); the role toggle edits the sign (the magnitude is kept, or remembered
across a trip through neutral). Pure functions, so the rule is tested without Qt.
"""
from __future__ import annotations

from sliderstudio.config.config import BucketConfig
from sliderstudio.gui.field_specs import field_spec

ROLES = ("positive", "negative", "neutral")
STRENGTH_STEP = 0.05
# The dial offers what the config accepts (BucketConfig.slider_strength's ge/le), never a range of its own.
STRENGTH_MIN = float(field_spec(BucketConfig, "slider_strength").minimum)
STRENGTH_MAX = float(field_spec(BucketConfig, "slider_strength").maximum)
DEFAULT_MAGNITUDE = 0.5


def role_of(strength: float) -> str:
    if strength > 0:
        return "positive"
    if strength < 0:
        return "negative"
    return "neutral"


def snap(strength: float) -> float:
    """Clamp to the config's range and round to its 0.05 step (no float dust like 0.30000000004)."""
    clamped = min(STRENGTH_MAX, max(STRENGTH_MIN, float(strength)))
    return round(round(clamped / STRENGTH_STEP) * STRENGTH_STEP, 2) + 0.0  # + 0.0 turns -0.0 into 0.0


def strength_for_role(role: str, current: float, remembered: float = DEFAULT_MAGNITUDE) -> float:
    """The strength after choosing `role`: same magnitude, new sign; neutral is exactly 0.

    `remembered` is the magnitude to use when leaving neutral (the last non-zero one).
    """
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; expected one of {ROLES}")
    if role == "neutral":
        return 0.0
    magnitude = abs(current) or abs(remembered) or DEFAULT_MAGNITUDE
    return magnitude if role == "positive" else -magnitude


def default_strength(existing: list[float]) -> float:
    """Strength for a newly added folder: fill the missing side first (positive, then negative).

    A slider needs one of each; after that, extra folders are neutral preservation data.
    """
    roles = {role_of(s) for s in existing}
    if "positive" not in roles:
        return DEFAULT_MAGNITUDE
    if "negative" not in roles:
        return -DEFAULT_MAGNITUDE
    return 0.0
