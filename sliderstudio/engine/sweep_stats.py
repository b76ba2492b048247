"""Statistics of a sweep of renders over strengths: rank correlation and evenness of the steps.

Why here: calibration (any model) and the toy world's quality report both judge a dial by whether
it moves one way (Spearman's rho) and in even steps (smoothness); one definition serves both.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np


def _ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n with ties given their average rank (as Spearman's rho requires)."""
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x), dtype=float)
    ranks[order] = np.arange(1, len(x) + 1)
    for v in np.unique(x):
        tie = x == v
        ranks[tie] = ranks[tie].mean()
    return ranks


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman rank correlation with average ranks for ties.

    Defined as 0.0 (no measurable monotonic relation, never NaN) when there are fewer than two
    points or either input is constant: a slider that does not move the attribute is not
    monotonic, and a NaN would poison every average it enters.
    """
    xa, ya = np.asarray(x, float), np.asarray(y, float)
    if len(xa) != len(ya):
        raise ValueError("x and y must have the same length")
    if len(xa) < 2 or np.ptp(xa) == 0 or np.ptp(ya) == 0:
        return 0.0
    rx, ry = _ranks(xa), _ranks(ya)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denom = float(np.sqrt((rx**2).sum() * (ry**2).sum()))
    return float((rx * ry).sum() / denom) if denom > 0 else 0.0


def smoothness(values: Sequence[float]) -> float:
    """Std of consecutive deltas divided by their mean absolute value (0 = perfectly even steps).

    Scale-free, so sweeps of different attributes compare. Defined as 0.0 with fewer than two
    deltas or when nothing moves (mean |delta| = 0); read it together with `range`.
    """
    d = np.diff(np.asarray(values, float))
    if len(d) < 2:
        return 0.0
    mean_abs = float(np.abs(d).mean())
    return float(d.std() / mean_abs) if mean_abs > 1e-12 else 0.0
