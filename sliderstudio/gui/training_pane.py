"""Training area: schedule fields, Train / Stop / Resume, progress, live loss plot, log, errors."""
from __future__ import annotations

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QFontDatabase
from PySide6.QtWidgets import (
    QDoubleSpinBox, QGridLayout, QHBoxLayout, QLabel, QPlainTextEdit, QProgressBar,
    QPushButton, QSizePolicy, QSpinBox, QSplitter, QToolButton, QVBoxLayout, QWidget,
)
from superqt.utils import signals_blocked

from sliderstudio.kernel.events import Progress
from sliderstudio.gui.loss_plot import LossPlot
from sliderstudio.gui.tooltips import bind_tooltip
from sliderstudio.gui.viewmodels.project import ProjectViewModel
from sliderstudio.gui.viewmodels.training import IDLE, RUNNING, TrainingViewModel, format_eta

LOG_LINES = 5000
REFRESH_MS = 100
INT_FIELDS = (("max_train_steps", 0, 10_000_000), ("checkpointing_steps", 0, 1_000_000),
              ("validation_steps", 0, 1_000_000), ("train_batch_size", 1, 4096),
              ("resolution", 8, 8192), ("seed", -2**31, 2**31 - 1))
# Short labels; the tooltip of each field names its config key.
LABELS = {"max_train_steps": "steps", "checkpointing_steps": "checkpoint every",
          "validation_steps": "validate every", "train_batch_size": "batch size",
          "resolution": "resolution", "seed": "seed", "learning_rate": "learning rate"}


