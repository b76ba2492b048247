"""Engine events as JSON lines, and commands back as text lines: how a training process talks.

The app trains in a child process (`sliderstudio train --events`) so that nothing the engine does
(model construction, full garbage collections, checkpoint pickling: long stretches that hold
Python's GIL) can freeze the window. The child writes one JSON object per event to its stdout
and reads commands (`stop`, `pause`, `resume`, `sample_now`, `save_now`: one `events.Command` value
a line) from its stdin; this module is both ends of that wire, so the two can never disagree. The
codec is derived from the declarations in `kernel/events.py` (a pydantic discriminated union over
`EVENT_TYPES`, keyed by the "type" field): a new event type travels without a change here.
Nothing here knows about Qt.
"""
from __future__ import annotations

import json
import os
import sys
import threading
from typing import IO, Annotated, Any, Callable, Mapping, Union

from pydantic import BeforeValidator, Discriminator, Tag, TypeAdapter, ValidationError

from sliderstudio.kernel.events import EVENT_TYPES, Command, Event, Failed, Log, Mailbox


class WireError(ValueError):
    """A line on the wire that is not an event or a command (a stray print, a truncated write)."""

    def __init__(self, message: str, line: str):
        self.line = line
        super().__init__(f"{message}: {line[:200]!r}")


def _member(name: str, cls: type) -> Any:
    """One event type in the wire union: its fields plus "type": name, which decoding drops again.
    A key the event does not have is an error (a line from another program, or a typo in a script)."""
    known = set(TypeAdapter(cls).json_schema(by_alias=True)["properties"])

    def fields_only(value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        unknown = sorted(set(value) - known - {"type"})
        if unknown:
            raise ValueError(f"unknown field {', '.join(map(repr, unknown))}")
        return {k: v for k, v in value.items() if k != "type"}

    return Annotated[cls, BeforeValidator(fields_only), Tag(name)]


class EventCodec:
    """Events ↔ JSON lines for a set of event types: a pydantic discriminated union over them, keyed
    by the "type" field (the class name). The wire uses the one built from events.EVENT_TYPES."""

    def __init__(self, types: Mapping[str, type]):
        self.types = dict(types)
        members = tuple(_member(name, cls) for name, cls in self.types.items())
        self._adapter: TypeAdapter = TypeAdapter(Annotated[Union[members], Discriminator(self._tag)])
        # Encoding goes by the event's own class: a union falls back to untyped output (no "type")
        # for an event whose field holds a near miss (a list for a tuple, 1.0 for an int).
        self._encoders = {name: TypeAdapter(cls) for name, cls in self.types.items()}

    def _tag(self, value: Any) -> str | None:
        """The discriminator: the line's "type" key, or an event object's class name."""
        if isinstance(value, dict):
            tag = value.get("type")
            return tag if isinstance(tag, str) else None
        name = type(value).__name__
        return name if self.types.get(name) is type(value) else None

    def encode(self, event: Event) -> str:
        """One line of ASCII JSON (no newline): {"type": class name, fields…}; an Image's picture as `png`."""
        name = self._tag(event)
        if name is None:
            raise TypeError(f"not an event type of the wire: {type(event).__name__}")
        # python mode + json.dumps: NaN/Infinity as json.loads reads them, near misses as json.dumps
        # writes them (no warnings), and a value JSON cannot hold is a TypeError, as it always was
        fields = self._encoders[name].dump_python(event, by_alias=True, warnings=False)
        return json.dumps({"type": name, **fields}, separators=(",", ":"))

    def decode(self, line: str) -> Event:
        """The event a line describes; WireError, naming what is wrong, for anything else."""
        try:
            return self._adapter.validate_json(line)
        except ValidationError as exc:
            raise WireError(_wire_problem(exc), line) from None


WIRE = EventCodec(EVENT_TYPES)
encode, decode = WIRE.encode, WIRE.decode


def _wire_problem(exc: ValidationError) -> str:
    """The first thing wrong with a line, in words: not JSON / not an event / which fields are bad."""
    errors = exc.errors(include_url=False)
    kind = errors[0]["type"]
    if kind == "json_invalid":
        return "not JSON"
    if kind in ("union_tag_not_found", "union_tag_invalid", "model_type", "dataclass_type"):
        found = errors[0].get("ctx", {}).get("tag")
        return f"not an event (unknown type {found!r})" if kind == "union_tag_invalid" and found else \
            "not an event"
    name = str(errors[0]["loc"][0]) if errors[0]["loc"] else "event"
    fields = "; ".join(_field_problem(e) for e in errors)
    return f"bad {name} fields ({fields})"


def _field_problem(error: dict) -> str:
    where = ".".join(str(part) for part in error["loc"][1:])
    message = error["msg"].removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


def encode_command(command: Command) -> str:
    """A command's line on the wire (no newline): its value, so a person can type it too."""
    return command.value


def decode_command(text: str) -> Command:
    """The command a line names (surrounding white space ignored); WireError for any other line."""
    try:
        return Command(text.strip())
    except ValueError:
        known = ", ".join(c.value for c in Command)
        raise WireError(f"not a command (one of: {known})", text) from None


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
    def deliver(raw: str) -> None:
        text = raw.strip()
        if not text:
            return
        try:
            mailbox.send(decode_command(text))
        except WireError:
            if on_unknown is not None:
                on_unknown(text)

    def read() -> None:
        try:
            for raw in stream:
                deliver(raw)
        except (OSError, ValueError):
            pass      # an unreadable input ends like a closed one
        if on_end is not None:
            on_end()
        else:
            mailbox.send(Command.STOP)

    for raw in waiting_lines(stream):
        deliver(raw)
    thread = threading.Thread(target=read, name="commands", daemon=True)
    thread.start()
    return thread


def waiting_lines(stream: IO[str]) -> list[str]:
    """The command lines already in the pipe, read now, before the reader thread exists.

    Why: Stop pressed while the process was still starting is in the pipe before the trainer's
    first look at its mailbox; left to the thread, a busy machine could schedule that look first
    and train a step nobody wanted. Whole lines only (the app writes each command in one write);
    lines that one read already took into the stream's buffer are left to the thread too;
    end of input is left to the thread, which stops the run the usual way. Nothing is read where
    the stream cannot be polled (Windows pipes, a StringIO): the thread then does all of it.
    """
    import select

    lines: list[str] = []
    if not hasattr(stream, "fileno"):
        return lines
    try:
        fd = stream.fileno()
        while select.select([fd], [], [], 0)[0]:
            raw = stream.readline()
            if not raw:
                break
            lines.append(raw)
    except (OSError, ValueError):
        pass
    return lines
