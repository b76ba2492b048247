"""Lower the calling thread's CPU priority, so the UI thread wins when cores are scarce.

On Linux `nice` is per thread, so a worker can step back without touching the UI thread;
threads it starts later (e.g. torch's pool) inherit the lower priority. Best effort elsewhere.
"""
from __future__ import annotations

import os
import threading

WORKER_NICENESS = 10


def lower_current_thread_priority(niceness: int = WORKER_NICENESS) -> bool:
    """Returns True when the priority was lowered."""
    if not hasattr(os, "setpriority"):
        return False
    try:
        tid = threading.get_native_id()
        current = os.getpriority(os.PRIO_PROCESS, tid)
        os.setpriority(os.PRIO_PROCESS, tid, min(19, current + niceness))
    except OSError:
        return False
    return True
