"""The training process keeps its work however its app goes away: closed pipes, SIGTERM, SIGHUP,
SIGINT, or an app killed outright. Each ends the run with a checkpoint at the last step done.

The first tests exercise the pieces (the wire's sink, the command listener, the guard) and a
small guarded loop in its own process (signals and file descriptors are process-wide, so they are
never touched in the test process itself); the last ones drive the real `sliderstudio train
--events` on the toy model.
"""
from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from sliderstudio.kernel.event_wire import WireSink, decode, listen_for_commands
from sliderstudio.kernel.events import Command, Failed, Finished, Log, Mailbox, Progress
from sliderstudio.kernel.process_guard import PROCESS_LOG, ProcessGuard
from tests.process_waits import ended, metric_steps, wait_for

ROOT = Path(__file__).resolve().parents[1]


# --- the sink and the listener ---------------------------------------------------------------------
def test_a_broken_wire_goes_dead_reports_once_and_never_raises(capsys):
    read_fd, write_fd = os.pipe()
    os.close(read_fd)                                   # the app is gone: nobody reads
    broken = []
    sink = WireSink(os.fdopen(write_fd, "w", encoding="utf-8"), on_broken=lambda: broken.append(1))
    sink(Progress(7, 10, 0.5, 1e-3, 1.0, 3.0))
    sink(Log("stopped at step 7"))
    sink(Failed("late failure", 7))
    assert sink.dead and broken == [1] and sink.stream.closed
    assert capsys.readouterr().err.splitlines() == [
        "[wire closed] Progress 7", "[wire closed] Log stopped at step 7", "[wire closed] Failed 7 late failure"]


def test_a_closed_stream_counts_as_a_broken_wire():
    stream, broken = io.StringIO(), []
    sink = WireSink(stream, on_broken=lambda: broken.append(1))
    sink(Log("one"))
    stream.close()
    sink(Log("two"))
    sink(Log("three"))
    assert sink.dead and broken == [1]


def test_a_live_wire_is_untouched():
    stream = io.StringIO()
    sink = WireSink(stream, on_broken=lambda: pytest.fail("the wire is not broken"))
    sink(Log("one"))
    assert not sink.dead and decode(stream.getvalue()) == Log("one")


class UnreadableInput:
    def __iter__(self):
        yield "save_now\n"
        raise OSError(5, "Input/output error")         # a terminal that hung up


@pytest.mark.parametrize("stream", [io.StringIO("save_now\n"), UnreadableInput()])
def test_the_end_of_input_goes_to_on_end_instead_of_a_bare_stop(stream):
    mailbox, ended = Mailbox(), []
    listen_for_commands(stream, mailbox, on_end=lambda: ended.append(1)).join(timeout=5)
    assert mailbox.drain() == [Command.SAVE_NOW] and ended == [1]


# --- the guard's decisions -------------------------------------------------------------------------
def test_every_stop_queues_stop_but_only_the_first_reason_is_kept_and_logged():
    mailbox, logs = Mailbox(), []
    guard = ProcessGuard(mailbox, logs.append)
    guard.watch_setup(lambda: False)                 # the loop runs
    guard.stop("received SIGTERM")
    guard.stop("the app closed the command pipe (stdin)")
    assert mailbox.drain() == [Command.STOP, Command.STOP]
    assert guard.reason == "received SIGTERM"
    assert logs == [Log("stopping after the step in flight, keeping a checkpoint: received SIGTERM", "warning")]


def test_a_stop_during_set_up_ends_the_process_at_once_with_nothing_kept():
    mailbox, events, exits = Mailbox(), [], []
    guard = ProcessGuard(mailbox, events.append, exit_process=exits.append)
    guard.watch_setup(lambda: True)
    guard.stop("received SIGTERM")
    assert exits == [0] and events == [
        Log("stopped during set-up (received SIGTERM): no step was done, nothing to keep", "warning"),
        Finished(0, "", stopped_early=True)]


def test_a_stop_before_set_up_began_is_silent_then_acts_when_set_up_begins():
    exits, events = [], []
    guard = ProcessGuard(Mailbox(), events.append, exit_process=exits.append)
    guard.stop("the app closed the command pipe (stdin)")       # the config is being read
    assert exits == [] and events == []                          # a bad config still ends with Failed alone
    guard.watch_setup(lambda: True)
    assert exits == [0] and isinstance(events[-1], Finished)
    mailbox, events = Mailbox(), []
    later = ProcessGuard(mailbox, events.append, exit_process=exits.append)
    later.stop("received SIGTERM")
    later.watch_setup(lambda: False)                             # a trainer without a set-up phase
    assert exits == [0] and mailbox.drain() == [Command.STOP, Command.STOP]
    assert events == [Log("stopping after the step in flight, keeping a checkpoint: received SIGTERM", "warning")]


