"""The last resort for an exception nobody expected: a readable message plus a log file with the traceback.

A bare `TypeError: argument of type 'NoneType' is not iterable` tells a user nothing and a developer
not much more. So the command line says what happened and where (the innermost frame inside Slider
Studio, where our code met the problem) and keeps the whole traceback in a file it names, which is
what a bug report needs.
"""
from __future__ import annotations

import os
import platform
import sys
import time
import traceback
from pathlib import Path
from typing import Sequence

from sliderstudio import __version__
from sliderstudio.kernel import atomic

LOG_DIR_ENV = "SLIDERSTUDIO_LOG_DIR"
PACKAGE_DIR = Path(__file__).resolve().parent.parent


def log_dir() -> Path:
    """The per-user folder for crash logs (the platform's usual place; overridable for tests)."""
    override = os.environ.get(LOG_DIR_ENV)
    if override:
        return Path(override)
    if sys.platform.startswith("win"):
        return Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local") / "SliderStudio" / "logs"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Logs" / "SliderStudio"
    return Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "sliderstudio" / "logs"


def innermost_own_frame(exc: BaseException) -> traceback.FrameSummary | None:
    """The deepest traceback frame in Slider Studio's own files (library frames below it are skipped)."""
    own = None
    for frame in traceback.extract_tb(exc.__traceback__):
        try:
            inside = Path(frame.filename).resolve().is_relative_to(PACKAGE_DIR)
        except (OSError, ValueError):
            inside = False
        if inside:
            own = frame
    return own


def where(exc: BaseException) -> str:
    """`sliderstudio/commands.py:172 in cmd_preview`, or the innermost frame at all when none is ours."""
    frame = innermost_own_frame(exc)
    if frame is None:
        frames = traceback.extract_tb(exc.__traceback__)
        if not frames:
            return "an unknown place"
        frame = frames[-1]
        return f"{frame.filename}:{frame.lineno} in {frame.name}"
    relative = Path(frame.filename).resolve().relative_to(PACKAGE_DIR.parent)
    return f"{relative.as_posix()}:{frame.lineno} in {frame.name}"


def summary(exc: BaseException) -> str:
    """One readable line for an event or a status bar: the type, where it happened, the message."""
    return f"unexpected {type(exc).__name__} at {where(exc)}: {str(exc).strip() or '(no message)'}"


def summary_with_log(exc: BaseException, argv: Sequence[str]) -> str:
    """`summary` plus the crash log's path: what the app shows for a failure it did not expect."""
    log = write_crash_log(exc, argv)
    return summary(exc) + (f" (full traceback: {log})" if log else "")


def write_crash_log(exc: BaseException, argv: Sequence[str], folder: Path | None = None) -> Path | None:
    """Write the traceback and the context to a new file; None when no log folder is writable.

    One file per exception: a later caller (the CLI's last resort after the trainer reported the
    same error) gets the path written first.
    """
    earlier = getattr(exc, "_sliderstudio_crash_log", None)
    if earlier is not None:
        return earlier
    stamp = time.strftime("%Y%m%d-%H%M%S")
    body = "".join([
        f"sliderstudio {__version__}, Python {platform.python_version()}, {platform.platform()}\n",
        f"command: sliderstudio {' '.join(argv)}\n",
        f"time: {time.strftime('%Y-%m-%d %H:%M:%S %z')}\n\n",
        *traceback.format_exception(type(exc), exc, exc.__traceback__),
    ])
    target_dir = folder or log_dir()
    path = target_dir / f"crash-{stamp}-{os.getpid()}.log"
    try:
        target_dir.mkdir(parents=True, exist_ok=True)
        atomic.write_text(path, body)
    except OSError:
        return None
    try:
        exc._sliderstudio_crash_log = path   # type: ignore[attr-defined]
    except AttributeError:
        pass  # an exception type with __slots__: a second call writes a second file
    return path


def report_unexpected(exc: BaseException, argv: Sequence[str]) -> str:
    """The message the user sees: what, where, and which file holds the traceback."""
    text = str(exc).strip() or "(no message)"
    log = write_crash_log(exc, argv)
    lines = [f"error: an unexpected {type(exc).__name__}: {text}",
             f"  where: {where(exc)}",
             f"  full traceback: {log}" if log else "  no log folder is writable, so the traceback follows:",
             "  This is a bug in Slider Studio or an input it does not check yet; please report it with the traceback."]
    if log is None:
        lines += traceback.format_exception(type(exc), exc, exc.__traceback__)
    return "\n".join(line.rstrip("\n") for line in lines)
