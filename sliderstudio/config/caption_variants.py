"""Caption files with one caption per line: SimpleTuner trains each sample on one of the lines.

The line is chosen per micro-batch from (seed, micro-batch index, item), like caption dropout, so a
resumed run draws the same line at the same step as an uninterrupted one; every line is encoded
into the caption cache up front.
"""
from __future__ import annotations

import random

SPLIT_STRATEGIES = ("textfile", "csv", "webshart")


def split_lines(text: str, split: bool) -> list[str]:
    """The non-empty lines of a caption file, or all of them joined into one caption when `split` is off."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not split:
        return [" ".join(lines)]
    return lines or [""]


def choose(variants: str | tuple[str, ...], seed: int, index: int, item: int) -> str:
    """One caption of several, the same for the same (seed, micro-batch, item) on every run."""
    if isinstance(variants, str):
        return variants
    if len(variants) == 1:
        return variants[0]
    return variants[random.Random(f"{seed}:{index}:{item}:caption").randrange(len(variants))]