def test_a_closed_command_pipe_with_the_parent_alive_stops_without_diverting_output():
    mailbox = Mailbox()
    guard = ProcessGuard(mailbox)
    guard.input_ended()
    assert mailbox.drain() == [Command.STOP] and not guard.diverted
    assert guard.reason == "the command pipe (stdin) closed: the app quit or is gone" and not guard.parent_gone()


# --- a guarded loop in its own process --------------------------------------------------------------
GUARDED_LOOP = r'''
import sys, time
from pathlib import Path
from sliderstudio.kernel.events import Command, Mailbox
from sliderstudio.kernel.process_guard import ProcessGuard

out, setup_s = Path(sys.argv[1]), float(sys.argv[2])
mailbox = Mailbox()
guard = ProcessGuard(mailbox, lambda event: print("log:", type(event).__name__, getattr(event, "message", ""),
                                                  file=sys.stderr, flush=True))
guard.log_file = out / "process.log"
guard.install()
state = {"setup": True, "step": 0}
guard.watch_setup(lambda: state["setup"])
print("ready", flush=True)
end = time.monotonic() + setup_s        # a long model load
while time.monotonic() < end:
    time.sleep(0.01)
state["setup"] = False
while state["step"] < 3000:
    if Command.STOP in mailbox.drain():
        (out / "result.txt").write_text(f"stopped after step {state['step']}: {guard.reason}")
        break
    time.sleep(0.02)                       # the optimizer step
    state["step"] += 1
    (out / "steps.txt").write_text(str(state["step"]))
    print(f"step {state['step']}", file=sys.stderr, flush=True)
'''


def start_loop(out: Path, setup_s: float = 0.0, **popen) -> subprocess.Popen:
    out.mkdir(parents=True, exist_ok=True)
    popen.setdefault("stdout", subprocess.PIPE)
    popen.setdefault("stderr", subprocess.PIPE)
    proc = subprocess.Popen([sys.executable, "-c", GUARDED_LOOP, str(out), str(setup_s)], cwd=ROOT,
                            text=True, **popen)
    return proc




def steps_done(out: Path) -> int:
    try:
        return int((out / "steps.txt").read_text() or 0)
    except (FileNotFoundError, ValueError):
        return 0


def test_sigterm_between_steps_stops_after_the_step_in_flight_and_ignores_other_signals(tmp_path):
    proc = start_loop(tmp_path)
    try:
        wait_for(lambda: steps_done(tmp_path) >= 5, 60, "five steps")
        proc.send_signal(signal.SIGCHLD)               # another handler's signal: no stop
        time.sleep(0.3)
        assert not (tmp_path / "result.txt").exists() and proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        proc.send_signal(signal.SIGTERM)               # a second one while stopping changes nothing
        assert proc.wait(timeout=20) == 0
    finally:
        proc.kill()
    result = (tmp_path / "result.txt").read_text()
    assert result == f"stopped after step {steps_done(tmp_path)}: received SIGTERM"
    assert proc.stderr.read().count("log: Log stopping after the step in flight") == 1


def test_a_signal_during_set_up_ends_it_at_once(tmp_path):
    proc = start_loop(tmp_path, setup_s=120)
    try:
        assert proc.stdout.readline() == "ready\n"
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
        took = time.monotonic() - started
    finally:
        proc.kill()
    assert took < 10 and not (tmp_path / "steps.txt").exists() and not (tmp_path / "result.txt").exists()
    assert proc.stderr.read().splitlines() == [
        "log: Log stopped during set-up (received SIGINT): no step was done, nothing to keep", "log: Finished "]


def test_sighup_stops_and_sends_further_output_to_the_log_file(tmp_path):
    proc = start_loop(tmp_path)
    try:
        wait_for(lambda: steps_done(tmp_path) >= 3, 60, "three steps")
        proc.send_signal(signal.SIGHUP)
        assert proc.wait(timeout=20) == 0
    finally:
        proc.kill()
    assert (tmp_path / "result.txt").read_text() == f"stopped after step {steps_done(tmp_path)}: received SIGHUP"
    log = (tmp_path / "process.log").read_text()
    assert "log: Log stopping after the step in flight, keeping a checkpoint: received SIGHUP" in log
    assert "log: Log stopping" not in proc.stderr.read()   # after the hang-up nothing goes to the old stderr


