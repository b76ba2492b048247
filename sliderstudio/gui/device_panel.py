"""Device panel: which device trains, its memory, the run's validation images by step, and the
live-run buttons (Pause/Resume, Sample now, Save now). Repaints from `DeviceViewModel` only."""
from __future__ import annotations

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import (
    QComboBox, QFrame, QHBoxLayout, QLabel, QProgressBar, QPushButton, QScrollArea, QSizePolicy, QSpinBox,
    QVBoxLayout, QWidget,
)

from sliderstudio.gui.viewmodels.device import THUMB, DeviceViewModel, GalleryImage

EMPTY_GALLERY = ("No validation images yet. A run renders them every validation_steps steps, "
                 "at its end, and when you press Sample now.")
GALLERY_REFRESH_MS = 100     # bursts of images (one per prompt) repaint once
PAUSE_TEXT, RESUME_TEXT = "‖ Pause", "▶ Resume"    # glyphs the default fonts have (⏸ is often missing)


class Thumb(QWidget):
    """One validation image with its strength and prompt name under it."""

    def __init__(self, image: GalleryImage, parent: QWidget | None = None):
        super().__init__(parent)
        col = QVBoxLayout(self)
        col.setContentsMargins(2, 2, 2, 2)
        col.setSpacing(1)
        picture = QLabel(objectName="thumb")
        picture.setPixmap(QPixmap.fromImage(image.thumbnail))
        picture.setFixedSize(THUMB, THUMB)
        picture.setAlignment(Qt.AlignmentFlag.AlignCenter)
        caption = QLabel(objectName="caption")
        caption.setFixedWidth(THUMB)
        name = caption.fontMetrics().elidedText(image.name, Qt.TextElideMode.ElideMiddle, THUMB - 4)
        caption.setText(f"{image.strength:+.2f}\n{name}")
        caption.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setToolTip(f"step {image.step} · strength {image.strength:+.2f}\n{image.prompt or image.name}\n{image.path}")
        col.addWidget(picture)
        col.addWidget(caption)
        self.caption = caption


class StepRow(QWidget):
    """A step's header and its images side by side."""

    def __init__(self, step: int, images: list[GalleryImage], parent: QWidget | None = None):
        super().__init__(parent)
        self.step = step
        self.key = row_key(images)
        col = QVBoxLayout(self)
        col.setContentsMargins(0, 2, 0, 2)
        self.header = QLabel(f"step {step}", objectName="stepHeader")
        self.header.setStyleSheet("font-weight: bold")
        col.addWidget(self.header)
        strip = QHBoxLayout()
        self.thumbs = [Thumb(image) for image in images]
        for thumb in self.thumbs:
            strip.addWidget(thumb)
        strip.addStretch(1)
        col.addLayout(strip)


def row_key(images: list[GalleryImage]) -> tuple:
    """What a row shows; a row whose key is unchanged is not rebuilt."""
    return tuple((g.path, g.order, g.thumbnail.cacheKey()) for g in images)


