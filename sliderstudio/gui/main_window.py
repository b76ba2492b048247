"""The main window: four areas (dataset, architecture, training, preview) around one project.

It owns the view-models and wires them together (training checkpoints feed the preview); the
panes only know their own view-model. File menu: New, Open, Save, Save As, recent projects.
Window geometry and the recent list persist through `AppSettings`.
"""
from __future__ import annotations

import json
from pathlib import Path

from PySide6.QtCore import QByteArray, Qt
from PySide6.QtGui import QAction, QCloseEvent, QKeySequence
from PySide6.QtWidgets import (
    QDockWidget, QFileDialog, QFrame, QGroupBox, QLabel, QMainWindow, QMessageBox, QScrollArea, QSplitter,
    QVBoxLayout, QWidget,
)

from sliderstudio import __version__
from sliderstudio.kernel.errors import InputError
from sliderstudio.gui.dataset_pane import DatasetPane
from sliderstudio.gui.device_panel import DevicePanel
from sliderstudio.gui.preset_pane import PresetPane
from sliderstudio.gui.preview_pane import PreviewPane
from sliderstudio.gui.queue_pane import QueuePane
from sliderstudio.gui.settings import AppSettings
from sliderstudio.gui.training_pane import TrainingPane
from sliderstudio.gui.memory_line import MemoryLine
from sliderstudio.gui.viewmodels.memory import MemoryViewModel
from sliderstudio.gui.viewmodels.architecture import ArchitectureViewModel
from sliderstudio.gui.viewmodels.dataset import DatasetViewModel
from sliderstudio.gui.viewmodels.device import DeviceViewModel
from sliderstudio.gui.viewmodels.preview import PreviewViewModel
from sliderstudio.gui.viewmodels.project import ProjectViewModel
from sliderstudio.gui.viewmodels.queue import QueueViewModel
from sliderstudio.gui.viewmodels.training import TrainingViewModel
from sliderstudio.gui.workers.file_writer import FileWriter
from sliderstudio.gui.workers.tasks import TaskRunner

APP_TITLE = "Slider Studio"


def area(title: str, widget: QWidget, scroll: bool = False) -> QGroupBox:
    """One of the four titled areas of the window (scrolling when its content can outgrow it)."""
    box = QGroupBox(title, objectName=f"area{title}")
    layout = QVBoxLayout(box)
    layout.setContentsMargins(4, 8, 4, 4)
    if scroll:
        scroller = QScrollArea(widgetResizable=True, frameShape=QFrame.Shape.NoFrame)
        scroller.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroller.setWidget(widget)
        widget = scroller
    layout.addWidget(widget)
    return box


