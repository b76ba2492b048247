"""Waiting on real processes in tests: poll a condition, tell an ended process, read a run's steps.

Shared by the tests that kill apps, runners and training processes (process guard, app killed,
queue runner), which each had a copy.
"""
from __future__ import annotations

import json
import time
from pathlib import Path


def wait_for(check, timeout: float, what: str, poll_s: float = 0.05):
    """The first truthy value of `check()`, or AssertionError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(poll_s)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def ended(pid: int) -> bool:
    """Gone, or a zombie nobody reaped yet (its parent is dead or has not waited)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def metric_steps(out: Path) -> list[int]:
    """The steps in a run's metrics.jsonl so far ([] before the first, or mid-write)."""
    try:
        return [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    except (FileNotFoundError, ValueError):
        return []
