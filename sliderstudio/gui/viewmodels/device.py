"""The device panel's state: which device trains, its memory, the run's validation gallery, and the
live-run commands (pause/resume, sample now, save now).

Everything arrives from `TrainingViewModel` (the trainer's Device, PauseChanged, Image and
Checkpoint events) and, for the gallery, from the project's `output_dir/validation/step-*/`
folders, read and decoded to thumbnails on the task pool when a project opens: a run's folder can
hold hundreds of full-size PNGs.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QImage

from sliderstudio.config import device_choice
from sliderstudio.config.device_choice import Gpu, LaunchPlan
from sliderstudio.kernel.errors import InputError
from sliderstudio.kernel.events import Device, Image
from sliderstudio.gui.viewmodels.project import ProjectViewModel
from sliderstudio.gui.viewmodels.training import RUNNING, TrainingViewModel
from sliderstudio.gui.workers.tasks import TaskRunner

THUMB = 112                 # thumbnail edge in pixels
MAX_IMAGES = 400            # the gallery keeps the newest steps' images up to this many
STEP_FOLDER = re.compile(r"^step-(\d+)$")
IMAGE_FILE = re.compile(r"^(?P<name>.+)_s(?P<strength>[+-]?\d+(?:\.\d+)?)\.png$")
GIB = 2**30


@dataclass(frozen=True)
class GalleryImage:
    step: int
    name: str           # the prompt's name in the library (plus a size tag with several resolutions)
    strength: float
    path: str
    thumbnail: QImage
    order: int          # arrival order within a step: the trainer's prompt order
    prompt: str = ""


@dataclass(frozen=True)
class ValidationFile:
    step: int
    name: str
    strength: float
    path: Path


def parse_validation_path(path: Path) -> ValidationFile | None:
    """`…/validation/step-000120/<name>_s+1.00.png` → its step, prompt name and strength; None otherwise."""
    folder, file = STEP_FOLDER.match(path.parent.name), IMAGE_FILE.match(path.name)
    if folder is None or file is None:
        return None
    return ValidationFile(int(folder.group(1)), file.group("name"), float(file.group("strength")), path)


def list_validation_files(output_dir: Path, limit: int = MAX_IMAGES) -> list[ValidationFile]:
    """The validation images a run left in `output_dir`, oldest step first, the newest `limit` kept."""
    root = output_dir / "validation"
    if not root.is_dir():
        return []
    found = [f for f in (parse_validation_path(p) for p in root.glob("step-*/*.png")) if f is not None]
    found.sort(key=lambda f: (f.step, f.path.name))
    return found[-limit:] if limit else found


def thumbnail(image: QImage) -> QImage:
    """Scaled to fit THUMB px (a 32 px toy image is enlarged, so that it can be seen at all)."""
    return image.scaled(THUMB, THUMB, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation)


def load_thumbnails(files: list[ValidationFile]) -> list[tuple[ValidationFile, QImage]]:
    """Decode on a worker thread (QImage, unlike QPixmap, may be used off the UI thread); unreadable
    files are skipped, a half-written PNG from a live run included."""
    out = []
    for f in files:
        image = QImage(str(f.path))
        if not image.isNull():
            out.append((f, thumbnail(image)))
    return out


def format_bytes(n: int | None) -> str:
    if n is None:
        return "—"
    return f"{n / GIB:.1f} GiB" if n >= GIB else f"{n / 2**20:.0f} MiB"


class DeviceViewModel(QObject):
    deviceChanged = Signal()         # label / memory text / bar values changed
    galleryChanged = Signal()        # images added, replaced or cleared
    controlsChanged = Signal()       # live / paused / pending changed
    noteChanged = Signal(str)        # the panel's one-line status (what the last command did)
    processesChanged = Signal()      # the project's num_processes changed (or another project opened)
    devicesChanged = Signal()        # the devices found, or the project's devices choice, changed

    def __init__(self, training: TrainingViewModel, project_vm: ProjectViewModel, tasks: TaskRunner,
                 parent: QObject | None = None):
        super().__init__(parent)
        self.training, self._pvm, self._tasks = training, project_vm, tasks
        self.device: Device | None = None
        self.images: dict[str, GalleryImage] = {}   # by path: a re-render of a step replaces its file
        self.pending: str | None = None             # "pause" | "resume" until the trainer confirms
        self.note = ""
        self._order = 0
        self._generation = 0                        # bumps on project load / fresh run: stale jobs drop
        training.deviceReported.connect(self._on_device)
        training.sampleRendered.connect(self._on_image)
        training.pausedChanged.connect(self._on_paused)
        training.stateChanged.connect(self._on_state)
        training.runStarted.connect(self._on_run_started)
        training.checkpointSaved.connect(self._on_checkpoint)
        training.logAppended.connect(self._on_log)
        project_vm.projectLoaded.connect(self.reload_gallery)
        project_vm.projectLoaded.connect(self.processesChanged)
        project_vm.configChanged.connect(lambda key: key == "num_processes" and self.processesChanged.emit())
        project_vm.projectLoaded.connect(self.devicesChanged)
        project_vm.configChanged.connect(self._on_config_key)
        self.gpus: list[Gpu] | None = None          # None until detected (torch loads off the UI thread)
        tasks.submit(lambda: device_choice.detect_gpus(), self._on_gpus, lambda exc: self._on_gpus([]))

    # --- what the panel shows --------------------------------------------------------------
    @property
    def live(self) -> bool:
        return self.training.state == RUNNING

    @property
    def paused(self) -> bool:
        return self.training.paused

    def label(self) -> str:
        if self.device is None:
            return "—"
        return self.device.name + ("" if self.training.running else " · last run")

    def memory_text(self) -> str:
        d = self.device
        if d is None:
            return "—"
        share = "resident" if d.kind == "cpu" else "held by torch"
        whole = "system RAM" if d.kind in ("cpu", "mps") else "device"
        return (f"{whole}: {format_bytes(d.used)} used, {format_bytes(d.free)} free of {format_bytes(d.total)}"
                f" · this run: {format_bytes(d.process)} {share}")

    def memory_mib(self) -> tuple[int, int] | None:
        """(used, total) in MiB for a bar (Qt's bars take 32-bit ints); None when unknown."""
        d = self.device
        if d is None or d.used is None or not d.total:
            return None
        return d.used // 2**20, d.total // 2**20

    def steps(self) -> list[tuple[int, list[GalleryImage]]]:
        """The gallery grouped by step, oldest first; within a step in the trainer's order."""
        by_step: dict[int, list[GalleryImage]] = {}
        for image in sorted(self.images.values(), key=lambda g: (g.step, g.order)):
            by_step.setdefault(image.step, []).append(image)
        return list(by_step.items())

    # --- processes (num_processes) ----------------------------------------------------------
    def processes(self) -> int:
        return self._pvm.config.num_processes if self._pvm.is_open else 1

    @staticmethod
    def max_processes() -> int:
        """The choice's upper bound without touching torch on the UI thread: the CPU cores. The run checks
        the real count (GPUs on a GPU machine) before it starts and names it if there are fewer."""
        return max(1, os.cpu_count() or 1)

    def processes_editable(self) -> bool:
        """The count is the user's on the CPU or automatic; a GPU choice sets it (one process per GPU)."""
        return self._pvm.is_open and not self.training.running and self.devices() in (None, device_choice.CPU)

    # --- devices (the project's `devices`: cpu, one GPU, several, all) -----------------------
    def devices(self) -> str | None:
        return self._pvm.config.devices if self._pvm.is_open else None

    def device_options(self) -> list[tuple[str | None, str]]:
        """(devices value, label) of what this machine has; a saved choice it lacks is listed as missing,
        so opening a project made elsewhere shows it instead of silently picking another device."""
        found = device_choice.options(self.gpus or [])
        current = self.devices()
        if current is not None and current not in [value for value, _ in found]:
            found.append((current, f"{current} (not on this machine)"))
        return found

    def devices_editable(self) -> bool:
        return self._pvm.is_open and not self.training.running and self.gpus is not None

    def set_devices(self, value: str | None) -> str | None:
        """Train the next run on these devices (a GPU choice also sets num_processes: one per GPU);
        the validation message or None."""
        if not self._pvm.is_open or self.training.running:
            return "no project is open" if not self._pvm.is_open else "the devices are fixed while a run is live"
        try:
            count = device_choice.process_count(value, self.gpus or [])
        except InputError:
            count = None            # not a devices value: the config's validation names it below
        return self._pvm.update_config(devices=value, **({"num_processes": count} if count else {}))

    def launch_plan(self) -> LaunchPlan:
        """How the training process will start the run with the project as it is (raises InputError
        naming the key when the choice cannot run here)."""
        cfg = self._pvm.config
        return device_choice.plan_launch(cfg.devices, cfg.num_processes, None, self.gpus or [],
                                         str(self._pvm.project.config_path))

    def launch_problem(self) -> str | None:
        """Why the chosen devices cannot run on this machine, or None."""
        if not self._pvm.is_open or self.gpus is None:
            return None
        try:
            self.launch_plan()
        except InputError as exc:
            return str(exc.message if not exc.key else f"{exc.key}: {exc.message}")
        return None

    def _on_gpus(self, gpus: list[Gpu]) -> None:
        self.gpus = list(gpus)
        self.devicesChanged.emit()
        self.processesChanged.emit()

    def _on_config_key(self, key: str) -> None:
        if key == "devices":
            self.devicesChanged.emit()
            self.processesChanged.emit()

    def set_processes(self, n: int) -> str | None:
        """Train the next run on n processes (the project's num_processes); the validation message or None."""
        if not self._pvm.is_open or self.training.running:
            return "no project is open" if not self._pvm.is_open else "the count is fixed while a run is live"
        return self._pvm.update_config(num_processes=n)

    # --- commands ------------------------------------------------------------------------
    def toggle_pause(self) -> bool:
        wanted = "resume" if self.paused else "pause"
        sent = self.training.continue_run() if self.paused else self.training.pause()
        if sent:
            self._set_pending(wanted)
            self._set_note("resuming…" if wanted == "resume" else "pausing after the current step…")
        return sent

    def sample_now(self) -> bool:
        sent = self.training.sample_now()
        if sent:
            self._set_note("sample requested: rendering the validation prompts after the current step…")
        return sent

    def save_now(self) -> bool:
        sent = self.training.save_now()
        if sent:
            self._set_note("save requested: writing a checkpoint after the current step…")
        return sent

    # --- gallery from disk -----------------------------------------------------------------
    def reload_gallery(self) -> None:
        """Fill the gallery from the open project's validation folders (decoded off the UI thread)."""
        self._generation += 1
        self.images.clear()
        self.galleryChanged.emit()
        if not self._pvm.is_open:
            return
        output, generation = self._pvm.project.output_dir, self._generation
        self._tasks.submit(lambda: load_thumbnails(list_validation_files(output)),
                           lambda found: self._disk_loaded(found, generation))

    def _disk_loaded(self, found: list[tuple[ValidationFile, QImage]], generation: int) -> None:
        if generation != self._generation:
            return
        for f, thumb in found:
            key = str(f.path)
            if key not in self.images:      # an image the live run sent meanwhile is newer
                self._add(GalleryImage(f.step, f.name, f.strength, key, thumb, self._next_order()))
        self._trim()
        self.galleryChanged.emit()

    # --- events from the run -------------------------------------------------------------
    def _on_image(self, event: Image, qimage: Any) -> None:
        parsed = parse_validation_path(Path(event.path)) if event.path else None
        name = parsed.name if parsed else event.prompt
        key = event.path or f"{event.step}:{event.prompt}:{event.strength}"
        order, generation = self._next_order(), self._generation
        self._tasks.submit(lambda: thumbnail(qimage),
                           lambda thumb: self._image_ready(GalleryImage(event.step, name, event.strength, key,
                                                                        thumb, order, event.prompt), generation))

    def _image_ready(self, image: GalleryImage, generation: int) -> None:
        if generation != self._generation:
            return
        self._add(image)
        self._trim()
        self.galleryChanged.emit()
        if self.note.startswith("sample requested"):
            self._set_note(f"sampled at step {image.step}")

    def _on_device(self, event: Device) -> None:
        self.device = event
        self.deviceChanged.emit()

    def _on_paused(self, paused: bool, step: int) -> None:
        self._set_pending(None)
        self._set_note(f"paused at step {step}" if paused else f"running again from step {step}")

    def _on_state(self, _state: str) -> None:
        if not self.training.running:
            self._set_pending(None)
            self._set_note("")               # what a command did is about the run, which has ended
        self.deviceChanged.emit()            # the label says "last run" once it ended
        self.controlsChanged.emit()

    def _on_run_started(self, resumed: bool) -> None:
        """A fresh run shows its own images only (it overwrites the old ones step by step); a resume
        continues the gallery."""
        self._set_note("")
        if not resumed:
            self._generation += 1
            self.images.clear()
            self.galleryChanged.emit()

    def _on_checkpoint(self, path: str) -> None:
        if self.note.startswith("save requested"):
            self._set_note(f"checkpoint saved: {Path(path).name}")

    def _on_log(self, level: str, message: str) -> None:
        """The trainer's refusals ("sample now: nothing to render…") answer a request too."""
        if level == "warning" and message.startswith(("sample now:", "resume ignored")):
            self._set_note("⚠ " + message)

    # --- helpers -------------------------------------------------------------------------
    def _add(self, image: GalleryImage) -> None:
        old = self.images.get(image.path)
        if old is not None:     # a re-render (Sample now at a validation step) keeps its place
            image = GalleryImage(image.step, image.name, image.strength, image.path, image.thumbnail,
                                 old.order, image.prompt or old.prompt)
        self.images[image.path] = image

    def _trim(self) -> None:
        if len(self.images) > MAX_IMAGES:
            keep = sorted(self.images.values(), key=lambda g: (g.step, g.order))[-MAX_IMAGES:]
            self.images = {g.path: g for g in keep}

    def _next_order(self) -> int:
        self._order += 1
        return self._order

    def _set_pending(self, pending: str | None) -> None:
        if pending != self.pending:
            self.pending = pending
            self.controlsChanged.emit()

    def _set_note(self, note: str) -> None:
        if note != self.note:
            self.note = note
            self.noteChanged.emit(note)
