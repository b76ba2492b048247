"""Training as a child process: the environment it starts with, and why it ended without a result.

Why one place: the app's window and the job queue both run `sliderstudio train --events` as a child
process; both must start it on this copy of the package, and both must explain a child that died
(killed by a signal, or exiting with an error line on stderr) the same way, the out-of-memory hint
included.
"""
from __future__ import annotations

import os
import signal
import sys
from pathlib import Path


def child_environment() -> dict[str, str]:
    """The app's environment, with this copy of the package first on the path (a source checkout
    runs as well as an installed one) and Python's output unbuffered."""
    import sliderstudio

    env = dict(os.environ)
    if not getattr(sys, "frozen", False):
        source = str(Path(sliderstudio.__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (source, env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def ended_without_result(returncode: int, stderr_tail: list[str]) -> str:
    """Why a process that sent no Finished/Failed event ended, in words."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        hint = " (the system may have run out of memory)" if -returncode == signal.SIGKILL else ""
        return f"the training process was killed by {name}{hint}; the last checkpoint is kept"
    last_error = next((line for line in reversed(stderr_tail) if line.startswith("error:")), "")
    reason = f": {last_error.removeprefix('error:').strip()}" if last_error else ""
    return f"the training process ended with exit status {returncode} without a result{reason}"
