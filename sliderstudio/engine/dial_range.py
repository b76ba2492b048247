"""The strength range an adapter file recommends for its dial: the engine's one rule for every dial.

Why its own module, without torch: the app reads the range on its UI thread when an adapter
appears (the A/B dials and every composed slider's dial), while the preview worker may be importing
torch on its own thread; so this reads the safetensors JSON header directly (8-byte length, then
JSON) instead of going through `adapter_io`. `calibration.recommended_range` and the GUI both call
`recommended_range` here, so the rule lives in one place.
"""
from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from typing import Any

#: The metadata key the calibration writes (with adapter_io's "sliderstudio." prefix).
RANGE_META = "sliderstudio.recommended_range"
#: What a dial spans when the file has no usable calibrated range.
DEFAULT_RANGE: tuple[float, float] = (-1.0, 1.0)
#: A header longer than this is not read (a real adapter's header is a few kB to a few MB).
MAX_HEADER_BYTES = 100_000_000


def usable_range(value: Any) -> tuple[float, float] | None:
    """(lo, hi) when `value` is a usable dial range: two finite numbers, lo ≤ 0 ≤ hi, lo < hi.

    An empty range (0, 0) is a slider whose calibration measured no response: the dial must still
    move, so it is not usable here (the report still shows it).
    """
    if not (isinstance(value, (list, tuple)) and len(value) == 2
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
        return None
    lo, hi = float(value[0]), float(value[1])
    return (lo, hi) if math.isfinite(lo) and math.isfinite(hi) and lo <= 0.0 <= hi and lo < hi else None


def header_metadata(path: str | Path) -> dict[str, str] | None:
    """The `__metadata__` strings of a .safetensors file, or None when it is not one or unreadable."""
    p = Path(path)
    if p.suffix != ".safetensors":
        return None
    try:
        with open(p, "rb") as fh:
            (length,) = struct.unpack("<Q", fh.read(8))
            if length > MAX_HEADER_BYTES:
                return None
            header = json.loads(fh.read(length))
    except (OSError, ValueError, struct.error):
        return None
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    return meta if isinstance(meta, dict) else {}


def recommended_range(path: str | Path) -> tuple[float, float] | None:
    """The calibrated dial range (lo, hi) stored in an adapter file, or None (never calibrated,
    unreadable, not safetensors, or not a usable range)."""
    meta = header_metadata(path)
    if not meta or RANGE_META not in meta:
        return None
    try:
        return usable_range(json.loads(meta[RANGE_META]))
    except (TypeError, ValueError):
        return None


def dial_span(path: str | Path | None) -> tuple[float, float, bool]:
    """(lo, hi, calibrated) for a dial showing this adapter: its calibrated range, else DEFAULT_RANGE."""
    span = recommended_range(path) if path else None
    return (*(span or DEFAULT_RANGE), span is not None)
