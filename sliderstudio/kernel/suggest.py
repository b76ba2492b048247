"""The one "did you mean" used wherever a key or a value is refused (config, dataloader, LyCORIS, presets).

One cut-off for every message, so the same misspelling gets the same suggestion in every file. The
cut-off is difflib's similarity ratio (2 × matching characters / total characters): 0.6, difflib's
own default. At 0.6 a dropped, doubled or swapped letter in a key of four or more letters is still
suggested ('lokrr' → 'lokr', 'lora_rnak' → 'lora_rank'), while a different word is not ('ia3' gets
no LyCORIS algorithm); the LyCORIS checker's old 0.5 also offered guesses that shared only half
their letters.
"""
from __future__ import annotations

import difflib
from collections.abc import Iterable

CUTOFF = 0.6


def closest(word: object, choices: Iterable[str]) -> str | None:
    """The most similar choice at or above CUTOFF, else None (choices are sorted first: ties are stable)."""
    close = difflib.get_close_matches(str(word), sorted(set(choices)), n=1, cutoff=CUTOFF)
    return close[0] if close else None


def did_you_mean(word: object, choices: Iterable[str]) -> str:
    """The hint appended to an error: "; did you mean 'x'?", or "" when nothing is close enough."""
    match = closest(word, choices)
    return f"; did you mean '{match}'?" if match else ""
