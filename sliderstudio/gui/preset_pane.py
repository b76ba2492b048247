"""Architecture area: family/flavour, model, adapter type, rank/alpha, preset and target table."""
from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QButtonGroup, QComboBox, QDoubleSpinBox, QFileDialog, QFormLayout, QHBoxLayout, QHeaderView, QLabel,
    QLineEdit, QPlainTextEdit, QPushButton, QRadioButton, QTableWidget, QTableWidgetItem,
    QVBoxLayout, QWidget,
)
from superqt.utils import signals_blocked

from sliderstudio.config.config import TrainConfig
from sliderstudio.gui.binding import bind
from sliderstudio.gui.config_form import make_widget
from sliderstudio.gui.field_specs import field_spec
from sliderstudio.gui.lycoris_editor import LycorisEditor
from sliderstudio.gui.tooltips import bind_tooltip
from sliderstudio.gui.viewmodels.architecture import PRESET_CHOICES, ArchitectureViewModel, TargetResult
from sliderstudio.gui.viewmodels.config_fields import config_fields

CHOICE_HELP = {
    "slider": "The family's slider preset, verified against the real module tree (visual path only)",
    "reference": "The published default list, verbatim (may match nothing on some models)",
    "default": "The family's ordinary LoRA targets, cross-attention included (not restricted to the visual path; "
               "measured best for sliders trained from text pairs alone)",
    "custom": "Your own list of module-name suffixes",
}
ADAPTERS = (("standard", "LoRA (PEFT)"), ("lycoris", "LyCORIS"))
# Plain config keys, bound to their widgets; family, flavour, adapter and preset carry rules (the
# flavour resets with the family, LyCORIS writes a starter file) and go through the view-model.
BOUND_KEYS = ("pretrained_model_name_or_path", "lora_rank", "lora_alpha")


