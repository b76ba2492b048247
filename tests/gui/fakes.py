"""A stand-in trainer with the engine's contract (events, mailbox, STOP within one step).

Used where the test is about the GUI's handling of a run (stop, errors, stalls), so those
tests do not spend the CPU on a real model.
"""
from __future__ import annotations

import time
from pathlib import Path

from sliderstudio.core.events import Checkpoint, Command, Failed, Finished, Log, Progress


class FakeTrainer:
    step_seconds = 0.02
    total = 30
    fail_at: int | None = None
    instances: list["FakeTrainer"] = []

    def __init__(self, project, sink, mailbox):
        self.project, self.sink, self.mailbox = project, sink, mailbox
        self.stop_seen_at: int | None = None
        FakeTrainer.instances.append(self)

    def _save(self, name: str) -> Path:
        path = self.project.output_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"adapter")
        return path

    def run(self) -> Path:
        self.sink(Log("fake trainer started"))
        start = 0
        if self.project.config.resume_from_checkpoint == "latest":
            start = int((self.project.output_dir / "fake-step.txt").read_text())
            self.sink(Log(f"resumed at step {start}"))
        for step in range(start + 1, self.total + 1):
            if Command.STOP in self.mailbox.drain():
                self.stop_seen_at = step - 1
                self.project.output_dir.mkdir(parents=True, exist_ok=True)
                (self.project.output_dir / "fake-step.txt").write_text(str(step - 1))
                path = self._save(f"checkpoints/checkpoint-{step - 1:06d}/pytorch_lora_weights.safetensors")
                (path.parent / "state.json").write_text("{}")       # what makes core list it
                self.sink(Checkpoint(step - 1, str(path.parent)))
                self.sink(Finished(step - 1, str(path), stopped_early=True))
                return path
            time.sleep(self.step_seconds)
            if self.fail_at == step:
                raise RuntimeError(f"boom at step {step}")
            self.sink(Progress(step, self.total, 1.0 / step, 1e-4, 50.0, (self.total - step) / 50.0,
                               ("more",), (0.5,)))
        path = self._save("pytorch_lora_weights.safetensors")
        self.sink(Finished(self.total, str(path)))
        return path


class ReportingFailTrainer(FakeTrainer):
    """Reports Failed itself and re-raises, as core's Trainer does for input errors."""

    def run(self) -> Path:
        from sliderstudio.core.errors import DatasetError

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

    def render(self, prompt, seed, strengths, steps=20, guidance=2.0, start_fraction=0.0, size=None):
        from PIL import Image

        time.sleep(0.05)
        FakeRenderer.calls.append(dict(prompt=prompt, seed=seed, strengths=list(strengths), steps=steps,
                                       guidance=guidance, start_fraction=start_fraction))
        return [Image.new("RGB", (16, 16), (int(128 + 60 * s),) * 3) for s in strengths]
