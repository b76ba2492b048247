"""The training process's wire: events as JSON lines out, commands in, and `train --events` end to end."""
from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image as PILImage

from sliderstudio.commands import ConsoleSink
from sliderstudio.kernel import events
from sliderstudio.kernel.event_wire import (
    EventCodec, WireError, WireSink, decode, decode_command, encode, encode_command, listen_for_commands,
)
from sliderstudio.kernel.events import (
    EVENT_TYPES, Checkpoint, Command, Device, Failed, Finished, Image, Log, Mailbox, PauseChanged, Progress,
    unhandled,
)
from sliderstudio.kernel.process_guard import PARENT_SETTLE_S
from tests.conftest import make_project

ROOT = Path(__file__).resolve().parents[1]
FAKE_CHILD = ROOT / "tests" / "gui" / "fake_train_child.py"


ROUND_TRIPS = [
    Progress(3, 10, 0.25, 1e-4, 2.5, 2.8, ("bigger", "smaller"), (1.0, -1.0)),
    Log("a warning about the bucket", "warning"),
    Checkpoint(5, "/runs/out/checkpoints/checkpoint-000005"),
    Finished(10, "/runs/out/pytorch_lora_weights.safetensors", stopped_early=True),
    Failed("bucket 'more' has no images", 0, exit_code=2, details="Traceback …"),
    Device("NVIDIA H200 (cuda:0)", "cuda", 3 * 2**30, 137 * 2**30, 140 * 2**30, 2 * 2**30, step=12),
    Device("CPU (2 threads)", "cpu", None, None, None, None),
    PauseChanged(True, 7),
    PauseChanged(False, 7),
    Log("ünïcode\u2028and a line separator, kept on one ASCII line"),
]


@pytest.mark.parametrize("event", ROUND_TRIPS)
def test_every_event_survives_the_wire_unchanged(event):
    line = encode(event)
    assert "\n" not in line and line.isascii()
    assert json.loads(line)["type"] == type(event).__name__
    assert decode(line + "\n") == event


def test_the_round_trips_cover_every_declared_event_type():
    """The Event union is the one declaration: every frozen dataclass in kernel/events.py is in it, and
    each of its types is tested on the wire (Image below, with its pixels)."""
    declared = {name for name, obj in vars(events).items()
                if dataclasses.is_dataclass(obj) and obj.__dataclass_params__.frozen}
    assert declared == set(EVENT_TYPES) == {"Progress", "Log", "Image", "Checkpoint", "Finished", "Failed",
                                            "Device", "PauseChanged"}
    assert {type(e).__name__ for e in ROUND_TRIPS} | {"Image"} == set(EVENT_TYPES)


def test_not_a_number_and_infinity_cross_the_wire():
    """The ETA is infinite (or NaN) before the rate is known; the JSON constants carry it."""
    back = decode(encode(Progress(1, 10, float("nan"), 1e-4, 0.0, float("inf"))))
    assert math.isnan(back.loss) and back.eta_s == float("inf")


def test_an_event_with_near_miss_field_types_still_encodes_as_its_type():
    """Lists for tuples and 1.0 for an int, as json.dumps always took them: the line keeps its "type"
    (a union serializer would fall back to untyped output) and decodes to the intended event."""
    line = encode(Progress(2.0, 10, 0.5, 1, 2, 3, ["more"], [1, -1.0]))
    assert json.loads(line)["type"] == "Progress"
    assert decode(line) == Progress(2, 10, 0.5, 1.0, 2.0, 3.0, ("more",), (1.0, -1.0))
    with pytest.raises(TypeError):
        encode(Checkpoint(1, Path("/not/a/str")))      # what JSON cannot hold fails at the sender


@dataclasses.dataclass(frozen=True)
class Rebooted:
    """An event type a later version might add: one class, nothing else written for the wire."""

    step: int
    why: str = ""


def test_a_new_event_type_travels_once_declared_and_each_face_must_say_how_it_shows_it():
    codec = EventCodec({**EVENT_TYPES, "Rebooted": Rebooted})
    line = codec.encode(Rebooted(4, "kernel update"))
    assert json.loads(line) == {"type": "Rebooted", "step": 4, "why": "kernel update"}
    assert codec.decode(line) == Rebooted(4, "kernel update")
    assert codec.decode(encode(Log("old ones too"))) == Log("old ones too")
    with pytest.raises(WireError, match="unknown type 'Rebooted'"):
        decode(line)                     # the real wire does not know it: only declared types travel
    with pytest.raises(TypeError, match="Rebooted"):
        encode(Rebooted(1))
    console = ConsoleSink(io.StringIO())
    assert unhandled(console.handlers) == []
    assert unhandled({}) == list(EVENT_TYPES)
    try:                                   # declared in the union (EVENT_TYPES), no handler in the console
        EVENT_TYPES["Rebooted"] = Rebooted
        assert unhandled(console.handlers) == ["Rebooted"]
    finally:
        del EVENT_TYPES["Rebooted"]