class MainWindow(QMainWindow):
    def __init__(self, settings: AppSettings | None = None, parent: QWidget | None = None):
        super().__init__(parent)
        self.settings = settings or AppSettings.load()
        self.tasks = TaskRunner(self)
        self.writer = FileWriter(self)        # project and settings writes: never fsync on the UI thread
        self.settings.writer = self.writer
        self.project_vm = ProjectViewModel(self, writer=self.writer)
        self.dataset_vm = DatasetViewModel(self.project_vm, self.tasks, self)
        self.arch_vm = ArchitectureViewModel(self.project_vm, self.tasks, self)
        self.training_vm = TrainingViewModel(self.project_vm, self.tasks, self)
        self.memory_vm = MemoryViewModel(self.project_vm, self.tasks, self.settings.card_gb, self)  # 0: detect
        self.preview_vm = PreviewViewModel(self.project_vm, self)
        self.device_vm = DeviceViewModel(self.training_vm, self.project_vm, self.tasks, self)
        self.queue_vm = QueueViewModel(self.project_vm, self.tasks, parent=self)
        self.training_vm.checkpointSaved.connect(self.preview_vm.on_checkpoint)
        self.training_vm.runFinished.connect(self.preview_vm.on_run_finished)
        self.training_vm.stateChanged.connect(self.preview_vm.on_training_state)
        self._build_areas()
        self._build_menus()
        self.project_vm.projectLoaded.connect(self._project_loaded)
        self.project_vm.dirtyChanged.connect(self.setWindowModified)
        self.project_vm.saved.connect(lambda root: self.statusBar().showMessage(f"Saved {root}", 5000))
        self.project_vm.saveFailed.connect(lambda why: self.show_error(f"Cannot save:\n{why}"))
        self.training_vm.stateChanged.connect(self._training_state)
        self.setWindowTitle(f"{APP_TITLE}[*]")
        self.resize(1600, 1000)
        self._restore_window()
        self.arch_vm.load_families()     # imports the engine (torch) on the task pool, not here

    def _card_chosen(self, card_gb: float) -> None:
        self.settings.card_gb = card_gb
        self.settings.save()

    # --- layout ------------------------------------------------------------------------
    def _build_areas(self) -> None:
        """Dataset and architecture on the left, preview in the middle, training on the right.

        Splitters rather than docks: their sizes are deterministic (screenshots, first start)
        and their state round-trips through the settings file.
        """
        self.dataset_pane = DatasetPane(self.dataset_vm)
        self.preset_pane = PresetPane(self.arch_vm)
        self.memory_line = MemoryLine(self.memory_vm, self.project_vm, self._card_chosen)
        self.training_pane = TrainingPane(self.training_vm, self.project_vm, memory_line=self.memory_line)
        self.preview_pane = PreviewPane(self.preview_vm)
        self.areas = {title: area(title, widget, scroll) for title, widget, scroll in (
            ("Dataset", self.dataset_pane, False), ("Architecture", self.preset_pane, True),
            ("Training", self.training_pane, False), ("Preview", self.preview_pane, True))}
        self.left = QSplitter(Qt.Orientation.Vertical, objectName="leftSplitter")
        self.left.addWidget(self.areas["Dataset"])
        self.left.addWidget(self.areas["Architecture"])
        self.left.setSizes([560, 440])
        # The device panel sits under the training area: live next to the run it describes. It is
        # not one of the four project areas (it edits nothing), hence its own object name.
        self.device_panel = DevicePanel(self.device_vm)
        self.device_area = area("Device", self.device_panel)
        self.device_area.setObjectName("deviceArea")
        self.right = QSplitter(Qt.Orientation.Vertical, objectName="rightSplitter")
        self.right.addWidget(self.areas["Training"])
        self.right.addWidget(self.device_area)
        self.right.setSizes([600, 400])
        self.columns = QSplitter(Qt.Orientation.Horizontal, objectName="columnSplitter")
        for widget, width in ((self.left, 420), (self.areas["Preview"], 500), (self.right, 420)):
            widget.setMinimumWidth(width)
            self.columns.addWidget(widget)
        self.columns.setSizes([520, 540, 540])
        self.setCentralWidget(self.columns)
        self.project_label = QLabel()
        self.statusBar().addPermanentWidget(self.project_label)
        self._build_queue_dock()

    def _build_queue_dock(self) -> None:
        """The training queue as a dock under the areas, hidden until View > Queue: it spans projects,
        so it is not one of the project's areas, and hidden it costs nothing (it follows the queue
        file only while shown)."""
        self.queue_pane = QueuePane(self.queue_vm)
        self.queue_dock = QDockWidget("Queue", self, objectName="queueDock")
        self.queue_dock.setWidget(self.queue_pane)
        self.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, self.queue_dock)
        self.queue_dock.visibilityChanged.connect(self.queue_vm.set_active)
        self.queue_dock.hide()

    def _build_menus(self) -> None:
        file = self.menuBar().addMenu("&File")
        for text, shortcut, slot in (("&New project…", QKeySequence.StandardKey.New, self.new_project_dialog),
                                     ("&Open project…", QKeySequence.StandardKey.Open, self.open_project_dialog),
                                     ("Open config &file…", QKeySequence(), self.open_config_dialog),
                                     ("&Save", QKeySequence.StandardKey.Save, self.save),
                                     ("Save &As…", QKeySequence.StandardKey.SaveAs, self.save_as_dialog)):
            action = QAction(text, self, shortcut=shortcut)
            action.triggered.connect(slot)
            file.addAction(action)
        self.recent_menu = file.addMenu("Open &Recent")
        self._fill_recent()
        file.addSeparator()
        quit_action = QAction("&Quit", self, shortcut=QKeySequence.StandardKey.Quit)
        quit_action.triggered.connect(self.close)
        file.addAction(quit_action)
        view = self.menuBar().addMenu("&View")
        for title, box in self.areas.items():
            action = QAction(title, self, checkable=True, checked=True)
            action.toggled.connect(box.setVisible)
            view.addAction(action)
        device = QAction("Device", self, checkable=True, checked=True)
        device.toggled.connect(self.device_area.setVisible)
        view.addAction(device)
        queue = self.queue_dock.toggleViewAction()
        queue.setText("Queue")
        view.addAction(queue)
        help_menu = self.menuBar().addMenu("&Help")
        about = QAction("&About Slider Studio", self)
        about.triggered.connect(lambda: QMessageBox.about(
            self, APP_TITLE, f"{APP_TITLE} {__version__}\nTrain concept sliders and compare strengths."))
        help_menu.addAction(about)

    def _fill_recent(self) -> None:
        self.recent_menu.clear()
        for path in self.settings.recent:
            action = self.recent_menu.addAction(path)
            action.triggered.connect(lambda _=False, p=path: self.open_project(p))
        self.recent_menu.setEnabled(bool(self.settings.recent))

    # --- documents ---------------------------------------------------------------------
    def open_project(self, path: str | Path) -> bool:
        """Open a project folder; a bad project is explained, the current one stays open."""
        if self.training_vm.running:
            self.show_error("A training run is in progress; stop it before opening another project.")
            return False
        try:
            self.project_vm.open(path)
        except InputError as exc:
            self.show_error(f"Cannot open the project:\n{exc}")
            return False
        notes = self.project_vm.project.key_notes
        if notes:  # a SimpleTuner config: say what was mapped, changed and ignored
            from sliderstudio.gui.key_report import show_key_report

            self.key_report_box = show_key_report(self, APP_TITLE, notes)
        self.preview_vm.render_now("all")
        return True

    def new_project(self, folder: str | Path) -> bool:
        try:
            self.project_vm.create(folder)
        except InputError as exc:
            self.show_error(f"Cannot create the project:\n{exc}")
            return False
        return True

    def save(self) -> bool:
        try:
            self.project_vm.save()
        except InputError as exc:
            self.show_error(f"Cannot save:\n{exc}")
            return False
        return True

    def save_as(self, folder: str | Path) -> bool:
        try:
            self.project_vm.save_as(folder)
        except InputError as exc:
            self.show_error(f"Cannot save:\n{exc}")
            return False
        return True

    def open_project_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(
            self, "Open a project folder (config.json, or a SimpleTuner folder with config/config.json)")
        if folder and self._maybe_save():
            self.open_project(folder)

    def open_config_dialog(self) -> None:
        """Open by config file: ours, or SimpleTuner's config.json / config.toml."""
        path, _ = QFileDialog.getOpenFileName(self, "Open a config file", "", "Configs (*.json *.toml)")
        if path and self._maybe_save():
            self.open_project(path)

    def new_project_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Choose an empty folder for the new project")
        if folder and self._maybe_save():
            self.new_project(folder)

    def save_as_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Save the project into folder")
        if folder:
            self.save_as(folder)

    def _maybe_save(self) -> bool:
        """Ask before discarding unsaved edits; False means the user cancelled."""
        if not (self.project_vm.is_open and self.project_vm.dirty):
            return True
        answer = QMessageBox.question(
            self, APP_TITLE, "The project has unsaved changes. Save them first?",
            QMessageBox.StandardButton.Save | QMessageBox.StandardButton.Discard | QMessageBox.StandardButton.Cancel)
        if answer == QMessageBox.StandardButton.Save:
            return self.save()
        return answer == QMessageBox.StandardButton.Discard

    def _project_loaded(self) -> None:
        root = self.project_vm.project.root
        self.settings.add_recent(root)
        self.settings.save()
        self._fill_recent()
        self.setWindowTitle(f"{root.name} — {APP_TITLE}[*]")
        self.setWindowModified(self.project_vm.dirty)
        self.project_label.setText(str(root))
        warnings = self.project_vm.project.warnings
        if warnings:
            self.statusBar().showMessage("⚠ " + warnings[0] + (f" (+{len(warnings) - 1} more)" if len(warnings) > 1 else ""))

    def _training_state(self, state: str) -> None:
        self.statusBar().showMessage({"running": "Training…", "stopping": "Stopping…"}.get(state, "Ready"))

    def show_error(self, text: str) -> None:
        """A non-blocking message box (the event loop, and a running training, keep going)."""
        self.last_error = text
        box = QMessageBox(QMessageBox.Icon.Warning, APP_TITLE, text, QMessageBox.StandardButton.Ok, self)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()

    # --- window state ------------------------------------------------------------------
    def _splitters(self) -> dict[str, QSplitter]:
        return {"columns": self.columns, "left": self.left, "right": self.right}

    def _restore_window(self) -> None:
        if self.settings.geometry:
            self.restoreGeometry(QByteArray.fromHex(self.settings.geometry.encode()))
        try:
            states = json.loads(self.settings.window_state or "{}")
        except ValueError:
            states = {}
        for name, splitter in self._splitters().items():
            if isinstance(states, dict) and isinstance(states.get(name), str):
                splitter.restoreState(QByteArray.fromHex(states[name].encode()))

    def store_window(self) -> None:
        self.settings.geometry = bytes(self.saveGeometry().toHex()).decode()
        self.settings.window_state = json.dumps(
            {name: bytes(s.saveState().toHex()).decode() for name, s in self._splitters().items()})
        self.settings.save()

    def _confirm_stop_training(self) -> bool:
        """Closing during training asks first; yes stops after the current step and keeps a checkpoint."""
        if not self.training_vm.running:
            return True
        p = self.training_vm.last_progress
        where = f" (step {p.step} of {p.total})" if p else ""
        answer = QMessageBox.question(
            self, APP_TITLE, f"Training is running{where}. Stop it and close?\n\nThe run stops after the "
            "current step and keeps its last checkpoint; Resume continues from there.",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, QMessageBox.StandardButton.No)
        return answer == QMessageBox.StandardButton.Yes

    def closeEvent(self, event: QCloseEvent) -> None:
        if not self._confirm_stop_training() or not self._maybe_save():
            event.ignore()
            return
        self.shutdown()
        event.accept()

    def shutdown(self, store: bool = True) -> None:
        """Stop training (it checkpoints), stop the preview thread, finish background jobs."""
        if store:
            self.store_window()
        if self.training_vm.running:
            self.training_vm.stop()
            self.training_vm.wait()
        self.preview_vm.shutdown()
        self.tasks.wait()
        self.writer.flush()              # nothing asked for is lost: the settings and the last save land
