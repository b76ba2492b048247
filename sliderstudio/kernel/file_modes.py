"""Permission bits for the files and folders the app publishes: what the user's umask allows.

Outputs are read by other programs, often as another user (ComfyUI, a render server), so they must
get the modes any ordinary program's output gets (0o666 / 0o777 minus the umask). Temp files from
`tempfile` are private (0o600 / 0o700) and keep that mode through a rename, hence the explicit chmod.

The umask can only be read without side effects from /proc (Linux >= 4.7). `os.umask` is the
fallback, but it sets the mask while reading it, for every thread of the process: it runs once,
at import, before any worker thread writes a file.
"""
from __future__ import annotations

import os
from pathlib import Path

PROC_STATUS = Path("/proc/self/status")


def _umask_by_setting() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK_AT_IMPORT = _umask_by_setting()


def umask() -> int:
    """The process umask now (from /proc, so a later change is seen), else the one at import."""
    try:
        for line in PROC_STATUS.read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split(":", 1)[1].strip(), 8)
    except (OSError, ValueError):
        pass
    return _UMASK_AT_IMPORT


def file_mode() -> int:
    """The mode `open(path, "w")` would give a new file."""
    return 0o666 & ~umask()


def dir_mode() -> int:
    """The mode `mkdir` would give a new folder."""
    return 0o777 & ~umask()
