"""Every command `sliderstudio train --events` reads on stdin, sent to a real training process on the
bundled toy model, as a script (or the app) sends it: pause holds the run at its step and resume goes
on from that same step, sample now renders that step's validation images, save now writes that step's
checkpoint (paused and running), stop ends the run with a checkpoint; an unknown line is a warning.
"""
from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

from sliderstudio.kernel.event_wire import decode, encode_command
from sliderstudio.kernel.events import Checkpoint, Command, Finished, Image, Log, PauseChanged, Progress
from tests.conftest import make_project
from tests.process_waits import metric_steps

ROOT = Path(__file__).resolve().parents[1]
CONFIG = {"max_train_steps": 400, "checkpointing_steps": 0, "validation_steps": 0, "resolution": 32,
          "validation_prompt": "a photo of a red square", "validation_num_inference_steps": 2,
          "validation_resolution": 32}


class TrainingProcess:
    """`train --events` in a child process: events read on a thread, commands written to its stdin."""

    def __init__(self, root: Path):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sliderstudio", "train", "--config", str(root), "--events"], cwd=ROOT,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.events: list = []
        self.sent: list[str] = []
        self.stderr: list[str] = []
        self._seen = 0
        self._changed = threading.Condition()
        threading.Thread(target=self._read_events, daemon=True).start()
        threading.Thread(target=lambda: self.stderr.extend(self.proc.stderr), daemon=True).start()

    def _read_events(self) -> None:
        for line in self.proc.stdout:
            with self._changed:
                self.events.append(decode(line))     # a line that is not an event fails the test here
                self._changed.notify_all()

    def send(self, line: str) -> None:
        self.sent.append(line)
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def next(self, wanted, timeout: float = 120):
        """The first event after the last one returned for which `wanted(event)` holds."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for index in range(self._seen, len(self.events)):
                    if wanted(self.events[index]):
                        self._seen = index + 1
                        return self.events[index]
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._changed.wait(0.5)):
                    raise AssertionError(f"no such event within {timeout} s; last events: {self.events[-5:]}; "
                                         f"stderr: {''.join(self.stderr[-10:])}")
                self._changed.wait(min(left, 0.5))

    def since(self, event) -> list:
        return self.events[self.events.index(event) + 1:]


def test_every_stdin_command_acts_on_a_real_run_at_the_step_it_is_served(tmp_path):
    root = make_project(tmp_path / "run", "sliderstudio:toy", config=CONFIG)
    out = root / "output"
    run = TrainingProcess(root)
    try:
        run.next(lambda e: isinstance(e, Progress) and e.step >= 2)
        run.send(encode_command(Command.PAUSE))
        paused = run.next(lambda e: isinstance(e, PauseChanged))
        at = paused.step
        assert paused.paused is True and at >= 2
        time.sleep(1.5)                                   # the child trains on its own: give it the chance
        assert metric_steps(out)[-1] == at and not any(isinstance(e, Progress) for e in run.since(paused))

        run.send(encode_command(Command.SAMPLE_NOW))
        image = run.next(lambda e: isinstance(e, Image))
        assert image.step == at and image.prompt == "a photo of a red square" and image.strength == 1.0
        assert Path(image.path) == out / "validation" / f"step-{at:06d}" / "validation_s+1.00.png"
        assert image.image.size == (32, 32) and Path(image.path).stat().st_size > 0

        run.send(encode_command(Command.SAVE_NOW))
        saved = run.next(lambda e: isinstance(e, Checkpoint))
        assert Path(saved.path) == out / "checkpoints" / f"checkpoint-{at:06d}" and saved.step == at
        assert json.loads((Path(saved.path) / "state.json").read_text())["step"] == at

        run.send("explode")
        assert run.next(lambda e: isinstance(e, Log) and e.level == "warning") == \
            Log("unknown command 'explode' ignored", "warning")

        run.send(encode_command(Command.RESUME))
        assert run.next(lambda e: isinstance(e, PauseChanged)) == PauseChanged(False, at)
        assert run.next(lambda e: isinstance(e, Progress)).step == at + 1    # on from the step it held at

        run.next(lambda e: isinstance(e, Progress) and e.step >= at + 3)
        run.send(encode_command(Command.SAVE_NOW))                           # while running
        running_save = run.next(lambda e: isinstance(e, Checkpoint))
        assert running_save.step >= at + 3
        assert json.loads((Path(running_save.path) / "state.json").read_text())["step"] == running_save.step

        run.send(encode_command(Command.STOP))
        last = run.next(lambda e: isinstance(e, Checkpoint))
        finished = run.next(lambda e: isinstance(e, Finished))
        assert run.proc.wait(timeout=120) == 0, "".join(run.stderr[-20:])
    finally:
        run.proc.kill()
    steps = metric_steps(out)
    assert finished.stopped_early and finished.step == last.step == steps[-1] >= running_save.step
    assert steps == list(range(1, finished.step + 1))            # no step lost or repeated by the pause
    assert Path(last.path) == out / "checkpoints" / f"checkpoint-{finished.step:06d}"
    assert json.loads((Path(last.path) / "state.json").read_text())["step"] == finished.step
    assert Path(finished.adapter_path) == Path(last.path) / "pytorch_lora_weights.safetensors"
    assert Path(finished.adapter_path).stat().st_size > 0
    assert {line for line in run.sent if line != "explode"} == {c.value for c in Command}   # every command
