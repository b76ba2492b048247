"""Training area: schedule fields, Train / Stop / Resume, progress, live loss plot, log, errors."""
from __future__ import annotations

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QFontDatabase
from PySide6.QtWidgets import (
    QGridLayout, QHBoxLayout, QLabel, QPlainTextEdit, QProgressBar,
    QPushButton, QSizePolicy, QSplitter, QToolButton, QVBoxLayout, QWidget,
)

from sliderstudio.config.config import TrainConfig
from sliderstudio.kernel.events import Progress
from sliderstudio.gui.config_form import add_rows
from sliderstudio.gui.loss_plot import LossPlot
from sliderstudio.gui.viewmodels.config_fields import config_fields
from sliderstudio.gui.viewmodels.project import ProjectViewModel
from sliderstudio.gui.viewmodels.training import IDLE, RUNNING, TrainingViewModel, format_eta

LOG_LINES = 5000
REFRESH_MS = 100
# Which keys the form shows, in order; label, range, step and help come from each key's Field in
# config/config.py (the tooltip names the config key).
SCHEDULE_KEYS = ("max_train_steps", "checkpointing_steps", "validation_steps", "train_batch_size",
                 "resolution", "seed", "learning_rate")
# Behind "Slider training ▸": the levers measured in docs/TRAINING.md (anchor weight, step mode) and
# SimpleTuner's timestep bias and min-SNR weighting.
ADVANCED_KEYS = ("slider_preserve_weight", "slider_step_mode", "timestep_bias_strategy", "timestep_bias_multiplier",
                 "timestep_bias_portion", "timestep_bias_begin", "timestep_bias_end", "snr_gamma",
                 "use_soft_min_snr", "soft_min_snr_sigma_data")
# Which bias keys mean something under each strategy (the others are kept but greyed out).
BIAS_KEYS_IN_USE = {"none": (), "later": ("timestep_bias_multiplier", "timestep_bias_portion"),
                    "earlier": ("timestep_bias_multiplier", "timestep_bias_portion"),
                    "range": ("timestep_bias_multiplier", "timestep_bias_begin", "timestep_bias_end")}


def _read_by(config, key: str) -> bool:
    """Whether the run reads `key` as the other keys stand (a greyed field keeps its value); with no
    project open (`config` None) only the keys no other key switches on."""
    if key.startswith("timestep_bias_") and key != "timestep_bias_strategy":
        return config is not None and key in BIAS_KEYS_IN_USE.get(config.timestep_bias_strategy, ())
    if key in ("use_soft_min_snr", "soft_min_snr_sigma_data"):  # σ_data first: soft is refused without it
        return config is not None and config.snr_gamma is not None
    return True


class TrainingPane(QWidget):
    def __init__(self, vm: TrainingViewModel, project_vm: ProjectViewModel, parent: QWidget | None = None,
                 memory_line: QWidget | None = None):
        super().__init__(parent)
        self.vm, self.pvm = vm, project_vm
        self.memory_line = memory_line  # gui/memory_line.MemoryLine: the estimate, and the question before Train
        layout = QVBoxLayout(self)
        layout.addLayout(self._build_controls())
        layout.addWidget(self._build_form_notice())
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
        project_vm.projectLoaded.connect(self._project_loaded)
        project_vm.configChanged.connect(self._config_changed)
        self.show_state(vm.state)

    # --- construction ------------------------------------------------------------------
    def _build_controls(self) -> QHBoxLayout:
        row = QHBoxLayout()
        form = QGridLayout()
        self.config_fields = config_fields(self.pvm, SCHEDULE_KEYS, self)
        self.config_fields.refused.connect(self.show_form_notice)
        self.fields: dict[str, QWidget] = add_rows(form, self.config_fields, TrainConfig, SCHEDULE_KEYS, columns=2)
        column = QVBoxLayout()
        column.addLayout(form)
        column.addWidget(self._build_advanced())
        row.addLayout(column, 1)
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

    def _build_advanced(self) -> QWidget:
        """A toggle and, hidden until asked for, the slider-training keys (ADVANCED_KEYS)."""
        box = QWidget()
        col = QVBoxLayout(box)
        col.setContentsMargins(0, 0, 0, 0)
        self.advanced_toggle = QToolButton(text="Slider training ▸", checkable=True, objectName="advancedToggle")
        self.advanced_toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        self.advanced_toggle.setToolTip("Anchor weight, step mode and timestep bias (docs/TRAINING.md)")
        self.advanced = QWidget(objectName="advancedFields")
        grid = QGridLayout(self.advanced)
        grid.setContentsMargins(0, 0, 0, 0)
        self.advanced_fields = config_fields(self.pvm, ADVANCED_KEYS, self)
        self.advanced_fields.refused.connect(self.show_form_notice)
        self.fields.update(add_rows(grid, self.advanced_fields, TrainConfig, ADVANCED_KEYS, columns=2))
        self.advanced.hide()
        self.advanced_toggle.toggled.connect(self._show_advanced)
        col.addWidget(self.advanced_toggle, alignment=Qt.AlignmentFlag.AlignLeft)
        col.addWidget(self.advanced)
        return box

    def _show_advanced(self, shown: bool) -> None:
        self.advanced.setVisible(shown)
        self.advanced_toggle.setText("Slider training ▾" if shown else "Slider training ▸")

    def _enable_fields(self) -> None:
        """Every field while idle, except the keys the other settings leave unread: the timestep-bias keys
        the chosen strategy ignores, and the soft min-SNR keys without snr_gamma."""
        idle = self.vm.state == IDLE
        for key, widget in self.fields.items():
            widget.setEnabled(idle and _read_by(self.pvm.config if self.pvm.is_open else None, key))

    def _train_clicked(self) -> None:
        if self.memory_line is None or self.memory_line.confirm_train():
            self.vm.start()

    def _build_form_notice(self) -> QLabel:
        """The config model's answer to a refused edit (e.g. steps 0 with epochs 0), never dropped."""
        self.form_notice = QLabel(wordWrap=True, objectName="formNotice")
        self.form_notice.setStyleSheet("color: #c8513a;")
        self.form_notice.hide()
        return self.form_notice

    def show_form_notice(self, key: str, message: str) -> None:
        self.form_notice.setText(message if key in message else f"{key}: {message}")   # always name the key
        self.form_notice.show()

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
        """The field values follow through their bindings; the idle progress bar shows the step count."""
        if not self.vm.running and self.vm.last_progress is None:
            self.progress.setMaximum(max(1, self.pvm.config.max_train_steps))
            self.progress.setValue(0)

    def _project_loaded(self) -> None:
        self.form_notice.hide()
        self.load_fields()
        self._enable_fields()

    def _config_changed(self, key: str) -> None:
        if key in self.fields:
            self.form_notice.hide()     # an accepted edit clears the last refusal
        self.load_fields()
        self._enable_fields()

    def show_state(self, state: str) -> None:
        idle = state == IDLE
        self.train_button.setEnabled(idle)
        self.resume_button.setEnabled(idle and self.vm.resume_available)
        self.stop_button.setEnabled(state == RUNNING)
        self.show_resume_offer()
        self._enable_fields()
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
