"""A stand-in trainer with the engine's contract (events, mailbox, STOP within one step).

Used where the test is about the GUI's handling of a run (stop, errors, stalls), so those
tests do not spend the CPU on a real model. The app trains in a child process; the stand-in
runs in that process (tests/gui/fake_train_child.py) behind the product's own CLI and wire.
"""
from __future__ import annotations

import json
import os
import re
import signal
import sys
import time
import traceback
from pathlib import Path

from sliderstudio.kernel.events import Checkpoint, Command, Failed, Finished, Log, Progress

FAKE_CHILD = Path(__file__).with_name("fake_train_child.py")


def use_fake_training_process(monkeypatch, **settings) -> None:
    """The app's Train button starts the stand-in's process; `settings` set FakeTrainer's attributes
    there (step_seconds, fail_at, total, die_at) and `kind` picks the class."""
    from sliderstudio.gui.workers import training as training_worker

    real = training_worker.training_command

    def command(project):
        argv = real(project)
        return [sys.executable, str(FAKE_CHILD)] + argv[argv.index("train"):]

    monkeypatch.setattr(training_worker, "training_command", command)
    monkeypatch.setenv("FAKE_TRAINER", json.dumps(settings))


def stop_seen_at(log_text: str) -> int:
    """The step at which the stand-in saw STOP, from its log line."""
    found = re.findall(r"stop seen at step (\d+)", log_text)
    assert found, "the stand-in never saw STOP"
    return int(found[-1])


class FakeTrainer:
    step_seconds = 0.02
    total = 30
    fail_at: int | None = None
    die_at: int | None = None        # the process vanishes here (a crash or an OOM kill)

    def __init__(self, project, sink, mailbox, device=None):
        self.project, self.sink, self.mailbox = project, sink, mailbox
        self.stop_seen_at: int | None = None

    def _save(self, name: str) -> Path:
        path = self.project.output_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"adapter")
        return path

    def run(self) -> Path:
        self.sink(Log("fake trainer started"))
        print("a library printing to stdout")           # must not reach the app's event stream
        os.write(1, b"C code writing to fd 1\n")
        start = 0
        if self.project.config.resume_from_checkpoint == "latest":
            start = int((self.project.output_dir / "fake-step.txt").read_text())
            self.sink(Log(f"resumed at step {start}"))
        for step in range(start + 1, self.total + 1):
            if Command.STOP in self.mailbox.drain():
                self.stop_seen_at = step - 1
                self.sink(Log(f"stop seen at step {step - 1}"))
                self.project.output_dir.mkdir(parents=True, exist_ok=True)
                (self.project.output_dir / "fake-step.txt").write_text(str(step - 1))
                path = self._save(f"checkpoints/checkpoint-{step - 1:06d}/pytorch_lora_weights.safetensors")
                (path.parent / "state.json").write_text("{}")       # what makes core list it
                self.sink(Checkpoint(step - 1, str(path.parent)))
                self.sink(Finished(step - 1, str(path), stopped_early=True))
                return path
            time.sleep(self.step_seconds)
            if self.fail_at == step:
                self._fail(RuntimeError(f"boom at step {step}"), step)
            if self.die_at == step:
                os.kill(os.getpid(), signal.SIGKILL)
            self.sink(Progress(step, self.total, 1.0 / step, 1e-4, 50.0, (self.total - step) / 50.0,
                               ("more",), (0.5,)))
        path = self._save("pytorch_lora_weights.safetensors")
        self.sink(Finished(self.total, str(path)))
        return path

    def _fail(self, exc: Exception, step: int) -> None:
        """What core's Trainer does with an unexpected error: report it with its traceback, re-raise."""
        try:
            raise exc
        except Exception:
            self.sink(Failed(f"{type(exc).__name__}: {exc}", step, 1, traceback.format_exc()))
            raise