class PresetPane(QWidget):
    def __init__(self, vm: ArchitectureViewModel, parent: QWidget | None = None):
        super().__init__(parent)
        self.vm = vm
        self.config_fields = config_fields(vm.project_vm, BOUND_KEYS, self)
        layout = QVBoxLayout(self)
        form = QFormLayout()
        form.addRow("Family", self._build_family())
        form.addRow("Flavour", self._build_flavour())
        form.addRow("Model", self._build_model())
        form.addRow("Adapter", self._build_adapter())
        form.addRow("Preset", self._build_choice())
        layout.addLayout(form)
        self.custom = QPlainTextEdit(placeholderText="one target per line, e.g. attn1.to_q")
        self.custom.setMaximumHeight(80)
        bind_tooltip(self.custom, "peft_lora_target_modules", "Press Apply to resolve")
        self.apply_custom = QPushButton("Apply targets")
        self.apply_custom.clicked.connect(lambda: vm.set_custom_targets(self.custom.toPlainText()))
        layout.addWidget(self.custom)
        layout.addWidget(self.apply_custom, alignment=Qt.AlignmentFlag.AlignRight)
        layout.addWidget(self._build_table(), 1)
        self.lycoris = LycorisEditor(vm)
        layout.addWidget(self.lycoris)
        self.notice = QLabel(wordWrap=True, objectName="archNotice")
        self.notice.setStyleSheet("color: #c8513a;")
        self.notice.hide()
        layout.addWidget(self.notice)
        # bound methods, not lambdas: Qt drops a bound slot with its widget, so a view-model that
        # outlives this pane never calls into deleted labels
        vm.familiesLoaded.connect(self._families_loaded)
        vm.fieldsChanged.connect(self.refresh)
        vm.targetsResolving.connect(self._show_resolving)
        vm.targetsResolved.connect(self.show_targets)
        vm.notice.connect(self.show_notice)
        self.config_fields.refused.connect(lambda _key, message: self.show_notice(message))
        vm.project_vm.projectLoaded.connect(self.lycoris.load)

    def _families_loaded(self, _families: object) -> None:
        self.refresh()

    def _show_resolving(self) -> None:
        self.total_label.setText("resolving targets…")

    # --- construction ------------------------------------------------------------------
    def _build_family(self) -> QWidget:
        self.family = QComboBox()
        bind_tooltip(self.family, "model_family")
        self.family.activated.connect(lambda _i: self.vm.update(model_family=self.family.currentData(),
                                                                model_flavour=None))
        return self.family

    def _build_flavour(self) -> QWidget:
        self.flavour = QComboBox(editable=True)
        bind_tooltip(self.flavour, "model_flavour")
        self.flavour.lineEdit().editingFinished.connect(
            lambda: self.vm.update(model_flavour=self.flavour.currentText().strip() or None))
        self.flavour.activated.connect(lambda _i: self.vm.update(model_flavour=self.flavour.currentText() or None))
        return self.flavour

    def _build_model(self) -> QWidget:
        box = QWidget()
        row = QHBoxLayout(box)
        row.setContentsMargins(0, 0, 0, 0)
        self.model = QLineEdit(placeholderText="diffusers folder, .safetensors file, hub id or sliderstudio:toy")
        bind_tooltip(self.model, "pretrained_model_name_or_path")
        default_model = TrainConfig.model_fields["pretrained_model_name_or_path"].default
        bind(self.config_fields, "pretrained_model_name_or_path", self.model,
             to_model=lambda text: text.strip() or default_model)
        folder = QPushButton("Folder…")
        folder.clicked.connect(self._pick_folder)
        file = QPushButton("File…")
        file.clicked.connect(self._pick_file)
        row.addWidget(self.model, 1)
        row.addWidget(folder)
        row.addWidget(file)
        return box

    def _build_adapter(self) -> QWidget:
        box = QWidget()
        row = QHBoxLayout(box)
        row.setContentsMargins(0, 0, 0, 0)
        self.adapter = QComboBox()
        for value, label in ADAPTERS:
            self.adapter.addItem(label, value)
        bind_tooltip(self.adapter, "lora_type")
        self.adapter.activated.connect(lambda _i: self.vm.set_adapter_type(self.adapter.currentData()))
        self.rank = make_widget(field_spec(TrainConfig, "lora_rank"))
        bind_tooltip(self.rank, "lora_rank")
        bind(self.config_fields, "lora_rank", self.rank)
        # 0 is the "unset" state below the Field's gt=0 bound: shown as "= rank", stored as None
        self.alpha = QDoubleSpinBox(minimum=0.0, maximum=4096.0, decimals=1, specialValueText="= rank")
        bind_tooltip(self.alpha, "lora_alpha", "'= rank' leaves alpha unset (alpha = rank)")
        bind(self.config_fields, "lora_alpha", self.alpha, to_widget=lambda v: v or 0.0, to_model=lambda v: v or None)
        row.addWidget(self.adapter)
        row.addWidget(QLabel("rank"))
        row.addWidget(self.rank)
        row.addWidget(QLabel("alpha"))
        row.addWidget(self.alpha)
        return box

    def _build_choice(self) -> QWidget:
        box = QWidget()
        row = QHBoxLayout(box)
        row.setContentsMargins(0, 0, 0, 0)
        self.choice_group = QButtonGroup(self)
        self.choice_buttons: dict[str, QRadioButton] = {}
        keys = {"slider": "slider_target_preset", "reference": "slider_target_preset",
                "default": "slider_lora_target", "custom": "peft_lora_target_modules"}
        for choice in PRESET_CHOICES:
            button = QRadioButton(choice)
            bind_tooltip(button, keys[choice], CHOICE_HELP[choice])
            button.clicked.connect(lambda _=False, c=choice: self.vm.set_choice(c))
            self.choice_group.addButton(button)
            self.choice_buttons[choice] = button
            row.addWidget(button)
        row.addStretch(1)
        return box

    def _build_table(self) -> QWidget:
        box = QWidget()
        col = QVBoxLayout(box)
        col.setContentsMargins(0, 0, 0, 0)
        self.table = QTableWidget(0, 3)
        self.table.setHorizontalHeaderLabels(["Target", "Modules", "Layer types"])
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setMinimumHeight(180)
        self.total_label = QLabel(objectName="targetTotal", wordWrap=True)
        col.addWidget(self.table, 1)
        col.addWidget(self.total_label)
        return box

    # --- user input --------------------------------------------------------------------
    def _pick_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Choose a diffusers model folder")
        if folder:
            self.vm.update(pretrained_model_name_or_path=folder)

    def _pick_file(self) -> None:
        file, _ = QFileDialog.getOpenFileName(self, "Choose a single-file checkpoint", "",
                                              "Safetensors (*.safetensors);;All files (*)")
        if file:
            self.vm.update(pretrained_model_name_or_path=file)

    # --- view-model → widgets ----------------------------------------------------------
    def refresh(self) -> None:
        if not self.vm.project_vm.is_open:
            return
        config = self.vm.config
        with signals_blocked(self.family):
            self.family.clear()
            ids = [f.id for f in self.vm.families]
            for f in self.vm.families:
                self.family.addItem(f"{f.label} ({f.id})", f.id)
            if config.model_family not in ids:
                self.family.addItem(config.model_family, config.model_family)
            self.family.setCurrentIndex(self.family.findData(config.model_family))
        with signals_blocked(self.flavour):
            self.flavour.clear()
            self.flavour.addItems([""] + list(self.vm.flavours()))
            self.flavour.setCurrentText(config.model_flavour or "")
        with signals_blocked(self.adapter):
            self.adapter.setCurrentIndex(self.adapter.findData(config.lora_type))
        choice = self.vm.choice
        for name, button in self.choice_buttons.items():
            with signals_blocked(button):
                button.setChecked(name == choice)
        custom = choice == "custom"
        self.custom.setVisible(custom)
        self.apply_custom.setVisible(custom)
        if custom and not self.custom.hasFocus():
            self.custom.setPlainText("\n".join(config.peft_lora_target_modules or []))
        lycoris = config.lora_type == "lycoris"
        if lycoris and self.lycoris.isHidden():
            self.lycoris.load()
        self.lycoris.setVisible(lycoris)

    def show_targets(self, result: TargetResult) -> None:
        entries = result.report.entries if result.report is not None else []
        self.table.setRowCount(len(entries))
        for row, entry in enumerate(entries):
            types = ", ".join(f"{k} × {v}" for k, v in sorted(entry.layer_types.items())) or "—"
            if entry.unsupported:
                types += "  (unsupported: " + ", ".join(entry.unsupported) + ")"
            count = QTableWidgetItem(str(entry.count))
            count.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            if entry.count == 0:
                count.setForeground(Qt.GlobalColor.red)
            for col, item in enumerate((QTableWidgetItem(entry.pattern), count, QTableWidgetItem(types))):
                self.table.setItem(row, col, item)
        if result.error:
            self.total_label.setText(f"✗ {result.error}")
            self.total_label.setStyleSheet("color: #c8513a;")
        else:
            total = result.report.total if result.report is not None else 0
            self.total_label.setText(f"{total} modules will carry the slider")
            self.total_label.setStyleSheet("")

    def show_notice(self, text: str) -> None:
        self.notice.setText(text)
        self.notice.setVisible(bool(text))