def test_the_console_shows_every_event_type_through_its_table():
    stream = io.StringIO()
    console = ConsoleSink(stream)
    picture = PILImage.new("RGB", (4, 4))
    for event in [*ROUND_TRIPS[:3], Image(picture, 2, "p", 1.0), PauseChanged(True, 2), *ROUND_TRIPS[4:6],
                  Progress(10, 10, 0.125, 1e-4, 2.0, 0.0), Finished(10, "/out/a.safetensors")]:
        console(event)
    assert stream.getvalue().splitlines() == [
        "step 3/10 loss 0.2500 lr 1.00e-04 2.50 it/s eta 3s",
        "warning: a warning about the bucket",
        "step 10/10 loss 0.1250 lr 1.00e-04 2.00 it/s eta 0s",
        "finished at step 10: /out/a.safetensors",
    ]


def test_every_command_has_one_line_on_the_wire_and_train_help_names_each():
    for command in Command:
        assert decode_command(encode_command(command) + "\n") is command
    from sliderstudio.cli import _parser

    train = next(a for a in _parser()._subparsers._group_actions[0].choices.values() if a.prog.endswith(" train"))
    events_help = next(a.help for a in train._actions if "--events" in a.option_strings)
    assert f"({', '.join(c.value for c in Command)})" in events_help     # a new command must be named there
    assert [encode_command(c) for c in Command] == ["stop", "pause", "resume", "sample_now", "save_now"]
    with pytest.raises(WireError, match="not a command .one of: stop, pause, resume, sample_now, save_now.") as bad:
        decode_command("PAUSE")
    assert bad.value.line == "PAUSE"


def test_an_image_event_carries_its_pixels():
    picture = PILImage.new("RGB", (8, 6), (10, 200, 30))
    picture.putpixel((2, 3), (255, 0, 0))
    back = decode(encode(Image(picture, 6, "a red square", 0.5, "/out/validation/x.png")))
    assert (back.step, back.prompt, back.strength, back.path) == (6, "a red square", 0.5, "/out/validation/x.png")
    assert back.image.size == (8, 6)
    assert back.image.convert("RGB").getpixel((2, 3)) == (255, 0, 0)
    assert back.image.convert("RGB").getpixel((0, 0)) == (10, 200, 30)


@pytest.mark.parametrize("line, why", [
    ("Loading pipeline components...", "^not JSON"),
    ('{"type": "Explosion"}', r"^not an event \(unknown type 'Explosion'\)"),
    ('{"type": 5, "step": 1}', r"^not an event: "),
    ('{"step": 1}', r"^not an event: "),
    ('[1, 2]', "^not an event: "),
    ('{"type": "Progress", "step": 1}', r"^bad Progress fields \(total: Field required; loss: Field required"),
    ('{"type": "Device", "name": "CPU", "kind": "cpu", "used": 1}',
     r"^bad Device fields \(free: Field required; total: Field required; process: Field required\)"),
    ('{"type": "PauseChanged", "paused": true, "step": 3, "why": "x"}',
     r"^bad PauseChanged fields \(unknown field 'why'\)"),
    ('{"type": "Checkpoint", "step": "three", "path": "/x"}', r"^bad Checkpoint fields \(step: Input should be"),
    ('{"type": "Image", "step": 1, "prompt": "p", "strength": 0, "png": "not base64!"}',
     r"^bad Image fields \(png: Image event without a readable PNG\)"),
])
def test_anything_else_on_the_wire_is_a_wire_error(line, why):
    with pytest.raises(WireError, match=why) as caught:
        decode(line)
    assert caught.value.line == line


def test_the_sink_writes_one_flushed_line_per_event():
    stream = io.StringIO()
    sink = WireSink(stream)
    sink(Log("one"))
    sink(Progress(1, 2, 0.5, 1e-3, 1.0, 1.0))
    lines = stream.getvalue().splitlines()
    assert [decode(line) for line in lines] == [Log("one"), Progress(1, 2, 0.5, 1e-3, 1.0, 1.0)]


def test_commands_reach_the_mailbox_and_end_of_input_means_stop():
    mailbox, unknown = Mailbox(), []
    thread = listen_for_commands(io.StringIO("\nsave_now\nexplode\nstop\n"), mailbox, unknown.append)
    thread.join(timeout=5)
    assert mailbox.drain() == [Command.SAVE_NOW, Command.STOP, Command.STOP]   # the last one: EOF
    assert unknown == ["explode"]


def start_child(project: Path, *extra: str, **settings) -> subprocess.Popen:
    env = {**os.environ, "FAKE_TRAINER": json.dumps(settings)}
    return subprocess.Popen([sys.executable, str(FAKE_CHILD), "train", "--config", str(project), "--events",
                             *extra], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)


