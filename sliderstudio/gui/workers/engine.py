"""Import the engine once, under a lock, before any worker thread touches it.

torch, diffusers (whose submodules load lazily on attribute access) and peft are not safe to
import from several threads at once: one thread can see a half-initialised module
("module 'diffusers.utils' has no attribute 'logging'"). Every worker entry point calls
`ensure_engine()` first; the first caller imports everything, the others wait for it.
"""
from __future__ import annotations

import threading

_lock = threading.Lock()
_ready = False


def _import_engine() -> None:
    import diffusers  # noqa: F401
    import peft  # noqa: F401

    import sliderstudio.core.preview  # noqa: F401
    import sliderstudio.core.targets  # noqa: F401
    import sliderstudio.core.trainer  # noqa: F401
    from sliderstudio.families.registry import FAMILIES

    for family in FAMILIES.values():
        family.pipeline_class  # noqa: B018 - resolves diffusers' lazy pipeline/model modules now


def ensure_engine() -> None:
    """Blocks until the engine is imported; cheap after the first call."""
    global _ready
    if _ready:
        return
    with _lock:
        if not _ready:
            _import_engine()
            _ready = True
