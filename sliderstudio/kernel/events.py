"""Events out of the engine and commands into it: the seam between the trainer and its two faces.

The trainer is a plain loop. It calls `sink(event)` and polls a `Mailbox` between steps.
The CLI turns events into a progress bar; the GUI's QThread worker turns them into Qt signals.
Nothing here knows about Qt or terminals.

This module is the one declaration of both directions: the `Event` union lists every event type
and `Command` every command. The wire codec (`kernel/event_wire.py`) is derived from them, and each
face dispatches through a table keyed by event type that a test checks against `EVENT_TYPES`
(tests/test_event_wire.py). Adding an event type is: a frozen dataclass here, its name in `Event`,
and an entry in each face's table (the CLI's `ConsoleSink`, the app's `TrainingViewModel`).
"""
from __future__ import annotations

import queue
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Callable, Mapping, Protocol, get_args

from sliderstudio.kernel.wire_png import WirePng


@dataclass(frozen=True)
class Progress:
    step: int
    total: int
    loss: float
    lr: float
    it_per_s: float
    eta_s: float
    buckets: tuple[str, ...] = ()
    strengths: tuple[float, ...] = ()


@dataclass(frozen=True)
class Log:
    message: str
    level: str = "info"  # info | warning | error


@dataclass(frozen=True)
class Image:
    """A rendered sample (validation or preview); `image` is a PIL image (on the wire a base64 PNG;
    in the app a QImage, converted by the training worker off the UI thread)."""

    image: WirePng
    step: int
    prompt: str
    strength: float
    path: str | None = None


@dataclass(frozen=True)
class Checkpoint:
    step: int
    path: str


@dataclass(frozen=True)
class Finished:
    step: int
    adapter_path: str
    stopped_early: bool = False


@dataclass(frozen=True)
class Failed:
    message: str
    step: int
    exit_code: int = 1
    details: str = ""


@dataclass(frozen=True)
class Device:
    """Which device trains and its memory in bytes; sent when training starts and every few seconds.

    `used`/`free`/`total` describe the whole device, because that is what decides whether the next
    allocation fits (a GPU: the driver's figures, other processes included; the CPU: system RAM,
    `free` being what the kernel can hand out). `process` is this run's share (a GPU: what torch's
    allocator holds; the CPU: the process's resident memory). None where the platform does not say.
    """

    name: str          # "CPU (2 threads)", "NVIDIA H200 (cuda:0)"
    kind: str          # torch device type: cpu | cuda | mps | …
    used: int | None
    free: int | None
    total: int | None
    process: int | None
    step: int = 0


@dataclass(frozen=True)
class PauseChanged:
    """The trainer's answer to PAUSE (paused) and RESUME (not paused): the one way a face learns
    the run's pause state, sent only once the loop really holds (or goes on) between steps."""

    paused: bool
    step: int


Event = Progress | Log | Image | Checkpoint | Finished | Failed | Device | PauseChanged
# Every event type by its wire name (the class name), derived from the union above.
EVENT_TYPES: dict[str, type] = {cls.__name__: cls for cls in get_args(Event)}


def unhandled(table: Mapping[type, Any]) -> list[str]:
    """The event types a face's dispatch table has no entry for (tests call this for every face):
    an event type added here fails those tests until each face says how it shows it."""
    return [name for name, cls in EVENT_TYPES.items() if cls not in table]


class Command(str, Enum):
    """Every command a face can send the trainer; on the wire, one value per line (`pause`)."""

    STOP = "stop"
    PAUSE = "pause"
    RESUME = "resume"
    SAMPLE_NOW = "sample_now"
    SAVE_NOW = "save_now"


@dataclass
class Mailbox:
    """Thread-safe inbox the training loop polls between steps (never blocks the step)."""

    _queue: "queue.Queue[Command]" = field(default_factory=queue.Queue)

    def send(self, command: Command) -> None:
        self._queue.put(command)

    def take(self) -> Command | None:
        """The oldest command, or None at once: one at a time, so a PAUSE sees the RESUME behind it."""
        try:
            return self._queue.get_nowait()
        except queue.Empty:
            return None

    def drain(self) -> list[Command]:
        out = []
        while True:
            try:
                out.append(self._queue.get_nowait())
            except queue.Empty:
                return out

    def wait(self, timeout: float) -> Command | None:
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None
