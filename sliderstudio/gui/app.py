"""Application entry: `sliderstudio gui [DIR] [--screenshot PNG]` calls `main`.

Sets up Qt the way a torch app needs it (Fusion style, LC_NUMERIC=C after QApplication,
Ctrl-C works), opens the project (the bundled demo project when none is given) and either runs
the event loop or renders the window to a PNG once everything visible has finished loading.
"""
from __future__ import annotations

import locale
import signal
import sys
import time
from pathlib import Path

from PySide6.QtCore import QCoreApplication
from PySide6.QtWidgets import QApplication

from sliderstudio.kernel.errors import InputError
from sliderstudio.gui import gc_policy
from sliderstudio.gui.settings import data_dir

SCREENSHOT_TIMEOUT_S = 120.0
DEMO_FOLDER = "demo"


def make_application() -> QApplication:
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("sliderstudio")
    app.setApplicationDisplayName("Slider Studio")
    app.setStyle("Fusion")
    # Qt sets the C locale from the environment; number parsing in torch/numpy expects "C".
    locale.setlocale(locale.LC_NUMERIC, "C")
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    if not gc_policy.collector_installed():
        app.gc_collector = gc_policy.install(app)   # cyclic GC on the UI thread only (see gc_policy)
    return app


def demo_project_dir() -> Path:
    """The bundled demo project in the user's data folder, written on first use."""
    folder = data_dir() / DEMO_FOLDER
    if not (folder / "config.json").exists():
        from sliderstudio.toy.demo_project import write_demo_project

        write_demo_project(folder)
    return folder


def wait_until_settled(window, timeout_s: float = SCREENSHOT_TIMEOUT_S) -> None:
    """Let scans, target resolution and the first preview finish before the picture is taken."""
    deadline = time.monotonic() + timeout_s
    window.preview_vm.render_now("all")

    def busy() -> bool:
        return (window.dataset_vm.scanning or window.arch_vm.resolving or window.arch_vm.result is None
                or window.preview_vm.busy or window.tasks.busy)

    while time.monotonic() < deadline:
        QCoreApplication.processEvents()
        if not busy():
            break
        time.sleep(0.02)
    for _ in range(10):            # a few more turns for the last repaints
        QCoreApplication.processEvents()
        time.sleep(0.02)


SCREENSHOT_SIZE = (1600, 1000)


def take_screenshot(window, path: str) -> None:
    """A fixed size, so screenshots do not depend on how the user left the window."""
    window.resize(*SCREENSHOT_SIZE)
    window.show()
    wait_until_settled(window)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    if not window.grab().save(str(target), "PNG"):
        raise OSError(f"could not write {target}")


def main(project_dir: str | None = None, screenshot: str | None = None) -> int:
    """Run the app (or render a screenshot). Exit status: 0 ok, 2 bad project, 1 other errors."""
    app = make_application()
    from sliderstudio.gui.main_window import MainWindow

    try:
        folder = Path(project_dir) if project_dir else demo_project_dir()
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    window = MainWindow()
    try:
        window.project_vm.open(folder)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        window.shutdown()
        return 2
    if screenshot:
        try:
            take_screenshot(window, screenshot)
        finally:
            window.shutdown(store=False)
        print(f"screenshot written to {screenshot}")
        return 0
    window.preview_vm.render_now("all")
    window.show()
    return app.exec()
