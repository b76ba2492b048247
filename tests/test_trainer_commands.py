"""The trainer's commands (pause/resume, sample now, save now) and its Device report, on the toy model."""
from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
import torch

from conftest import make_project
from sliderstudio.engine import device_report as report
from sliderstudio.kernel.events import (
    Checkpoint, Command, Device, Finished, Image, Log, Mailbox, PauseChanged, Progress,
)
from sliderstudio.engine.project import load_project
from sliderstudio.engine.trainer import Trainer

TOY = "sliderstudio:toy"
SMALL = {"max_train_steps": 2, "resolution": 32, "validation_resolution": 32, "validation_num_inference_steps": 1}


def run_with_commands(root: Path, commands: list[Command], timeout_s: float = 240) -> list:
    """A run whose mailbox already holds `commands`: the first poll (before step 1) serves them in order.
    On a thread with a deadline: a run stuck in its pause loop is stopped and the test fails."""
    mailbox, events, errors = Mailbox(), [], []
    for command in commands:
        mailbox.send(command)

    def train() -> None:
        try:
            Trainer(load_project(root), events.append, mailbox).run()
        except Exception as exc:  # noqa: BLE001 - re-raised on the test's thread
            errors.append(exc)

    thread = threading.Thread(target=train, daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        mailbox.send(Command.STOP)
        thread.join(60)
        pytest.fail(f"the run did not end within {timeout_s} s; events: {events[-5:]}")
    if errors:
        raise errors[0]
    return events


def answers(events: list) -> list:
    """The events that answer commands, in order (Progress, Device and info lines left out)."""
    keep = (Checkpoint, PauseChanged, Image, Finished)
    refusals = ("sample now:", "resume ignored")       # other warnings (about the data) are not answers
    return [e for e in events if isinstance(e, keep) or
            (isinstance(e, Log) and e.level == "warning" and e.message.startswith(refusals))]


def test_commands_queued_together_are_served_in_order_and_the_device_is_reported(tmp_path):
    root = make_project(tmp_path / "p", TOY, config=SMALL)
    events = run_with_commands(root, [Command.SAMPLE_NOW, Command.PAUSE, Command.PAUSE, Command.SAVE_NOW,
                                      Command.RESUME, Command.RESUME])
    out = root / "output"
    got = answers(events)
    assert got[0] == Log("sample now: nothing to render, the project has no validation prompts "
                         "(set validation_prompt or user_prompt_library)", "warning")
    # the RESUME queued behind the PAUSE is found (no deadlock); a second PAUSE while paused is a no-op;
    # SAVE_NOW is served while paused; a RESUME when not paused is refused in words
    assert got[1:5] == [PauseChanged(True, 0), Checkpoint(0, str(out / "checkpoints" / "checkpoint-000000")),
                        PauseChanged(False, 0), Log("resume ignored: the run is not paused", "warning")]
    assert isinstance(got[-1], Finished) and got[-1].step == 2
    assert (out / "checkpoints" / "checkpoint-000000" / "state.json").exists()
    assert not (out / "validation").exists()
    assert [e.step for e in events if isinstance(e, Progress)] == [1, 2]
    assert Log("paused at step 0") in events and Log("resumed") in events
    # the Device event: named before the model loads, again after it, before the first step
    devices = [i for i, e in enumerate(events) if isinstance(e, Device)]
    loading = next(i for i, e in enumerate(events) if isinstance(e, Log) and e.message.startswith("loading "))
    first_progress = next(i for i, e in enumerate(events) if isinstance(e, Progress))
    assert devices[0] < loading < devices[1] < first_progress     # named before the model loads, and after
    devices = [events[i] for i in devices]
    d = devices[1]
    assert d.name == f"CPU ({torch.get_num_threads()} threads)" and d.kind == "cpu" and d.step == 0
    assert d.used + d.free == d.total and 0 < d.free < d.total
    assert d.process > 50 * 2**20            # torch and the toy model are resident


def test_sample_now_renders_validation_for_the_current_step(tmp_path):
    root = make_project(tmp_path / "p", TOY, config={**SMALL, "validation_prompt": "a red square", "validation_steps": 2})
    events = run_with_commands(root, [Command.SAMPLE_NOW])
    images = [e for e in events if isinstance(e, Image)]
    # one at step 0 (the request, served before the first step), then the scheduled one at step 2
    assert [e.step for e in images] == [0, 2]
    first = Path(images[0].path)
    assert first == root / "output" / "validation" / "step-000000" / "validation_s+1.00.png"
    assert first.stat().st_size > 0 and images[0].prompt == "a red square"


def test_cpu_figures_come_from_proc(tmp_path):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       16000 kB\nMemFree:         1000 kB\nMemAvailable:    6000 kB\n")
    assert report.system_memory(meminfo) == (10000 * 1024, 6000 * 1024, 16000 * 1024)
    statm = tmp_path / "statm"
    statm.write_text("5000 300 100 1 0 200 0\n")
    assert report.process_rss(statm) == 300 * os.sysconf("SC_PAGE_SIZE")
    live = report.process_rss()
    assert live is not None and live > 10 * 2**20


def test_unreadable_proc_files_give_none_or_psutil_not_a_guess(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_psutil(name, *args, **kwargs):
        if name == "psutil":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_psutil)
    garbage = tmp_path / "garbage"
    garbage.write_text("not a meminfo\n")
    assert report.system_memory(tmp_path / "missing") == (None, None, None)
    assert report.system_memory(garbage) == (None, None, None)
    assert report.process_rss(garbage) is None
    d = report.device_report(torch.device("cpu"))
    assert d.kind == "cpu" and d.total is not None        # the real /proc is still read


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_figures_are_the_driver_s_and_the_allocator_s():
    device = torch.device("cuda:0")
    held = torch.empty(64 * 2**20, dtype=torch.uint8, device=device)
    d = report.device_report(device, step=3)
    assert d.name.endswith("(cuda:0)") and d.name.startswith(torch.cuda.get_device_name(0))
    assert d.kind == "cuda" and d.step == 3 and d.used + d.free == d.total
    assert d.process >= held.numel()
