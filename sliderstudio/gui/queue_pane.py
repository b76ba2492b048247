"""The Queue pane: the training queue's jobs with status and progress, and its commands.

Add queues the open project (a snapshot of its config); Up / Down reorder; Cancel cancels a waiting
job or stops a running one with a checkpoint; Run / Stop start and stop the background runner.
Everything shown comes from the queue file through QueueViewModel, so jobs added or run from the
CLI, or by another window, appear here too.
"""
from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView, QHBoxLayout, QHeaderView, QLabel, QProgressBar, QPushButton, QTableWidget,
    QTableWidgetItem, QVBoxLayout, QWidget,
)

from sliderstudio.app.queue_store import ENDED, Job
from sliderstudio.gui.viewmodels.queue import QueueViewModel

COLUMNS = ("#", "Job", "Project", "Status", "Progress")


class QueuePane(QWidget):
    def __init__(self, vm: QueueViewModel, parent: QWidget | None = None):
        super().__init__(parent)
        self.vm = vm
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(self._build_buttons())
        self.table = QTableWidget(0, len(COLUMNS), objectName="queueTable")
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.verticalHeader().setVisible(False)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        header = self.table.horizontalHeader()
        for column, mode in enumerate((QHeaderView.ResizeMode.ResizeToContents,) * 3 +
                                      (QHeaderView.ResizeMode.Stretch, QHeaderView.ResizeMode.Fixed)):
            header.setSectionResizeMode(column, mode)
        self.table.setColumnWidth(4, 160)
        self.table.itemSelectionChanged.connect(self._update_buttons)
        layout.addWidget(self.table, 1)
        self.status = QLabel(objectName="queueStatus", wordWrap=True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.status)
        vm.jobsChanged.connect(self.show_jobs)
        vm.runnerChanged.connect(self.show_runner)
        vm.errorRaised.connect(self.show_error)
        self.show_jobs(vm.jobs)
        self.show_runner(vm.runner_pid)

    def _build_buttons(self) -> QHBoxLayout:
        row = QHBoxLayout()
        self.add_button = QPushButton("Add open project", objectName="queueAdd",
                                      toolTip="Queue the open project with its config as it is now")
        self.up_button = QPushButton("Up", objectName="queueUp", toolTip="Earlier in the queue")
        self.down_button = QPushButton("Down", objectName="queueDown", toolTip="Later in the queue")
        self.cancel_button = QPushButton("Cancel job", objectName="queueCancel",
                                         toolTip="Cancel a waiting job; a running one stops with a checkpoint")
        self.run_button = QPushButton("Run queue", objectName="queueRun",
                                      toolTip="Train the waiting jobs one after another in the background "
                                              "(it goes on if the app is closed)")
        self.stop_button = QPushButton("Stop queue", objectName="queueStop",
                                       toolTip="The running job stops with a checkpoint and resumes on the next Run")
        self.add_button.clicked.connect(self.vm.add_open_project)
        self.up_button.clicked.connect(lambda: self._move(-1))
        self.down_button.clicked.connect(lambda: self._move(+1))
        self.cancel_button.clicked.connect(self._cancel)
        self.run_button.clicked.connect(self.vm.run)
        self.stop_button.clicked.connect(self.vm.stop)
        for button in (self.add_button, self.up_button, self.down_button, self.cancel_button):
            row.addWidget(button)
        row.addStretch(1)
        row.addWidget(self.run_button)
        row.addWidget(self.stop_button)
        return row

    # --- showing ------------------------------------------------------------------------
    def show_jobs(self, jobs: list[Job]) -> None:
        selected = self.selected_job()
        self.table.setRowCount(len(jobs))
        for row, job in enumerate(jobs):
            for column, text in enumerate((str(row + 1), job.id, job.name, job.label)):
                item = QTableWidgetItem(text)
                item.setToolTip(job.project if column == 2 else text)
                item.setData(Qt.ItemDataRole.UserRole, job.id)
                self.table.setItem(row, column, item)
            self.table.setCellWidget(row, 4, self._progress_bar(job))
            if job.id == selected:
                self.table.selectRow(row)
        self._update_buttons()

    @staticmethod
    def _progress_bar(job: Job) -> QProgressBar:
        bar = QProgressBar(objectName=f"queueProgress{job.id}")
        bar.setRange(0, max(job.total, 1))
        bar.setValue(min(job.step, max(job.total, 1)) if job.total else (1 if job.status == "finished" else 0))
        bar.setFormat(f"{job.step} / {job.total}" if job.total else "")
        bar.setTextVisible(True)
        return bar

    def show_runner(self, pid: int | None) -> None:
        self.status.setText(f"Running in process {pid}; it goes on if the app is closed." if pid else
                            "Not running. Run trains the waiting jobs in order; interrupted jobs resume.")
        self._update_buttons()

    def show_error(self, text: str) -> None:
        self.status.setText(f"⚠ {text}")

    def _update_buttons(self) -> None:
        job = next((j for j in self.vm.jobs if j.id == self.selected_job()), None)
        self.up_button.setEnabled(job is not None)
        self.down_button.setEnabled(job is not None)
        self.cancel_button.setEnabled(job is not None and job.status not in ENDED)
        running = self.vm.runner_pid is not None
        self.run_button.setEnabled(not running)
        self.stop_button.setEnabled(running)

    # --- commands -----------------------------------------------------------------------
    def selected_job(self) -> str | None:
        rows = self.table.selectionModel().selectedRows()
        if not rows:
            return None
        item = self.table.item(rows[0].row(), 1)
        return item.data(Qt.ItemDataRole.UserRole) if item else None

    def select_job(self, job_id: str) -> None:
        for row in range(self.table.rowCount()):
            if self.table.item(row, 1).data(Qt.ItemDataRole.UserRole) == job_id:
                self.table.selectRow(row)
                return

    def _move(self, delta: int) -> None:
        job_id = self.selected_job()
        if job_id is not None:
            self.vm.move_by(job_id, delta)

    def _cancel(self) -> None:
        job_id = self.selected_job()
        if job_id is not None:
            self.vm.cancel(job_id)