def run_to_the_end(child: subprocess.Popen) -> list:
    """Read events until the run reports its end; stdin stays open meanwhile (closing it means stop)."""
    events = []
    for line in child.stdout:
        events.append(decode(line))
        if isinstance(events[-1], (Finished, Failed)):
            break
    child.stdin.close()
    assert child.wait(timeout=30) in (0, 2)
    return events


STEP_S = 0.1


def test_train_events_streams_only_events_and_stops_when_stdin_closes(tmp_path):
    """The app's process contract: stdout carries nothing but events (a stray print goes to stderr),
    and when the app goes away (stdin closed) the run stops with a checkpoint instead of going on."""
    project = make_project(tmp_path / "p", "sliderstudio:toy")
    child = start_child(project, step_seconds=STEP_S, total=200)
    events = []
    for line in child.stdout:
        events.append(decode(line))
        if isinstance(events[-1], Progress) and events[-1].step == 3:
            print("explode", file=child.stdin, flush=True)   # an unknown command: logged, ignored
            child.stdin.close()
    assert child.wait(timeout=30) == 0
    chatter = child.stderr.read()
    assert "a library printing to stdout" in chatter and "C code writing to fd 1" in chatter
    kinds = [type(e).__name__ for e in events]
    assert kinds[0] == "Log" and kinds[-2:] == ["Checkpoint", "Finished"]
    finished = events[-1]
    # a closed stdin waits up to PARENT_SETTLE_S for a dying app's reparenting, then stops
    assert finished.stopped_early and 3 <= finished.step <= 5 + PARENT_SETTLE_S / STEP_S
    assert (project / "output" / "checkpoints" / f"checkpoint-{finished.step:06d}" / "state.json").exists()
    assert Log("unknown command 'explode' ignored", "warning") in events


def test_train_events_reports_a_bad_config_as_a_failed_event_and_exits_2(tmp_path):
    project = make_project(tmp_path / "p", "sliderstudio:toy", config={"learning_rate": "fast"})
    child = start_child(project)
    out, err = child.communicate(timeout=60)
    assert child.returncode == 2
    (event,) = [decode(line) for line in out.splitlines()]
    assert isinstance(event, Failed) and event.exit_code == 2
    assert "learning_rate" in event.message and "fast" in event.message
    assert "error:" in err and not (project / "output").exists()


def test_train_events_passes_the_resume_override_to_the_trainer(tmp_path):
    project = make_project(tmp_path / "p", "sliderstudio:toy", config={"resume_from_checkpoint": "latest"})
    (project / "output").mkdir()
    (project / "output" / "fake-step.txt").write_text("7")
    resumed = start_child(project, "--resume_from_checkpoint", "latest", total=9)
    fresh = start_child(project, "--resume_from_checkpoint", "none", total=9)
    logs = {"resumed": run_to_the_end(resumed), "fresh": run_to_the_end(fresh)}
    assert Log("resumed at step 7") in logs["resumed"] and logs["resumed"][-1] == Finished(
        9, str(project / "output" / "pytorch_lora_weights.safetensors"))
    assert not any(isinstance(e, Log) and e.message.startswith("resumed") for e in logs["fresh"])
    assert [e.step for e in logs["fresh"] if isinstance(e, Progress)] == list(range(1, 10))


def test_commands_already_in_the_pipe_are_in_the_mailbox_before_the_trainer_looks():
    """Stop pressed while the process starts: delivered by the caller's thread, not left to the reader."""
    import os
    import threading

    senders = []

    class Recording(Mailbox):
        def send(self, command):
            senders.append((command, threading.current_thread().name))
            super().send(command)

    read_end, write_end = os.pipe()
    os.write(write_end, encode_command(Command.STOP).encode() + b"\n")
    with os.fdopen(read_end, "r") as stream:
        listen_for_commands(stream, Recording(), on_end=lambda: None)
        assert senders[:1] == [(Command.STOP, threading.current_thread().name)]
        os.close(write_end)


def test_waiting_lines_reads_only_what_is_there():
    import os

    from sliderstudio.kernel.event_wire import waiting_lines

    read_end, write_end = os.pipe()
    with os.fdopen(read_end, "r") as stream:
        assert waiting_lines(stream) == []                      # nothing written: no wait, no line
        os.write(write_end, b"pause\n")
        os.write(write_end, b"resume\n")
        lines = waiting_lines(stream)                           # the first line at least; one read may
        assert lines[0] == "pause\n" and lines[1:] in ([], ["resume\n"])  # take both into the text buffer
        os.close(write_end)
        assert lines + waiting_lines(stream) == ["pause\n", "resume\n"]
        assert waiting_lines(stream) == []                      # end of input is left to the reader
    assert waiting_lines(io.StringIO("stop\n")) == []            # not pollable: the thread reads it