class TrainingPane(QWidget):
    def __init__(self, vm: TrainingViewModel, project_vm: ProjectViewModel, parent: QWidget | None = None,
                 memory_line: QWidget | None = None):
        super().__init__(parent)
        self.vm, self.pvm = vm, project_vm
        self.memory_line = memory_line  # gui/memory_line.MemoryLine: the estimate, and the question before Train
        layout = QVBoxLayout(self)
        layout.addLayout(self._build_controls())
        if memory_line is not None:  # a full row under the fields and Train: the line can be long
            layout.addWidget(memory_line)
        layout.addWidget(self._build_error())
        layout.addWidget(self._build_resume_offer())
        layout.addLayout(self._build_progress())
        split = QSplitter(Qt.Orientation.Vertical)
        self.plot = LossPlot()
        self.plot.setMinimumHeight(120)
        self.plot.set_series(vm.steps, vm.losses)
        self.log = QPlainTextEdit(readOnly=True, objectName="log")
        self.log.setMaximumBlockCount(LOG_LINES)
        self.log.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        split.addWidget(self.plot)
        split.addWidget(self.log)
        split.setSizes([200, 120])
        layout.addWidget(split, 1)
        vm.stateChanged.connect(self.show_state)
        # Progress can arrive many times a second; the widgets repaint from the latest value at
        # most every REFRESH_MS, so a fast run never floods the UI thread with relayouts.
        self._progress_dirty = False
        vm.progressChanged.connect(self._progress_arrived)
        self._refresh = QTimer(self, interval=REFRESH_MS)
        self._refresh.timeout.connect(self._flush_progress)
        self._refresh.start()
        vm.logAppended.connect(self.append_log)
        vm.runFailed.connect(lambda message, _details: self.show_error(message))
        vm.runFinished.connect(self.show_finished)
        vm.resumeAvailableChanged.connect(lambda _a: self.show_state(vm.state))
        vm.runStatusChanged.connect(self.show_run_status)
        project_vm.projectLoaded.connect(self.load_fields)
        project_vm.configChanged.connect(lambda _k: self.load_fields())
        self.show_state(vm.state)

    # --- construction ------------------------------------------------------------------
    def _build_controls(self) -> QHBoxLayout:
        row = QHBoxLayout()
        form = QGridLayout()
        self.fields: dict[str, QSpinBox | QDoubleSpinBox] = {}
        for i, (key, low, high) in enumerate(INT_FIELDS):
            box = QSpinBox(minimum=low, maximum=high)
            box.valueChanged.connect(lambda v, k=key: self.pvm.update_config(**{k: v}))
            self._add_field(form, i, key, box)
        lr = QDoubleSpinBox(decimals=6, minimum=1e-6, maximum=1.0, singleStep=1e-4)
        lr.valueChanged.connect(lambda v: self.pvm.update_config(learning_rate=v))
        self._add_field(form, len(INT_FIELDS), "learning_rate", lr)
        row.addLayout(form, 1)
        buttons = QVBoxLayout()
        self.train_button = QPushButton("▶ Train", objectName="train")
        self.train_button.setToolTip("Save the project and start training from step 0")
        self.train_button.clicked.connect(self._train_clicked)
        self.stop_button = QPushButton("■ Stop", objectName="stop")
        self.stop_button.setToolTip("Stop after the current step and keep a checkpoint to resume from")
        self.stop_button.clicked.connect(self.vm.stop)
        self.resume_button = QPushButton("↻ Resume", objectName="resume")
        self.resume_button.setToolTip("Continue from the latest checkpoint (resume_from_checkpoint = latest)")
        self.resume_button.clicked.connect(lambda: self.vm.resume())
        for b in (self.train_button, self.stop_button, self.resume_button):
            buttons.addWidget(b)
        buttons.addStretch(1)
        row.addLayout(buttons)
        return row

    def _train_clicked(self) -> None:
        if self.memory_line is None or self.memory_line.confirm_train():
            self.vm.start()

    def _add_field(self, grid: QGridLayout, index: int, key: str, widget: QWidget) -> None:
        bind_tooltip(widget, key)
        self.fields[key] = widget
        label = QLabel(LABELS.get(key, key))
        label.setToolTip(widget.toolTip())
        r, c = divmod(index, 2)
        grid.addWidget(label, r, c * 2)
        grid.addWidget(widget, r, c * 2 + 1)

    def _build_error(self) -> QWidget:
        self.error = QWidget(objectName="errorBanner")
        row = QHBoxLayout(self.error)
        row.setContentsMargins(6, 4, 6, 4)
        self.error_label = QLabel(wordWrap=True, objectName="errorText")
        self.error_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        close = QToolButton(text="✕")
        close.clicked.connect(self.error.hide)
        row.addWidget(self.error_label, 1)
        row.addWidget(close)
        self.error.setStyleSheet("#errorBanner { background: #fde2dd; border: 1px solid #c8513a; border-radius: 3px; }")
        self.error.hide()
        return self.error

    def _build_resume_offer(self) -> QWidget:
        """A banner, not just an enabled button: after the app was closed or killed mid-run, the
        next start must say plainly that the run can go on from its checkpoint."""
        self.resume_offer = QWidget(objectName="resumeBanner")
        row = QHBoxLayout(self.resume_offer)
        row.setContentsMargins(6, 4, 6, 4)
        self.resume_offer_label = QLabel(wordWrap=True, objectName="resumeText")
        self.resume_offer_button = QPushButton("↻ Resume", objectName="resumeOffer")
        self.resume_offer_button.clicked.connect(lambda: self.vm.resume())
        close = QToolButton(text="✕")
        close.setToolTip("Hide this offer (Resume stays available)")
        close.clicked.connect(self._dismiss_resume_offer)
        row.addWidget(self.resume_offer_label, 1)
        row.addWidget(self.resume_offer_button)
        row.addWidget(close)
        self.resume_offer.setStyleSheet(
            "#resumeBanner { background: #e3eefc; border: 1px solid #4a7cc0; border-radius: 3px; }")
        self._dismissed_offer: str | None = None
        self.resume_offer.hide()
        return self.resume_offer

    def _dismiss_resume_offer(self) -> None:
        self._dismissed_offer = self.vm.resume_offer
        self.resume_offer.hide()

    def show_resume_offer(self) -> None:
        offer = self.vm.resume_offer
        if offer is not None and offer != self._dismissed_offer:
            self.resume_offer_label.setText(offer)
            self.resume_offer_button.setText(f"↻ Resume from step {self.vm.run_status.resumable_step}")
        self.resume_offer.setVisible(offer is not None and offer != self._dismissed_offer)

    def _build_progress(self) -> QVBoxLayout:
        col = QVBoxLayout()
        self.progress = QProgressBar(objectName="progress")
        self.progress.setFormat("step %v / %m")
        self.progress.setValue(0)
        self.status = QLabel("Ready", objectName="status")
        # Ignored width: a changing status text must not relayout the whole window every step.
        self.status.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        col.addWidget(self.progress)
        col.addWidget(self.status)
        return col

    # --- view-model → widgets ----------------------------------------------------------
    def load_fields(self) -> None:
        config = self.pvm.config
        if not self.vm.running and self.vm.last_progress is None:
            self.progress.setMaximum(max(1, config.max_train_steps))
            self.progress.setValue(0)
        for key, widget in self.fields.items():
            with signals_blocked(widget):
                widget.setValue(getattr(config, key))

    def show_state(self, state: str) -> None:
        idle = state == IDLE
        self.train_button.setEnabled(idle)
        self.resume_button.setEnabled(idle and self.vm.resume_available)
        self.stop_button.setEnabled(state == RUNNING)
        self.show_resume_offer()
        for widget in self.fields.values():
            widget.setEnabled(idle)
        if state == RUNNING:
            self.error.hide()
            self.plot.set_series(self.vm.steps, self.vm.losses)
            self.status.setText("Preparing: loading the model, scanning buckets, filling caches…")
        elif state != IDLE:
            self.status.setText("Stopping after the current step…")

    def show_run_status(self, label: str) -> None:
        """A run found on disk (this window's earlier run, or another process's)."""
        self.show_resume_offer()
        if not self.vm.running and self.vm.last_progress is None and self.error.isHidden():
            self.status.setText(f"Last run: {label}")

    def _progress_arrived(self, _p: Progress) -> None:
        self._progress_dirty = True
        self.plot.mark_dirty()

    def _flush_progress(self) -> None:
        if self._progress_dirty and self.vm.last_progress is not None:
            self._progress_dirty = False
            self.show_progress(self.vm.last_progress)

    def show_progress(self, p: Progress) -> None:
        self.progress.setMaximum(p.total)
        self.progress.setValue(p.step)
        buckets = ", ".join(f"{b} ({s:+.2f})" for b, s in zip(p.buckets, p.strengths))
        self.status.setText(f"step {p.step}/{p.total} · {p.it_per_s:.2f} it/s · ETA {format_eta(p.eta_s)} · "
                            f"loss {p.loss:.4f} · {buckets}")

    def append_log(self, level: str, message: str) -> None:
        prefix = {"warning": "⚠ ", "error": "✗ "}.get(level, "")
        self.log.appendPlainText(prefix + message)

    def show_error(self, message: str) -> None:
        self.error_label.setText(f"Training failed: {message}")
        self.error.show()
        self.status.setText("Failed — see the message above and the log")

    def show_finished(self, adapter: str, stopped: bool) -> None:
        self._flush_progress()
        step = self.vm.last_progress.step if self.vm.last_progress else 0
        self.status.setText(f"{'Stopped' if stopped else 'Finished'} at step {step} · adapter: {adapter}")
