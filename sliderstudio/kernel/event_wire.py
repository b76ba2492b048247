"""Engine events as JSON lines, and commands back as text lines: how a training process talks.

The app trains in a child process (`sliderstudio train --events`) so that nothing the engine does
(model construction, full garbage collections, checkpoint pickling: long stretches that hold
Python's GIL) can freeze the window. The child writes one JSON object per event to its stdout
and reads commands (`stop`) from its stdin; this module is both ends of that wire, so the two
can never disagree. Nothing here knows about Qt.
"""
from __future__ import annotations

import base64
import io
import json
import os
import sys
import threading
from dataclasses import asdict, fields
from typing import IO, Any, Callable

from sliderstudio.kernel.events import (
    Checkpoint, Command, Device, Event, Failed, Finished, Image, Log, Mailbox, PauseChanged, Progress,
)

EVENT_TYPES: dict[str, type] = {cls.__name__: cls for cls in (Progress, Log, Image, Checkpoint, Finished, Failed,
                                                           Device, PauseChanged)}


class WireError(ValueError):
    """A line on the wire that is not an event (a stray print, a truncated write)."""

    def __init__(self, message: str, line: str):
        self.line = line
        super().__init__(f"{message}: {line[:200]!r}")


def encode(event: Event) -> str:
    """One line of JSON (no newline). An Image carries its picture as base64 PNG."""
    data: dict[str, Any] = {"type": type(event).__name__}
    if isinstance(event, Image):
        data |= {f.name: getattr(event, f.name) for f in fields(event) if f.name != "image"}
        data["png"] = _png_base64(event.image)
    else:
        data |= asdict(event)
    return json.dumps(data, separators=(",", ":"))


def decode(line: str) -> Event:
    """The event a line describes; WireError for anything else."""
    try:
        data = json.loads(line)
    except json.JSONDecodeError:
        raise WireError("not JSON", line) from None
    if not isinstance(data, dict) or data.get("type") not in EVENT_TYPES:
        raise WireError("not an event", line)
    cls = EVENT_TYPES[data.pop("type")]
    if cls is Image:
        data["image"] = _png_image(data.pop("png", ""), line)
    for name in ("buckets", "strengths"):
        if name in data:
            data[name] = tuple(data[name])
    try:
        return cls(**data)
    except TypeError as exc:
        raise WireError(f"bad {cls.__name__} fields ({exc})", line) from None


def _png_base64(image: Any) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _png_image(text: str, line: str) -> Any:
    from PIL import Image as PILImage

    try:
        image = PILImage.open(io.BytesIO(base64.b64decode(text, validate=True)))
        image.load()
    except Exception:  # noqa: BLE001 - any undecodable picture is a bad line
        raise WireError("Image event without a readable PNG", line) from None
    return image


class WireSink:
    """The child's event sink: one flushed line per event, safe to call from several threads.

    A wire whose reader is gone (the app quit or died: BrokenPipeError, or a closed stream) must
    not end the run; the run has a checkpoint to write. The sink then goes dead: it closes its
    end, calls `on_broken` once (the training process turns that into a stop) and from then on
    writes a one-line summary of each event to stderr instead.
    """

    def __init__(self, stream: IO[str], on_broken: Callable[[], None] | None = None):
        self.stream = stream
        self.on_broken = on_broken
        self.dead = False
        self._lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        line = encode(event) + "\n"
        with self._lock:
            broke = self._write(line)
        if broke and self.on_broken is not None:
            self.on_broken()      # outside the lock: it may log through this sink
        if self.dead:
            _report_dropped(event)

    def _write(self, line: str) -> bool:
        """Write under the lock; True only for the write that found the wire broken."""
        if self.dead:
            return False
        try:
            self.stream.write(line)
            self.stream.flush()
            return False
        except (OSError, ValueError):      # EPIPE / closed stream: the reader is gone
            self.dead = True
            try:
                self.stream.close()    # closed now, so exit does not try to flush it again
            except (OSError, ValueError):
                pass
            return True


def _report_dropped(event: Event) -> None:
    """What a dead wire could not deliver, for the process log (never the picture's bytes)."""
    text = event.message if isinstance(event, (Log, Failed)) else ""
    step = getattr(event, "step", "")
    try:
        parts = ("[wire closed]", type(event).__name__, str(step), text)
        print(" ".join(part for part in parts if part), file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


def claim_stdout() -> IO[str]:
    """Take file descriptor 1 for the wire and send everything else written to stdout to stderr.

    Libraries print (and C code writes to fd 1); one stray line in the event stream would be a
    protocol error, so the wire gets a private copy of stdout and fd 1 becomes stderr.
    """
    sys.stdout.flush()
    wire = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return wire


def listen_for_commands(stream: IO[str], mailbox: Mailbox,
                        on_unknown: Callable[[str], None] | None = None,
                        on_end: Callable[[], None] | None = None) -> threading.Thread:
    """Read command lines into the mailbox on a daemon thread.

    End of input means the app that started the run is gone (closed or crashed): the run stops
    the way Stop does, keeping a checkpoint, rather than training on with nobody watching.
    `on_end`, when given, is that stop (the training process's guard also asks why the input ended).
    """
    def read() -> None:
        try:
            for raw in stream:
                text = raw.strip()
                if not text:
                    continue
                try:
                    mailbox.send(Command(text))
                except ValueError:
                    if on_unknown is not None:
                        on_unknown(text)
        except (OSError, ValueError):
            pass      # an unreadable input ends like a closed one
        if on_end is not None:
            on_end()
        else:
            mailbox.send(Command.STOP)

    thread = threading.Thread(target=read, name="commands", daemon=True)
    thread.start()
    return thread
