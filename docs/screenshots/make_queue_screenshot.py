"""Regenerate docs/screenshots/queue-pane.png: the Queue pane during a real run (offscreen Qt).

    QT_QPA_PLATFORM=offscreen .venv/bin/python docs/screenshots/make_queue_screenshot.py

In a temp folder (never the user's queue): three toy projects, five jobs. One finishes, one's
project is deleted while queued (it fails, the queue goes on), one is cancelled, and the picture
is taken while the long job trains; then the queue is stopped (that job keeps its checkpoint).
Every status comes from the real runner, as `sliderstudio queue run` or the Run button starts it.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))


def wait_for(condition, timeout: float) -> bool:
    from PySide6.QtCore import QCoreApplication

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        QCoreApplication.processEvents()
        if condition():
            return True
        time.sleep(0.05)
    return False


def toy(root: Path, steps: int) -> Path:
    from sliderstudio.config.config import TrainConfig
    from sliderstudio.toy.demo_project import write_demo_project

    write_demo_project(root, pairs=2, max_train_steps=steps)
    cfg = json.loads((root / "config.json").read_text())
    cfg.update(validation_steps=0)
    if "slider_calibration" in TrainConfig.model_fields:
        cfg["slider_calibration"] = False
    (root / "config.json").write_text(json.dumps(cfg))
    return root


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="sliderstudio-queue-shot-"))
    os.environ["SLIDERSTUDIO_DATA_DIR"] = str(work / "data")
    os.environ["SLIDERSTUDIO_CONFIG_DIR"] = str(work / "config")
    from sliderstudio.gui.app import make_application

    app = make_application()
    from sliderstudio.app.queue_store import add_job, cancel_job, read_queue
    from sliderstudio.gui.queue_pane import QueuePane
    from sliderstudio.gui.viewmodels.project import ProjectViewModel
    from sliderstudio.gui.viewmodels.queue import QueueViewModel
    from sliderstudio.gui.workers.tasks import TaskRunner

    size, brightness, old = toy(work / "size-slider", 6), toy(work / "brightness-slider", 3000), toy(work / "old", 6)
    tasks = TaskRunner()
    vm = QueueViewModel(ProjectViewModel(), tasks)
    for project, overrides in ((size, {}), (old, {}), (brightness, {}), (size, {"lora_rank": 8, "output_dir": "r8"}),
                               (size, {"seed": 7, "output_dir": "seed7"})):
        add_job(vm.path, project, overrides)
    cancel_job(vm.path, "4")
    shutil.rmtree(old)                                  # deleted while queued
    pane = QueuePane(vm)
    pane.resize(900, 260)
    pane.show()
    vm.set_active(True)
    vm.run()
    running = wait_for(lambda: any(j.id == "3" and j.step >= 40 for j in vm.jobs), 900)
    wait_for(lambda: False, 1.5)                        # the bars repaint
    target = HERE / "queue-pane.png"
    ok = running and pane.grab().save(str(target))
    vm.stop()
    vm.wait_runner(600)
    tasks.wait()
    print(f"{target}: {'written' if ok else 'NOT written (the long job did not start in time)'}; "
          f"jobs: {[(j.id, j.status) for j in read_queue(vm.path).jobs]}")
    shutil.rmtree(work, ignore_errors=True)
    app.quit()
    return 0 if ok else 1


if __name__ == "__main__":
    code = main()
    # Leave without the interpreter's teardown: it deletes the view-models' Qt objects in whatever
    # order the collector reaches them, and PySide6 aborts on a shared QObject deleted before its
    # last holder ("shared QObject was deleted directly", then SIGSEGV) after the image is written.
    # The picture and the temp folder are already dealt with, so nothing is lost by skipping it.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
