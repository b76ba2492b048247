"""A/B preview area: prompt, seed, steps, two strength dials side by side, the sweep strip.

While a render runs the status line says what is computed ("rendering base image 1 of 7, step
3/20"), and the base image is painted as soon as it exists, before the rest of the batch.

Below the adapter line, "Composed sliders" lists more adapter files, each with its own dial, that
apply to every image (A, B and the sweep): the A/B dials still compare the project's slider, on
top of the others. A dial spans the adapter's calibrated range when its file has one, else ±1;
"wider" doubles it. The A/B dials follow the same rule for the adapter shown (`engine.dial_range`).
"""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import (
    QCheckBox, QComboBox, QDoubleSpinBox, QFileDialog, QGridLayout, QHBoxLayout, QLabel, QPushButton,
    QSizePolicy, QSpinBox, QVBoxLayout, QWidget,
)
from superqt import QLabeledDoubleSlider
from superqt.utils import signals_blocked

from sliderstudio.gui.tooltips import bind_tooltip
from sliderstudio.gui.viewmodels.preview import PreviewViewModel
from sliderstudio.gui.workers.preview import RenderResult

AB_SIZE = 224
SWEEP_SIZE = 84


def image_label(size: int, name: str) -> QLabel:
    label = QLabel(objectName=name, alignment=Qt.AlignmentFlag.AlignCenter)
    label.setFixedSize(size, size)
    label.setStyleSheet("background: #202124; color: #9aa0a6; border-radius: 3px;")
    label.setText("—")
    return label


def show_image(label: QLabel, image: QImage) -> None:
    """Scale up with nearest-neighbour: toy images are tiny and blur would hide the effect."""
    size = label.size()
    label.setPixmap(QPixmap.fromImage(image).scaled(size, Qt.AspectRatioMode.KeepAspectRatio,
                                                    Qt.TransformationMode.FastTransformation))


def strength_dial(value: float) -> QLabeledDoubleSlider:
    dial = QLabeledDoubleSlider(Qt.Orientation.Horizontal)
    dial.setRange(-1.0, 1.0)  # until an adapter shows its calibrated range (show_main_range)
    dial.setSingleStep(0.05)
    dial.setDecimals(2)
    dial.setValue(value)
    dial.setToolTip("Adapter strength for this image (0 = the base model)")
    return dial


