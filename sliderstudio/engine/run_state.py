"""Is a run alive, stopped or finished? Decided from evidence, never from a stored "running" flag.

A run writes `run.json` (pid, step, total, time) every few seconds while it trains. A run whose
process is gone, or whose heartbeat is stale, is dead whatever the file says: the app then shows
"stopped at step N — Resume" instead of a job that looks stuck forever.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from sliderstudio.engine.checkpoints import PREFIX, latest_checkpoint

HEARTBEAT = "run.json"
STALE_AFTER_S = 60.0


@dataclass(frozen=True)
class RunStatus:
    state: str  # "none" | "running" | "stopped" | "finished"
    step: int = 0
    total: int = 0
    resumable_step: int | None = None

    @property
    def resumable(self) -> bool:
        """Ended before its last step (stopped, or its app went away) with a checkpoint to go on from."""
        return self.state == "stopped" and self.resumable_step is not None

    @property
    def label(self) -> str:
        if self.state == "running":
            return f"running — step {self.step} of {self.total}"
        if self.state == "stopped":
            where = f" — Resume from step {self.resumable_step}" if self.resumable_step else " — no checkpoint yet"
            return f"stopped at step {self.step}{where}"
        if self.state == "finished":
            return f"finished — {self.step} steps"
        return "not started"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_heartbeat(output_dir: Path) -> dict | None:
    try:
        return json.loads((output_dir / HEARTBEAT).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def run_status(output_dir: Path, now: float | None = None) -> RunStatus:
    beat = read_heartbeat(output_dir)
    ckpt = latest_checkpoint(output_dir)
    resumable = int(ckpt.name[len(PREFIX):]) if ckpt else None
    if beat is None:
        return RunStatus("stopped", resumable or 0, 0, resumable) if ckpt else RunStatus("none")
    step, total = int(beat.get("step", 0)), int(beat.get("total", 0))
    fresh = (now or time.time()) - float(beat.get("updated", 0)) < STALE_AFTER_S
    if beat.get("state") == "running" and fresh and pid_alive(int(beat.get("pid", -1))):
        return RunStatus("running", step, total, resumable)
    if beat.get("state") == "finished":
        return RunStatus("finished", step, total)
    return RunStatus("stopped", step, total, resumable)
