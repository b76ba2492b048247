"""Regenerate the screenshots in docs/screenshots/ from the real app (offscreen Qt).

    QT_QPA_PLATFORM=offscreen .venv/bin/python docs/screenshots/make_screenshots.py [--model PATH] [--steps N]

Builds the demo project in a temp folder (never the user's), opens it in the main window,
grabs each area, clicks Train, grabs the window mid-run and again after the preview has
followed the finished adapter. Uses the bundled toy model when it is installed; otherwise a
tiny random SD 1.x model (same code path, but its images are noise) and says so.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))


def pump(seconds: float) -> None:
    from PySide6.QtCore import QCoreApplication

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        QCoreApplication.processEvents()
        time.sleep(0.01)


def wait_for(condition, timeout: float) -> bool:
    from PySide6.QtCore import QCoreApplication

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        QCoreApplication.processEvents()
        if condition():
            return True
        time.sleep(0.02)
    return False


def choose_model(work: Path, model: str | None) -> tuple[str, str]:
    from sliderstudio.kernel.resources import toy_model_dir

    if model:
        return model, f"model: {model}"
    if (toy_model_dir() / "model_index.json").exists():
        return "sliderstudio:toy", "model: the bundled toy model"
    from sliderstudio.families.tiny import build_tiny_sd

    path = build_tiny_sd(work / "tiny-sd1x")
    return str(path), "model: a tiny random SD 1.x (the toy model was not installed): preview images are noise"


OUT = HERE


def save(widget, name: str) -> None:
    target = OUT / name
    widget.grab().save(str(target), "PNG")
    print("wrote", target)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", help="model folder or id (default: toy model, else a tiny random one)")
    parser.add_argument("--steps", type=int, help="training steps (default: the demo's, DEMO_STEPS)")
    parser.add_argument("--out", type=Path, default=HERE, help="folder for the PNGs (default: next to this file)")
    args = parser.parse_args()
    global OUT
    OUT = args.out
    OUT.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="sliderstudio-shots-"))
    os.environ["SLIDERSTUDIO_CONFIG_DIR"] = str(work / "config")
    os.environ["SLIDERSTUDIO_DATA_DIR"] = str(work / "data")

    from sliderstudio.engine.project import load_project, save_project
    from sliderstudio.gui.app import make_application, wait_until_settled
    from sliderstudio.gui.main_window import MainWindow
    from sliderstudio.toy.demo_project import DEMO_STEPS, write_demo_project

    args.steps = args.steps or DEMO_STEPS
    app = make_application()
    root = write_demo_project(work / "demo", max_train_steps=args.steps)
    model, note = choose_model(work, args.model)
    project = load_project(root)
    project.config = project.config.model_copy(update={
        "pretrained_model_name_or_path": model, "checkpointing_steps": max(1, args.steps // 3),
        "validation_steps": 0})
    save_project(project)
    print(note)

    window = MainWindow()
    window.resize(1600, 1000)
    window.show()
    wait_for(lambda: bool(window.arch_vm.families), 120)
    window.open_project(root)
    wait_until_settled(window)
    save(window, "main-demo.png")
    for title in ("Dataset", "Architecture", "Preview", "Training"):
        save(window.areas[title], f"area-{title.lower()}.png")
    shoot_slider_training(window)

    window.training_pane.train_button.click()
    wait_for(lambda: (window.training_vm.last_progress or 0) and
             window.training_vm.last_progress.step >= args.steps // 2, 600)
    pump(0.6)
    save(window, "main-training.png")
    save(window.areas["Training"], "area-training-running.png")
    shoot_device_panel(window)
    wait_for(lambda: not window.training_vm.running, 900)
    wait_for(lambda: window.preview_vm.adapter.endswith("output/pytorch_lora_weights.safetensors")
             and not window.preview_vm.busy, 300)
    pump(0.6)
    save(window, "main-after-training.png")
    save(window.areas["Preview"], "area-preview-after-training.png")

    empty = work / "empty-folder"
    empty.mkdir()
    loose = work / "notes.pdf"
    loose.write_bytes(b"%PDF")
    window.dataset_vm.add_folders([empty, loose])
    wait_for(lambda: not window.dataset_vm.scanning, 30)
    window.dataset_pane.rows["empty-folder"].strength.setValue(-0.3)
    pump(0.4)
    window.dataset_pane.scroll.ensureWidgetVisible(window.dataset_pane.rows["empty-folder"])
    pump(0.3)
    save(window.areas["Dataset"], "area-dataset-problems.png")
    window.arch_vm.set_adapter_type("lycoris")
    pump(1.5)
    from PySide6.QtWidgets import QScrollArea

    window.areas["Architecture"].findChild(QScrollArea).ensureWidgetVisible(window.preset_pane.lycoris)
    pump(0.5)
    save(window.areas["Architecture"], "area-architecture-lycoris.png")
    window.shutdown(store=False)
    return 0


def shoot_slider_training(window) -> None:
    """Open 'Slider training ▸' with a timestep bias chosen, grab it, then put the demo's config back."""
    pane, before = window.training_pane, window.project_vm.config
    pane.advanced_toggle.setChecked(True)
    window.project_vm.update_config(timestep_bias_strategy="later", timestep_bias_multiplier=3.0,
                                    timestep_bias_portion=0.5)
    pump(0.5)
    save(window.areas["Training"], "area-training-slider-options.png")
    window.project_vm.update_config(timestep_bias_strategy=before.timestep_bias_strategy,
                                    timestep_bias_multiplier=before.timestep_bias_multiplier,
                                    timestep_bias_portion=before.timestep_bias_portion)
    pane.advanced_toggle.setChecked(False)
    pump(0.3)


def shoot_device_panel(window) -> None:
    """Pause the run, Sample now, grab the device panel with its gallery, then let the run go on."""
    training, device = window.training_vm, window.device_panel
    device.pause_button.click()
    wait_for(lambda: training.paused, 120)
    device.sample_button.click()
    step = training.last_progress.step
    wait_for(lambda: step in device.rows, 300)
    pump(0.6)
    save(window.device_area, "area-device.png")
    device.pause_button.click()
    wait_for(lambda: not training.paused, 120)


if __name__ == "__main__":
    sys.exit(main())
