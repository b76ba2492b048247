"""Why a training process ended without sending a result, in words a person can act on.

Why one place: the app's window and the job queue both run training as a child process and both
must explain a child that died (killed by a signal, or exiting with an error line on stderr) the
same way; the out-of-memory hint matters in both.
"""
from __future__ import annotations

import signal


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