PARENT = r'''
import subprocess, sys
child = subprocess.Popen([sys.executable, "-c", sys.argv[1], sys.argv[2], "0"], stdin=sys.stdin)
print(child.pid, flush=True)
child.wait()
'''


def test_the_watchdog_notices_a_parent_killed_with_sigkill(tmp_path):
    """No pipe tells the child here (the test holds its stdin open): only the watchdog can notice."""
    read_fd, write_fd = os.pipe()
    parent = subprocess.Popen([sys.executable, "-c", PARENT, GUARDED_LOOP, str(tmp_path)], cwd=ROOT,
                              stdin=read_fd, stdout=subprocess.PIPE, text=True)
    os.close(read_fd)
    child_pid = int(parent.stdout.readline())
    try:
        wait_for(lambda: steps_done(tmp_path) >= 5, 60, "five steps")
        parent.kill()
        parent.wait(timeout=10)
        killed = time.monotonic()
        wait_for(lambda: (tmp_path / "result.txt").exists(), 10, "the child to notice")
        noticed = time.monotonic() - killed
        wait_for(lambda: ended(child_pid), 10, "the child to end")
    finally:
        os.close(write_fd)
        try:
            os.kill(child_pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    result = (tmp_path / "result.txt").read_text()
    assert result == f"stopped after step {steps_done(tmp_path)}: the app (pid {parent.pid}) is gone"
    assert noticed < 3.0
    print(f"\nwatchdog noticed the killed parent after {noticed:.2f} s")


WIRED_LOOP = r"""
import sys, time
from pathlib import Path
from sliderstudio.kernel.event_wire import WireSink, claim_stdout, listen_for_commands
from sliderstudio.kernel.events import Command, Mailbox
from sliderstudio.kernel.process_guard import ProcessGuard

out = Path(sys.argv[1])
sink = WireSink(claim_stdout())
mailbox = Mailbox()
guard = ProcessGuard(mailbox, sink)
sink.on_broken = lambda: guard.app_gone("the app stopped reading events (stdout closed)")
guard.log_file = out / "process.log"
guard.install(watch_parent=False)
listen_for_commands(sys.stdin, mailbox, on_end=guard.input_ended)
guard.watch_setup(lambda: False)
step = 0
while Command.STOP not in mailbox.drain():
    time.sleep(0.02)
    step += 1
    (out / "steps.txt").write_text(str(step))
(out / "result.txt").write_text(guard.reason)
"""

DYING_APP = r"""
import os, subprocess, sys, time
from pathlib import Path
child = subprocess.Popen([sys.executable, "-c", sys.argv[1], sys.argv[2]], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE)
print(child.pid, flush=True)
while not Path(sys.argv[2], "steps.txt").exists():
    time.sleep(0.02)
child.stdin.close()          # the kernel closes a dying process's files one by one: the command pipe first,
time.sleep(0.2)              # the event pipe a moment later (still readable, never read)
os._exit(9)
"""


def test_a_stop_line_written_while_a_dying_app_still_holds_the_event_pipe_reaches_the_process_log(tmp_path):
    """The app's command pipe ends while its event pipe is still open, then the app is gone: the
    line that says why the run stopped must not vanish into the pipe nobody will read."""
    app = subprocess.Popen([sys.executable, "-c", DYING_APP, WIRED_LOOP, str(tmp_path)], cwd=ROOT,
                           stdout=subprocess.PIPE, text=True)
    child_pid = int(app.stdout.readline())
    try:
        assert app.wait(timeout=60) == 9
        wait_for(lambda: (tmp_path / "result.txt").exists(), 20, "the child to stop")
        wait_for(lambda: ended(child_pid), 20, "the child to end")
    finally:
        try:
            os.kill(child_pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    reason = f"the app (pid {app.pid}) is gone: its command pipe closed"
    assert (tmp_path / "result.txt").read_text() == reason
    lines = [line for line in (tmp_path / "process.log").read_text().splitlines() if "stopping after" in line]
    assert lines == [f"[wire closed] Log stopping after the step in flight, keeping a checkpoint: {reason}"]




# --- the real training process on the toy model -------------------------------------------------------
STOP_AT = 4      # the step at which the app "goes away"


def toy_project(root: Path) -> Path:
    from sliderstudio.toy.demo_project import write_demo_project

    write_demo_project(root, pairs=2, max_train_steps=400)
    cfg = json.loads((root / "config.json").read_text())
    cfg.update(checkpointing_steps=100, validation_steps=0)
    (root / "config.json").write_text(json.dumps(cfg))
    return root


def start_training(root: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "sliderstudio", "train", "--config", str(root), "--events"],
                            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def go_away(proc: subprocess.Popen, how: str) -> list:
    """Read events until step STOP_AT (or the first event, for "setup"), then end the app's side `how`."""
    events = []
    for line in proc.stdout:
        events.append(decode(line))
        if how == "setup" or (isinstance(events[-1], Progress) and events[-1].step == STOP_AT):
            break
    if how == "close":
        proc.stdout.close()
        proc.stdin.close()
    else:
        proc.send_signal(getattr(signal, how if how != "setup" else "SIGTERM"))
        events += [decode(line) for line in proc.stdout]       # a live wire still gets the end of the run
    return events




def test_train_events_keeps_the_last_step_done_whichever_way_the_app_goes(tmp_path):
    """Closed pipes, SIGTERM, SIGHUP mid-run: a checkpoint at the last step done, state not "running",
    exit status 0. SIGTERM during set-up: a clean end with nothing to keep. (Four processes at once.)"""
    hows = ("close", "SIGTERM", "SIGHUP", "setup")
    roots = {how: toy_project(tmp_path / how) for how in hows}
    procs = {how: start_training(roots[how]) for how in hows}
    events, codes = {}, {}
    with ThreadPoolExecutor(len(hows)) as pool:      # each app side acts at its own moment
        try:
            for how, found in zip(hows, pool.map(go_away, procs.values(), hows, timeout=600)):
                events[how] = found
            for how in hows:
                codes[how] = procs[how].wait(timeout=300)
        finally:
            for proc in procs.values():
                proc.kill()
    for how in ("close", "SIGTERM", "SIGHUP"):
        out = roots[how] / "output"
        steps = metric_steps(out)
        (checkpoint,) = sorted((out / "checkpoints").glob("checkpoint-*"))
        state = json.loads((checkpoint / "state.json").read_text())
        beat = json.loads((out / "run.json").read_text())
        assert codes[how] == 0, (how, procs[how].stderr.read())
        # the step in flight ends the run; the trainer may be a line or two ahead of our reading
        assert steps == list(range(1, len(steps) + 1)) and STOP_AT <= steps[-1] <= STOP_AT + 3, (how, steps)
        assert state["step"] == steps[-1] and checkpoint.name == f"checkpoint-{steps[-1]:06d}", how
        assert beat["state"] == "ended" and beat["step"] == steps[-1], (how, beat)
    assert "the app stopped reading events" in (roots["close"] / "output" / PROCESS_LOG).read_text() or \
        "the command pipe (stdin) closed" in (roots["close"] / "output" / PROCESS_LOG).read_text()
    for how in ("SIGTERM", "SIGHUP"):
        finished = events[how][-1]
        assert finished == Finished(metric_steps(roots[how] / "output")[-1], finished.adapter_path, True), how
        assert Log(f"stopping after the step in flight, keeping a checkpoint: received {how}", "warning") in \
            events[how]
    assert not (roots["SIGTERM"] / "output" / PROCESS_LOG).exists()     # the app was still there to read
    setup = roots["setup"] / "output"
    assert codes["setup"] == 0 and events["setup"][-2:] == [
        Log("stopped during set-up (received SIGTERM): no step was done, nothing to keep", "warning"),
        Finished(0, "", True)]
    assert not any(isinstance(e, Progress) for e in events["setup"]) and not (setup / "checkpoints").exists()
    assert not (setup / "run.json").exists()           # no step, no heartbeat: nothing claims a run


def test_a_bad_config_still_exits_2_with_the_guard_installed(tmp_path):
    root = toy_project(tmp_path / "bad")
    cfg = json.loads((root / "config.json").read_text())
    cfg["checkpointing_steps"] = "often"
    (root / "config.json").write_text(json.dumps(cfg))
    proc = start_training(root)
    try:
        out = proc.stdout.read()                      # stdin stays open: the app is still there
        assert proc.wait(timeout=120) == 2
    finally:
        proc.kill()
    (event,) = [decode(line) for line in out.splitlines()]
    assert isinstance(event, Failed) and "checkpointing_steps" in event.message and "often" in event.message
    assert not (root / "output").exists()