class PreviewPane(QWidget):
    def __init__(self, vm: PreviewViewModel, parent: QWidget | None = None):
        super().__init__(parent)
        self.vm = vm
        layout = QVBoxLayout(self)
        layout.addLayout(self._build_prompt_row())
        layout.addLayout(self._build_adapter_row())
        layout.addLayout(self._build_companions())
        layout.addLayout(self._build_ab())
        layout.addWidget(QLabel("Sweep"))
        layout.addLayout(self._build_sweep())
        self.status = QLabel(objectName="previewStatus", wordWrap=True)
        self.status.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        layout.addWidget(self.status)
        layout.addStretch(1)
        vm.abRendered.connect(self.show_ab)
        vm.sweepRendered.connect(self.show_sweep)
        vm.busyChanged.connect(lambda busy: self.status.setText("preparing the preview…") if busy else None)
        vm.progressed.connect(lambda progress: self.status.setText(progress.text()))
        vm.partialRendered.connect(self.show_partial)
        vm.failed.connect(lambda m: self.status.setText(f"✗ Preview failed: {m}"))
        vm.adapterChanged.connect(self.show_adapter)
        vm.companionsChanged.connect(self.show_companions)
        vm.mainRangeChanged.connect(self.show_main_range)
        vm.project_vm.projectLoaded.connect(self.load)

    # --- construction ------------------------------------------------------------------
    def _build_prompt_row(self) -> QGridLayout:
        grid = QGridLayout()
        self.prompt = QComboBox(editable=True, objectName="prompt")
        self.prompt.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        bind_tooltip(self.prompt, "user_prompt_library", "Pick a library prompt or type your own")
        self.prompt.lineEdit().editingFinished.connect(self._prompt_edited)
        self.prompt.activated.connect(lambda _i: self._prompt_edited())
        self.seed = QSpinBox(minimum=0, maximum=2**31 - 1)
        bind_tooltip(self.seed, "validation_seed", "Preview seed (same noise for every strength)")
        self.steps = QSpinBox(minimum=1, maximum=200)
        bind_tooltip(self.steps, "validation_num_inference_steps")
        self.guidance = QDoubleSpinBox(minimum=0.0, maximum=30.0, singleStep=0.5, decimals=1)
        bind_tooltip(self.guidance, "validation_guidance")
        for box, attr in ((self.seed, "seed"), (self.steps, "steps"), (self.guidance, "guidance")):
            box.valueChanged.connect(lambda v, a=attr: self._set(a, v))
        self.start = QLabeledDoubleSlider(Qt.Orientation.Horizontal, objectName="startFraction")
        self.start.setRange(0.0, 1.0)
        self.start.setSingleStep(0.05)
        self.start.setDecimals(2)
        bind_tooltip(self.start, "slider_start_fraction",
                     "The slider is off for this first fraction of the denoising steps (keeps composition)")
        self.start.valueChanged.connect(lambda _v: self._start_debounced())
        render = QPushButton("Render", objectName="render")
        render.clicked.connect(lambda: self.vm.render_now("all"))
        grid.addWidget(QLabel("Prompt"), 0, 0)
        grid.addWidget(self.prompt, 0, 1, 1, 5)
        grid.addWidget(render, 0, 6)
        for col, (text, widget) in enumerate((("seed", self.seed), ("steps", self.steps),
                                              ("guidance", self.guidance))):
            grid.addWidget(QLabel(text), 1, col * 2)
            grid.addWidget(widget, 1, col * 2 + 1)
        grid.addWidget(QLabel("start fraction"), 2, 0)
        grid.addWidget(self.start, 2, 1, 1, 6)
        return grid

    def _build_adapter_row(self) -> QHBoxLayout:
        row = QHBoxLayout()
        self.adapter_label = QLabel("adapter: (none yet — all strengths show the base model)", objectName="adapter")
        self.adapter_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.follow = QCheckBox("Follow training", checked=True)
        self.follow.setToolTip("Re-render with each new checkpoint while training")
        self.follow.toggled.connect(lambda on: setattr(self.vm, "follow", on))
        latest = QPushButton("Load latest", objectName="loadLatest")
        latest.setToolTip("Use the newest checkpoint or final adapter of this project's output_dir")
        latest.clicked.connect(self.vm.use_latest_adapter)
        row.addWidget(self.adapter_label, 1)
        row.addWidget(self.follow)
        row.addWidget(latest)
        return row

    def _build_companions(self) -> QVBoxLayout:
        box = QVBoxLayout()
        head = QHBoxLayout()
        head.addWidget(QLabel("Composed sliders (on every image)"), 1)
        add = QPushButton("Add slider…", objectName="addSlider")
        add.setToolTip("Compose another adapter file with this preview; each gets its own dial")
        add.clicked.connect(self._pick_companion)
        head.addWidget(add)
        box.addLayout(head)
        self.companion_rows = QVBoxLayout()
        box.addLayout(self.companion_rows)
        self.companion_dials: list[QLabeledDoubleSlider] = []
        return box

    def _pick_companion(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Compose a slider", "", "Adapters (*.safetensors)")
        if path:
            self.vm.add_companion(path)

    def show_companions(self) -> None:
        """One row per composed slider: name, dial (its range), 'wider', remove."""
        while self.companion_rows.count():
            item = self.companion_rows.takeAt(0)
            if item.widget() is not None:
                item.widget().deleteLater()
        self.companion_dials = []
        for index, c in enumerate(self.vm.companions):
            row = QWidget(objectName=f"companion{index}")
            line = QHBoxLayout(row)
            line.setContentsMargins(0, 0, 0, 0)
            name = QLabel("/".join(Path(c.path).parts[-3:]))   # project/output/file: adapters share a file name
            name.setToolTip(c.path + ("\ndial: its calibrated range" if c.calibrated else "\ndial: ±1 (not calibrated)"))
            dial = strength_dial(c.strength)
            dial.setObjectName(f"companionDial{index}")
            dial.setRange(c.lo, c.hi)
            dial.setValue(c.strength)
            dial.valueChanged.connect(lambda v, i=index: self.vm.set_companion_strength(i, v))
            wider = QPushButton("wider", objectName=f"companionWider{index}")
            wider.setToolTip("Double the dial's range (beyond the calibrated range the image may break down)")
            wider.clicked.connect(lambda _=False, i=index: self.vm.extend_companion_range(i))
            remove = QPushButton("✕", objectName=f"companionRemove{index}")
            remove.setToolTip("Remove this slider from the preview")
            remove.clicked.connect(lambda _=False, i=index: self.vm.remove_companion(i))
            line.addWidget(name, 1)
            line.addWidget(dial, 3)
            line.addWidget(wider)
            line.addWidget(remove)
            self.companion_rows.addWidget(row)
            self.companion_dials.append(dial)

    def _build_ab(self) -> QHBoxLayout:
        row = QHBoxLayout()
        self.dials: dict[str, QLabeledDoubleSlider] = {}
        self.ab_images: dict[str, QLabel] = {}
        for side, value in (("A", self.vm.strength_a), ("B", self.vm.strength_b)):
            col = QVBoxLayout()
            image = image_label(AB_SIZE, f"image{side}")
            dial = strength_dial(value)
            dial.setObjectName(f"strength{side}")
            key = "a" if side == "A" else "b"
            dial.valueChanged.connect(lambda v, k=key: self.vm.set_strengths(**{k: v}))
            col.addWidget(QLabel(f"{side}"), alignment=Qt.AlignmentFlag.AlignHCenter)
            col.addWidget(image, alignment=Qt.AlignmentFlag.AlignHCenter)
            col.addWidget(dial)
            row.addLayout(col)
            self.dials[side], self.ab_images[side] = dial, image
        self.main_wider = QPushButton("wider", objectName="mainWider")
        self.main_wider.setToolTip("Double the A/B dials' range (beyond the calibrated range the image may break down)")
        self.main_wider.clicked.connect(lambda _=False: self.vm.extend_main_range())
        row.addWidget(self.main_wider, alignment=Qt.AlignmentFlag.AlignBottom)
        self.show_main_range()
        return row

    def show_main_range(self) -> None:
        """Set the A/B dials to the view-model's range and strengths (no render from this alone)."""
        vm = self.vm
        note = "its calibrated range" if vm.main_calibrated else "±1 (not calibrated)"
        for side, value in (("A", vm.strength_a), ("B", vm.strength_b)):
            dial = self.dials[side]
            with signals_blocked(dial):
                dial.setRange(vm.main_lo, vm.main_hi)
                dial.setValue(value)
            dial.setToolTip(f"Adapter strength for this image (0 = the base model); dial: {note}")

    def _build_sweep(self) -> QHBoxLayout:
        row = QHBoxLayout()
        self.sweep_images: list[QLabel] = []
        for strength in self.vm.sweep:
            col = QVBoxLayout()
            image = image_label(SWEEP_SIZE, f"sweep{strength:+.1f}")
            col.addWidget(image)
            col.addWidget(QLabel(f"{strength:+.1f}"), alignment=Qt.AlignmentFlag.AlignHCenter)
            row.addLayout(col)
            self.sweep_images.append(image)
        row.addStretch(1)
        return row

    # --- user input --------------------------------------------------------------------
    def _set(self, attr: str, value) -> None:
        setattr(self.vm, attr, value)
        self.vm.schedule("all")

    def _prompt_edited(self) -> None:
        index = self.prompt.currentIndex()
        text = self.prompt.currentText()
        data = self.prompt.itemData(index) if index >= 0 and self.prompt.itemText(index) == text else None
        prompt = data or text
        if prompt != self.vm.prompt:
            self.vm.prompt = prompt
            self.vm.render_now("all")

    def _start_debounced(self) -> None:
        self.vm.set_start_fraction(self.start.value())

    # --- view-model → widgets ----------------------------------------------------------
    def load(self) -> None:
        vm = self.vm
        with signals_blocked(self.prompt):
            self.prompt.clear()
            for name, prompt in vm.prompt_choices():
                self.prompt.addItem(prompt, prompt)
                self.prompt.setItemData(self.prompt.count() - 1, f"library entry '{name}'",
                                        Qt.ItemDataRole.ToolTipRole)
            if self.prompt.count():
                self.prompt.setCurrentIndex(0)
            else:
                self.prompt.setEditText(vm.prompt)
        for box, value in ((self.seed, vm.seed), (self.steps, vm.steps), (self.guidance, vm.guidance),
                           (self.start, vm.start_fraction)):
            with signals_blocked(box):
                box.setValue(value)

    def show_ab(self, result: RenderResult) -> None:
        for side, image in zip(("A", "B"), result.images[:2]):
            show_image(self.ab_images[side], image)
        strengths = result.request.strengths
        self.status.setText(f"A = {strengths[0]:+.2f}, B = {strengths[1]:+.2f} · seed {result.request.seed} · "
                            f"{result.request.steps} steps · start fraction {result.request.start_fraction:.2f}")

    def show_sweep(self, result: RenderResult) -> None:
        for label, image in zip(self.sweep_images, result.images[2:]):
            show_image(label, image)

    def show_partial(self, result: RenderResult) -> None:
        """Paint the images a render has finished so far (the base image), leave the others."""
        labels = [self.ab_images["A"], self.ab_images["B"]]
        if result.request.kind == "all":
            labels += self.sweep_images
        for label, image in zip(labels, result.images):
            if image is not None:
                show_image(label, image)

    def show_adapter(self, path: str) -> None:
        if path:
            self.adapter_label.setText(f"adapter: {Path(path).parent.name}/{Path(path).name}")
            self.adapter_label.setToolTip(path)
        else:
            self.adapter_label.setText("adapter: (none yet — all strengths show the base model)")
