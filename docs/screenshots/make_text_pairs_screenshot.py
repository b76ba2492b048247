"""Regenerate docs/screenshots/area-dataset-text-pairs.png: the dataset pane with image buckets and a text pair.

    QT_QPA_PLATFORM=offscreen .venv/bin/python docs/screenshots/make_text_pairs_screenshot.py

In a temp folder: the toy demo project (bigger/smaller/neutral buckets), plus one text pair added
and filled in through the pane's own widgets, as a user would.
"""
from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))


def settle(seconds: float = 1.0) -> None:
    from PySide6.QtCore import QCoreApplication

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        QCoreApplication.processEvents()
        time.sleep(0.02)


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="sliderstudio-text-shot-"))
    os.environ["SLIDERSTUDIO_DATA_DIR"] = str(work / "data")
    os.environ["SLIDERSTUDIO_CONFIG_DIR"] = str(work / "config")
    from sliderstudio.gui.app import make_application

    app = make_application()
    from sliderstudio.engine.project import load_project
    from sliderstudio.gui.dataset_pane import DatasetPane
    from sliderstudio.gui.viewmodels.dataset import DatasetViewModel
    from sliderstudio.gui.viewmodels.project import ProjectViewModel
    from sliderstudio.gui.workers.tasks import TaskRunner
    from sliderstudio.toy.demo_project import write_demo_project

    root = write_demo_project(work / "demo", pairs=4)
    tasks = TaskRunner()
    pvm = ProjectViewModel()
    pane = DatasetPane(DatasetViewModel(pvm, tasks))
    pvm.set_project(load_project(root))
    pane.text_vm.add_pair(positive="a large red circle on a blue background",
                          negative="a small red circle on a blue background",
                          neutral="a red circle on a blue background", anchors=["a green square on a white background"],
                          guidance=1.5)
    pane.resize(560, 980)
    pane.show()
    while pane.vm.scanning:
        settle(0.2)
    settle(1.0)
    bar = pane.scroll.verticalScrollBar()
    bar.setValue(bar.maximum())   # the text pairs sit below the buckets
    settle(0.5)
    out = HERE / "area-dataset-text-pairs.png"
    pane.grab().save(str(out))
    print(out)
    tasks.wait()
    app.quit()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