class DevicePanel(QWidget):
    def __init__(self, vm: DeviceViewModel, parent: QWidget | None = None):
        super().__init__(parent)
        self.vm = vm
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addLayout(self._build_device())
        layout.addLayout(self._build_buttons())
        layout.addWidget(self._build_gallery(), 1)
        self.rows: dict[int, StepRow] = {}
        self._gallery_timer = QTimer(self, singleShot=True, interval=GALLERY_REFRESH_MS)
        self._gallery_timer.timeout.connect(self.show_gallery)
        vm.deviceChanged.connect(self.show_device)
        vm.controlsChanged.connect(self.show_controls)
        vm.galleryChanged.connect(self._gallery_timer.start)
        vm.noteChanged.connect(self.note.setText)
        vm.training.pausedChanged.connect(lambda _p, _s: self.show_controls())
        vm.processesChanged.connect(self.show_processes)
        vm.devicesChanged.connect(self.show_devices)
        self.show_device()
        self.show_devices()
        self.show_processes()
        self.show_controls()
        self.show_gallery()

    # --- construction ------------------------------------------------------------------
    def _build_device(self) -> QVBoxLayout:
        col = QVBoxLayout()
        self.device_name = QLabel("—", objectName="deviceName")
        self.device_name.setStyleSheet("font-weight: bold")
        self.device_name.setToolTip("The device the training process runs on (reported by the trainer)")
        self.memory_bar = QProgressBar(objectName="memoryBar", textVisible=True)
        self.memory_bar.setToolTip("Memory used on the device (GPU: the whole card; CPU: the system's RAM)")
        self.memory_text = QLabel("—", objectName="memoryText", wordWrap=True)
        # Ignored width: a text that changes every few seconds must not relayout the window.
        self.memory_text.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        col.addWidget(self.device_name)
        col.addLayout(self._build_devices())
        col.addLayout(self._build_processes())
        col.addWidget(self.memory_bar)
        col.addWidget(self.memory_text)
        return col

    def _build_devices(self) -> QHBoxLayout:
        row = QHBoxLayout()
        label = QLabel("Train on")
        self.devices = QComboBox(objectName="devices")
        self.devices.setToolTip(
            "devices: what the next run trains on. A GPU: one process on it; several GPUs (or all): one process "
            "on each, started through accelerate (num_processes follows); CPU: num_processes processes on the "
            "CPU cores; Automatic: a GPU when there is one")
        self.devices.activated.connect(self._devices_edited)
        label.setBuddy(self.devices)
        row.addWidget(label)
        row.addWidget(self.devices, 1)
        return row

    def _devices_edited(self, index: int) -> None:
        problem = self.vm.set_devices(self.vm.device_options()[index][0])
        if problem:
            self.note.setText("⚠ " + problem)
            self.show_devices()

    def _build_processes(self) -> QHBoxLayout:
        row = QHBoxLayout()
        label = QLabel("Processes")
        self.processes = QSpinBox(objectName="numProcesses", minimum=1, maximum=self.vm.max_processes())
        self.processes.setToolTip(
            "num_processes: train on this many devices at once (GPUs, or CPU cores), started through accelerate. "
            "train_batch_size is the batch of all processes together, split among them, so the result does not "
            "depend on the count; a count above the devices found stops the run with a message")
        self.processes.valueChanged.connect(self._processes_edited)
        label.setBuddy(self.processes)
        row.addWidget(label)
        row.addWidget(self.processes)
        row.addStretch(1)
        return row

    def _processes_edited(self, n: int) -> None:
        problem = self.vm.set_processes(n)
        if problem:
            self.note.setText("⚠ " + problem)
            self.show_processes()

    def _build_buttons(self) -> QVBoxLayout:
        col = QVBoxLayout()
        row = QHBoxLayout()
        self.pause_button = QPushButton(PAUSE_TEXT, objectName="pauseRun")
        self.pause_button.clicked.connect(self.vm.toggle_pause)
        self.sample_button = QPushButton("Sample now", objectName="sampleNow")
        self.sample_button.setToolTip("Render the validation prompts with the adapter as it is now "
                                      "(into output_dir/validation/step-N/)")
        self.sample_button.clicked.connect(self.vm.sample_now)
        self.save_button = QPushButton("Save now", objectName="saveNow")
        self.save_button.setToolTip("Write a checkpoint of the current step (output_dir/checkpoints/)")
        self.save_button.clicked.connect(self.vm.save_now)
        for button in (self.pause_button, self.sample_button, self.save_button):
            row.addWidget(button)
        row.addStretch(1)
        self.note = QLabel("", objectName="deviceNote", wordWrap=True)
        self.note.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        col.addLayout(row)
        col.addWidget(self.note)
        return col

    def _build_gallery(self) -> QScrollArea:
        self.gallery = QWidget(objectName="gallery")
        self.gallery_layout = QVBoxLayout(self.gallery)
        self.gallery_layout.setContentsMargins(0, 0, 0, 0)
        self.empty = QLabel(EMPTY_GALLERY, objectName="emptyGallery", wordWrap=True)
        self.gallery_layout.addWidget(self.empty)
        self.gallery_layout.addStretch(1)
        self.scroll = QScrollArea(widgetResizable=True, frameShape=QFrame.Shape.NoFrame)
        self.scroll.setWidget(self.gallery)
        return self.scroll

    # --- view-model → widgets ----------------------------------------------------------
    def show_device(self) -> None:
        self.device_name.setText(self.vm.label())
        self.memory_text.setText(self.vm.memory_text())
        mib = self.vm.memory_mib()
        if mib is None:
            self.memory_bar.setRange(0, 1)
            self.memory_bar.setValue(0)
            self.memory_bar.setFormat("—")
        else:
            used, total = mib
            self.memory_bar.setRange(0, max(1, total))
            self.memory_bar.setValue(min(used, total))
            self.memory_bar.setFormat(f"{used / 1024:.1f} of {total / 1024:.1f} GiB used (%p%)")

    def show_processes(self) -> None:
        self.processes.blockSignals(True)       # showing the project's value is not an edit
        self.processes.setValue(self.vm.processes())
        self.processes.blockSignals(False)
        self.processes.setEnabled(self.vm.processes_editable())

    def show_devices(self) -> None:
        """The machine's devices with the project's choice selected; a choice that cannot run here says why."""
        self.devices.blockSignals(True)
        self.devices.clear()
        options = self.vm.device_options()
        for value, text in options:
            self.devices.addItem(text, value)
        values = [value for value, _ in options]
        current = self.vm.devices()
        self.devices.setCurrentIndex(values.index(current) if current in values else 0)
        self.devices.blockSignals(False)
        self.devices.setEnabled(self.vm.devices_editable())
        problem = self.vm.launch_problem()
        if problem:
            self.note.setText("⚠ " + problem)

    def show_controls(self) -> None:
        live = self.vm.live
        self.show_processes()
        self.devices.setEnabled(self.vm.devices_editable())
        self.pause_button.setText(RESUME_TEXT if self.vm.paused else PAUSE_TEXT)
        self.pause_button.setToolTip(
            "Continue the paused run from the step it holds at" if self.vm.paused else
            "Hold the run after the current step (Sample now and Save now still work while paused)")
        self.pause_button.setEnabled(live and self.vm.pending is None)
        self.sample_button.setEnabled(live)
        self.save_button.setEnabled(live)

    def show_gallery(self) -> None:
        """Rebuild only the rows whose images changed; newest step last, scrolled into view."""
        steps = self.vm.steps()
        wanted = {step for step, _ in steps}
        for step in [s for s in self.rows if s not in wanted]:
            self._drop_row(self.rows.pop(step))
        grew = False
        for index, (step, images) in enumerate(steps):
            row = self.rows.get(step)
            if row is not None and row.key == row_key(images):
                continue
            if row is not None:
                self._drop_row(row)
            self.rows[step] = row = StepRow(step, images)
            self.gallery_layout.insertWidget(index + 1, row)       # after the empty-gallery label
            grew = True
        self.empty.setVisible(not steps)
        if grew:      # after the layout has settled, so the new maximum is known
            QTimer.singleShot(0, self._scroll_to_newest)

    def _drop_row(self, row: StepRow) -> None:
        self.gallery_layout.removeWidget(row)
        row.setParent(None)
        row.deleteLater()

    def _scroll_to_newest(self) -> None:
        bar = self.scroll.verticalScrollBar()
        bar.setValue(bar.maximum())