class ReportingFailTrainer(FakeTrainer):
    """Reports Failed itself and re-raises, as core's Trainer does for input errors."""

    def run(self) -> Path:
        from sliderstudio.kernel.errors import DatasetError

        exc = DatasetError("bucket 'more' has no usable images", file="data/more", key="more.instance_data_dir")
        self.sink(Failed(str(exc), 0, exit_code=2))
        raise exc


class FakeRenderer:
    """Renders a flat grey whose brightness encodes the strength, and records every call."""

    calls: list[dict] = []
    loaded: list[str] = []

    def __init__(self, family: str, model_path: str):
        self.family, self.model_path = family, model_path

    def load_lora(self, path) -> None:
        FakeRenderer.loaded.append(str(path))

    def render(self, prompt, seed, strengths, steps=20, guidance=2.0, start_fraction=0.0, size=None,
               on_step=None):
        from PIL import Image

        for done in range(1, steps + 1):          # what the pipeline's callback_on_step_end reports
            if on_step is not None:
                on_step(done, steps)
        time.sleep(0.05)
        FakeRenderer.calls.append(dict(prompt=prompt, seed=seed, strengths=list(strengths), steps=steps,
                                       guidance=guidance, start_fraction=start_fraction))
        return [Image.new("RGB", (16, 16), (int(128 + 60 * s),) * 3) for s in strengths]


class CommandingTrainer(FakeTrainer):
    """The stand-in for the live-run commands: reports a Device, answers PAUSE/RESUME with
    PauseChanged, SAMPLE_NOW with a validation PNG + Image event, SAVE_NOW with a checkpoint."""

    DEVICE = dict(name="Fake GPU (cuda:0)", kind="cuda", used=6 * 2**30, free=10 * 2**30, total=16 * 2**30,
                  process=3 * 2**30)

    def run(self) -> Path:
        from sliderstudio.kernel.events import Device

        self.step = 0
        self.sink(Device(**self.DEVICE, step=0))
        while self.step < self.total:
            self._serve(self.mailbox.take())
            if self.stop_seen_at is not None:
                return self._save_checkpoint(self.step, finish=True)
            time.sleep(self.step_seconds)
            self.step += 1
            self.sink(Progress(self.step, self.total, 1.0 / self.step, 1e-4, 50.0, 0.0, ("more",), (0.5,)))
        path = self._save("pytorch_lora_weights.safetensors")
        self.sink(Finished(self.total, str(path)))
        return path

    def _serve(self, command) -> None:
        from sliderstudio.kernel.events import PauseChanged

        while command is not None and self.stop_seen_at is None:
            if command is Command.STOP:
                self.stop_seen_at = self.step
            elif command is Command.SAVE_NOW:
                self._save_checkpoint(self.step)
            elif command is Command.SAMPLE_NOW:
                self._sample()
            elif command is Command.PAUSE:
                self.sink(PauseChanged(True, self.step))
                while (held := self.mailbox.wait(0.05)) is not Command.RESUME:
                    if held is not None and held is not Command.PAUSE:
                        self._serve(held)
                    if self.stop_seen_at is not None:
                        return
                self.sink(PauseChanged(False, self.step))
            command = self.mailbox.take()

    def _save_checkpoint(self, step: int, finish: bool = False) -> Path:
        path = self._save(f"checkpoints/checkpoint-{step:06d}/pytorch_lora_weights.safetensors")
        (path.parent / "state.json").write_text("{}")
        self.sink(Checkpoint(step, str(path.parent)))
        if finish:
            self.sink(Finished(step, str(path), stopped_early=True))
        return path

    def _sample(self) -> None:
        from PIL import Image as PILImage

        from sliderstudio.kernel.events import Image

        for name, strength, grey in (("big", 1.0, 220), ("big", -1.0, 40)):
            image = PILImage.new("RGB", (16, 16), (grey,) * 3)
            path = self.project.output_dir / "validation" / f"step-{self.step:06d}" / f"{name}_s{strength:+.2f}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            image.save(path)
            self.sink(Image(image, self.step, f"a {name} shape", strength, str(path)))
