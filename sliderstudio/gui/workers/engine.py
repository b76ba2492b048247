"""Import the engine once, under a lock, before any worker thread touches it.

torch, diffusers (whose submodules load lazily on attribute access) and peft are not safe to
import from several threads at once: one thread can see a half-initialised module
("module 'diffusers.utils' has no attribute 'logging'"). Every worker entry point calls
`ensure_engine()` first; the first caller imports everything, the others wait for it.

After the import the whole heap is frozen out of the cyclic garbage collector (`gc.freeze`).
The import leaves about half a million long-lived objects behind; a full collection walks all
of them while holding the GIL, which measured 350 ms in the middle of a training run: the UI
thread cannot run a line of Python for that long. Frozen, those objects are never walked again,
and full collections during training cover only what the run itself allocated.

The first caller is a worker thread, and a collection there could free Qt objects off the UI
thread; so when the app's UI-thread collector runs (`gc_policy`), the freeze is handed to it.
"""
from __future__ import annotations

import gc
import threading

_lock = threading.Lock()
_ready = False


def _import_engine() -> None:
    import diffusers  # noqa: F401
    import peft  # noqa: F401

    import sliderstudio.engine.preview  # noqa: F401
    import sliderstudio.adapters.targets  # noqa: F401
    from sliderstudio.families.registry import FAMILIES

    for family in FAMILIES.values():
        family.pipeline_class  # noqa: B018 - resolves diffusers' lazy pipeline/model modules now


def freeze_import_heap() -> int:
    """Collect once, then move every surviving object to the permanent generation.

    Returns how many objects are frozen (for the record; 0 when handed to the UI thread's
    collector, which freezes on its next tick). Safe to call again: later calls freeze
    only what came since.
    """
    from sliderstudio.gui import gc_policy

    if gc_policy.collector_installed() and threading.current_thread() is not threading.main_thread():
        gc_policy.request_freeze()
        return 0
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def ensure_engine() -> None:
    """Blocks until the engine is imported; cheap after the first call."""
    global _ready
    if _ready:
        return
    with _lock:
        if not _ready:
            _import_engine()
            freeze_import_heap()
            _ready = True
