"""One bucket as a row: thumbnails, count, role toggle, strength dial, sampling and caption fields.

The row only forwards user input to the DatasetViewModel and repaints from it; the rules
(role follows sign, snapping, validation) live in the view-model.
"""
from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import (
    QButtonGroup, QComboBox, QDoubleSpinBox, QFrame, QHBoxLayout, QLabel, QLineEdit, QSpinBox,
    QSizePolicy, QToolButton, QVBoxLayout, QWidget,
)
from superqt import QLabeledDoubleSlider
from superqt.utils import signals_blocked

from sliderstudio.config.config import BucketConfig
from sliderstudio.gui.binding import bind
from sliderstudio.gui.field_specs import field_spec
from sliderstudio.gui.tooltips import bucket_tooltip
from sliderstudio.gui.viewmodels.bucket_fields import BucketFields
from sliderstudio.gui.viewmodels.dataset import THUMBNAILS_PER_BUCKET, DatasetViewModel
from sliderstudio.gui.viewmodels.roles import ROLES, STRENGTH_MAX, STRENGTH_MIN, STRENGTH_STEP, role_of

ROLE_COLOURS = {"positive": "#2e9d57", "negative": "#c8513a", "neutral": "#8a8f98"}
ROLE_LABELS = {"positive": "+ positive", "negative": "− negative", "neutral": "○ neutral"}
CAPTION_STRATEGIES = ("textfile", "filename", "instanceprompt")


