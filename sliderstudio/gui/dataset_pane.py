"""Dataset area: drop folders in (or Add…), one row per bucket, text pairs, the balance line and notices."""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import (
    QFileDialog, QHBoxLayout, QLabel, QPushButton, QScrollArea, QToolButton, QVBoxLayout, QWidget,
)

from sliderstudio.engine.buckets import Balance
from sliderstudio.gui.bucket_row import BucketRow
from sliderstudio.gui.text_pair_editor import TextPairsSection
from sliderstudio.gui.viewmodels.dataset import DatasetViewModel
from sliderstudio.gui.viewmodels.text_pairs import TextPairsViewModel

EMPTY_HINT = "Drop folders of images here (one folder = one bucket), or use Add folder…"


def describe_balance(bal: Balance | None) -> tuple[str, str]:
    """(balance text, pairing text) for the summary line."""
    if bal is None:
        return "No scanned buckets yet", ""
    text = f"positive {bal.positive} · negative {bal.negative} · neutral {bal.neutral} images"
    if bal.pairing:
        names = ", ".join(f"{p} ↔ {n}" for p, n in bal.pair_map.items())
        return text, f"Paired mode: {bal.pairs} pairs ({names})"
    return text, "Unpaired sampling (no positive/negative folders with matching file names)"


class DatasetPane(QWidget):
    def __init__(self, vm: DatasetViewModel, parent: QWidget | None = None):
        super().__init__(parent)
        self.vm = vm
        self.rows: dict[str, BucketRow] = {}
        self.setAcceptDrops(True)
        self.setMinimumWidth(480)
        layout = QVBoxLayout(self)
        layout.addLayout(self._build_toolbar())
        layout.addWidget(self._build_notice())
        self.balance_label = QLabel(objectName="balance")
        self.pairing_label = QLabel(objectName="pairing")
        self.warning_label = QLabel(objectName="balanceWarning", wordWrap=True)
        self.warning_label.setStyleSheet("color: #8a5a00; background: #fff3cd; padding: 3px; border-radius: 3px;")
        for label in (self.balance_label, self.pairing_label, self.warning_label):
            layout.addWidget(label)
        self.scroll = QScrollArea(widgetResizable=True)
        self.scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.list_widget = QWidget()
        self.list_layout = QVBoxLayout(self.list_widget)
        self.list_layout.setAlignment(Qt.AlignmentFlag.AlignTop)
        self.empty_label = QLabel(EMPTY_HINT, alignment=Qt.AlignmentFlag.AlignCenter, wordWrap=True)
        self.list_layout.addWidget(self.empty_label)
        self.text_vm = TextPairsViewModel(vm.project_vm, self)   # the bucket-free mode, below the buckets
        self.text_section = TextPairsSection(self.text_vm)
        self.list_layout.addWidget(self.text_section)
        self.text_vm.notice.connect(self.show_notice)
        self.scroll.setWidget(self.list_widget)
        layout.addWidget(self.scroll, 1)
        vm.bucketsReset.connect(self.rebuild)
        vm.bucketChanged.connect(lambda i: self.rows[i].refresh() if i in self.rows else None)
        vm.bucketScanned.connect(lambda i: self.rows[i].refresh_scan() if i in self.rows else None)
        vm.balanceChanged.connect(self.show_balance)
        vm.notice.connect(self.show_notice)
        self.rebuild()
        self.show_balance(vm.balance)

    def _build_toolbar(self) -> QHBoxLayout:
        bar = QHBoxLayout()
        add = QPushButton("Add folder…", objectName="addFolder")
        add.setToolTip("Add a folder of images as a new bucket (multidatabackend.json: instance_data_dir)")
        add.clicked.connect(self.choose_folder)
        rescan = QPushButton("Rescan", toolTip="Read every bucket folder again")
        rescan.clicked.connect(self.vm.rescan_all)
        bar.addWidget(add)
        bar.addWidget(rescan)
        bar.addStretch(1)
        return bar

    def _build_notice(self) -> QWidget:
        self.notice = QWidget(objectName="notice")
        row = QHBoxLayout(self.notice)
        row.setContentsMargins(6, 3, 6, 3)
        self.notice_label = QLabel(wordWrap=True, objectName="noticeText")
        close = QToolButton(text="✕")
        close.clicked.connect(self.notice.hide)
        row.addWidget(self.notice_label, 1)
        row.addWidget(close)
        self.notice.setStyleSheet("#notice { background: #fde2dd; border-radius: 3px; }")
        self.notice.hide()
        return self.notice

    # --- view-model → widgets ----------------------------------------------------------
    def rebuild(self) -> None:
        for row in self.rows.values():
            row.setParent(None)
            row.deleteLater()
        self.rows.clear()
        for bucket in self.vm.buckets:
            row = BucketRow(self.vm, bucket.id)
            self.rows[bucket.id] = row
            self.list_layout.insertWidget(self.list_layout.indexOf(self.text_section), row)
        self.empty_label.setVisible(not self.rows)

    def show_balance(self, bal: Balance | None) -> None:
        text, pairing = describe_balance(bal)
        self.balance_label.setText(text)
        self.pairing_label.setText(pairing)
        warning = bal.warning if bal else None
        self.warning_label.setText(f"⚠ {warning}" if warning else "")
        self.warning_label.setVisible(bool(warning))

    def show_notice(self, text: str) -> None:
        self.notice_label.setText(text)
        self.notice.show()

    # --- user input --------------------------------------------------------------------
    def choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Add a folder of images as a bucket")
        if folder:
            self.vm.add_folders([Path(folder)])

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        urls = event.mimeData().urls()
        local = [Path(u.toLocalFile()) for u in urls if u.isLocalFile()]
        remote = [u.toString() for u in urls if not u.isLocalFile()]
        if local:
            self.vm.add_folders(local)
        if remote:
            self.show_notice("Not added:\n" + "\n".join(f"{r}: not a local folder" for r in remote))
        event.acceptProposedAction()
