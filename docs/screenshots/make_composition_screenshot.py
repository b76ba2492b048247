"""Regenerate docs/screenshots/area-preview-composition.png: the preview pane with two sliders.

    QT_QPA_PLATFORM=offscreen .venv/bin/python docs/screenshots/make_composition_screenshot.py

In a temp folder: two short toy sliders are trained (size: the project's own, in its output
folder; brightness: a second project), then the preview pane opens the size project, composes the
brightness slider through the view-model (as the "Add slider…" button does) and moves its dial.
About a minute on 2 CPU cores.
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


def train(root: Path) -> Path:
    from sliderstudio.engine.project import load_project
    from sliderstudio.engine.trainer import Trainer

    return Trainer(load_project(root), lambda _e: None).run()


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="sliderstudio-compose-shot-"))
    os.environ["SLIDERSTUDIO_DATA_DIR"] = str(work / "data")
    os.environ["SLIDERSTUDIO_CONFIG_DIR"] = str(work / "config")
    import torch

    torch.set_num_threads(1)
    from sliderstudio.toy.demo_project import write_demo_project

    config = {"validation_steps": 0}
    size = write_demo_project(work / "size", concept="size", max_train_steps=80, config=config)
    light = write_demo_project(work / "brightness", concept="brightness", max_train_steps=80, config=config)
    train(size)
    light_adapter = train(light)

    from sliderstudio.gui.app import make_application

    app = make_application()
    from sliderstudio.engine.project import load_project
    from sliderstudio.gui.preview_pane import PreviewPane
    from sliderstudio.gui.viewmodels.preview import PreviewViewModel
    from sliderstudio.gui.viewmodels.project import ProjectViewModel

    pvm = ProjectViewModel()
    vm = PreviewViewModel(pvm, debounce_ms=50)
    pane = PreviewPane(vm)
    pvm.set_project(load_project(size))
    vm.add_companion(str(light_adapter))
    pane.companion_dials[0].setValue(0.8)
    pane.resize(640, 720)
    pane.show()
    rendered = []
    vm.sweepRendered.connect(rendered.append)
    vm.render_now("all")
    deadline = time.monotonic() + 300
    while (not rendered or vm.busy) and time.monotonic() < deadline:
        settle(0.2)
    settle(0.5)
    out = HERE / "area-preview-composition.png"
    pane.grab().save(str(out))
    print(out)
    vm.shutdown()
    app.quit()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