class BucketRow(QFrame):
    def __init__(self, vm: DatasetViewModel, bucket_id: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.vm, self.bucket_id = vm, bucket_id
        self.fields = BucketFields(vm, bucket_id, self)
        self.setObjectName(f"bucket-{bucket_id}")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 6, 8, 6)
        layout.setSpacing(4)
        layout.addLayout(self._build_header())
        layout.addLayout(self._build_thumbnails())
        role_row, sample_row = self._build_controls()
        layout.addLayout(role_row)
        layout.addLayout(sample_row)
        self.problems_label = QLabel()
        self.problems_label.setObjectName("problems")
        self.problems_label.setWordWrap(True)
        self.problems_label.setStyleSheet("color: #c8513a;")
        layout.addWidget(self.problems_label)
        self.refresh()
        self.refresh_scan()

    # --- construction ------------------------------------------------------------------
    def _build_header(self) -> QHBoxLayout:
        row = QHBoxLayout()
        self.title = QLabel()
        self.title.setStyleSheet("font-weight: 600;")
        self.folder_label = QLabel()
        self.folder_label.setStyleSheet("color: palette(mid);")
        # A long absolute path must not widen the row beyond the pane (the tooltip has it all).
        self.folder_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.folder_label.setMinimumWidth(20)
        self.count_label = QLabel("scanning…")
        self.count_label.setObjectName("count")
        self.badge = QLabel()
        self.badge.setObjectName("badge")
        remove = QToolButton(text="✕", toolTip="Remove this bucket from the project (the folder is kept)")
        remove.clicked.connect(lambda: self.vm.remove_bucket(self.bucket_id))
        row.addWidget(self.title)
        row.addWidget(self.folder_label, 1)
        for w in (self.badge, self.count_label, remove):
            row.addWidget(w)
        return row

    def _build_thumbnails(self) -> QHBoxLayout:
        row = QHBoxLayout()
        row.setSpacing(2)
        self.thumbs: list[QLabel] = []
        for _ in range(THUMBNAILS_PER_BUCKET):
            label = QLabel()
            label.setFixedHeight(48)
            row.addWidget(label)
            self.thumbs.append(label)
        row.addStretch(1)
        return row

    def _build_controls(self) -> tuple[QHBoxLayout, QHBoxLayout]:
        """Row 1: role and strength (what the bucket means); row 2: sampling and captions."""
        return self._build_role_row(), self._build_sampling_row()

    def _build_role_row(self) -> QHBoxLayout:
        row = QHBoxLayout()
        self.role_group = QButtonGroup(self)
        self.role_buttons: dict[str, QToolButton] = {}
        for role in ROLES:
            button = QToolButton(text=ROLE_LABELS[role], checkable=True)
            button.setObjectName(f"role-{role}")
            bucket_tooltip(button, "slider_strength", f"Role '{role}' sets the sign of the strength")
            button.clicked.connect(lambda _=False, r=role: self.vm.set_role(self.bucket_id, r))
            self.role_group.addButton(button)
            self.role_buttons[role] = button
            row.addWidget(button)
        self.strength = QLabeledDoubleSlider(Qt.Orientation.Horizontal)
        self.strength.setRange(STRENGTH_MIN, STRENGTH_MAX)
        self.strength.setSingleStep(STRENGTH_STEP)
        self.strength.setDecimals(2)
        self.strength.setMinimumWidth(160)
        bucket_tooltip(self.strength, "slider_strength",
                       f"{STRENGTH_MIN:+g} … {STRENGTH_MAX:+g} in steps of {STRENGTH_STEP:g}")
        bind(self.fields, "slider_strength", self.strength)
        row.addWidget(self.strength, 1)
        return row

    def _build_sampling_row(self) -> QHBoxLayout:
        row = QHBoxLayout()
        # The lower bounds come from BucketConfig; the upper ones are the row's (the config has none).
        self.probability = QDoubleSpinBox(minimum=field_spec(BucketConfig, "probability").minimum, maximum=100.0,
                                          singleStep=0.1, decimals=2)
        bucket_tooltip(self.probability, "probability")
        self.repeats = QSpinBox(minimum=int(field_spec(BucketConfig, "repeats").minimum), maximum=1000)
        bucket_tooltip(self.repeats, "repeats")
        self.caption = QComboBox()
        self.caption.addItems(CAPTION_STRATEGIES)
        bucket_tooltip(self.caption, "caption_strategy")
        self.instance_prompt = QLineEdit(placeholderText="instance prompt")
        bucket_tooltip(self.instance_prompt, "instance_prompt")
        for key in ("probability", "repeats", "caption_strategy"):
            bind(self.fields, key, getattr(self, "caption" if key == "caption_strategy" else key))
        bind(self.fields, "instance_prompt", self.instance_prompt, to_model=lambda text: text or None)
        for label, widget in (("probability", self.probability), ("repeats", self.repeats),
                              ("captions", self.caption)):
            row.addWidget(QLabel(label))
            row.addWidget(widget)
        row.addWidget(self.instance_prompt, 1)
        row.addStretch(1)
        return row

    # --- repaint -----------------------------------------------------------------------
    def refresh(self) -> None:
        """Repaint what the bindings do not: title, folder, role colour and toggles, the prompt's visibility."""
        bucket = self.vm.bucket(self.bucket_id)
        role = role_of(bucket.slider_strength)
        self.title.setText(bucket.id)
        self.folder_label.setText(bucket.instance_data_dir or "")
        self.folder_label.setToolTip(str(self.vm.folder_of(self.bucket_id)))
        self.setStyleSheet(f"#bucket-{self.bucket_id} {{ border-left: 4px solid {ROLE_COLOURS[role]}; }}")
        for name, button in self.role_buttons.items():
            with signals_blocked(button):
                button.setChecked(name == role)
        self.instance_prompt.setVisible(bucket.caption_strategy == "instanceprompt")

    def refresh_scan(self) -> None:
        """Count, thumbnails and inline problems from the latest scan."""
        scan = self.vm.scan(self.bucket_id)
        if scan is None:
            self.count_label.setText("scanning…")
            return
        count = scan.scanned.count
        self.count_label.setText(f"{count} image{'s' if count != 1 else ''}")
        for label, image in zip(self.thumbs, scan.thumbnails + [None] * len(self.thumbs)):
            label.setPixmap(QPixmap.fromImage(image) if image is not None else QPixmap())
            label.setVisible(image is not None)
        problems = scan.problems
        self.badge.setText(f"⚠ {len(problems)} problem{'s' if len(problems) != 1 else ''}" if problems else "")
        self.badge.setStyleSheet("color: white; background: #c8513a; border-radius: 3px; padding: 0 4px;")
        self.badge.setVisible(bool(problems))
        self.badge.setToolTip("\n".join(problems))
        shown = problems[:4] + ([f"… and {len(problems) - 4} more"] if len(problems) > 4 else [])
        self.problems_label.setText("\n".join(shown))
        self.problems_label.setVisible(bool(problems))
