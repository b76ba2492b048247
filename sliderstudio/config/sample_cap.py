"""SimpleTuner's `max_num_samples`: at most N images of a data set, the same N on every run.

The images kept are chosen by a hash of (seed, stem), not by a shuffled draw per bucket: a positive
bucket and its paired negative (same stems) then keep the same images, and a resumed run, a re-scan in
the app and a remote backend choosing before it fetches all agree.
"""
from __future__ import annotations

import hashlib
from typing import Callable, TypeVar

T = TypeVar("T")


def rank(seed: int, stem: str) -> str:
    return hashlib.sha256(f"{seed}:{stem}".encode("utf-8")).hexdigest()


def capped(items: list[T], cap: int | None, seed: int, stem_of: Callable[[T], str]) -> list[T]:
    """The `cap` items of lowest rank, in their original order; all of them when there are no more than cap."""
    if cap is None or len(items) <= cap:
        return list(items)
    keep = set(sorted(range(len(items)), key=lambda i: rank(seed, stem_of(items[i])))[:cap])
    return [item for i, item in enumerate(items) if i in keep]
