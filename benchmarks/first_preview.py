"""How long the app takes, on the demo project, from the window being shown to the first preview image
being painted.

    python benchmarks/first_preview.py [--runs 3] [--variant app|before]

The app starts as `sliderstudio gui` does (demo project, offscreen), in a fresh interpreter per run,
so the engine import (torch, diffusers) is part of the figure. Variants:

  app      the app as it is: the strength-0 base image rendered first, on its own (one image, as
           the demo has no adapter yet), on the threads the machine's load leaves idle
  before   the earlier behaviour: all seven strengths (A, B and the sweep) in one batched call on
           torch's default threads before anything is painted

Prints one row per run: seconds from the window shown to the engine imported, the model loaded,
the first denoising step started and the first image painted, plus the threads the render used
and the 1-minute load average at the start.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("app", "before")
TIMEOUT_S = 600.0


def use_earlier_behaviour() -> None:
    """One batched call for every strength, torch's default threads (as the app rendered before)."""
    from sliderstudio.gui.workers import preview

    def run_plan(self, request, _has_adapter):
        pil = self._renderer.render(request.prompt, request.seed, list(request.strengths), request.steps,
                                    request.guidance, request.start_fraction)
        return [preview.pil_to_qimage(image) for image in pil]

    preview.PreviewWorker._run_plan = run_plan
    preview.machine_threads = lambda training: None


def run_once(variant: str) -> dict:
    """Start the app on the demo project and time its first painted preview image."""
    started = time.perf_counter()
    from PySide6.QtCore import QCoreApplication

    from sliderstudio.gui import app as gui_app
    from sliderstudio.gui import preview_pane
    from sliderstudio.gui.workers import engine, preview

    if variant == "before":
        use_earlier_behaviour()
    marks: dict[str, float] = {}
    threads: list[int] = []
    mark = lambda name: marks.setdefault(name, time.perf_counter())  # noqa: E731 - first time only

    real_import, real_renderer, real_show = engine._import_engine, preview.make_renderer, preview_pane.show_image
    real_threads = preview.cpu_threads

    def import_engine() -> None:
        real_import()
        mark("engine")

    def make_renderer(*args):
        renderer = real_renderer(*args)
        mark("model")
        return renderer

    def show_image(label, image) -> None:
        real_show(label, image)
        mark("painted")

    @contextmanager
    def cpu_threads(count):
        with real_threads(count):
            import torch

            threads.append(torch.get_num_threads())       # on the render's thread, inside its setting
            yield

    engine._import_engine, preview.make_renderer, preview_pane.show_image = import_engine, make_renderer, show_image
    preview.cpu_threads = cpu_threads
    app = gui_app.make_application()
    from sliderstudio.gui.main_window import MainWindow

    folder = gui_app.demo_project_dir()
    window = MainWindow()
    window.project_vm.open(folder)
    window.preview_vm.progressed.connect(lambda p: p.stage == "render" and mark("step"))
    window.preview_vm.render_now("all")
    window.show()
    shown = time.perf_counter()
    deadline = shown + TIMEOUT_S
    while "painted" not in marks and time.perf_counter() < deadline:
        QCoreApplication.processEvents()
        time.sleep(0.005)
    window.shutdown(store=False)
    app.processEvents()
    since = {name: round(t - shown, 2) for name, t in marks.items()}
    return {"variant": variant, "start_to_shown_s": round(shown - started, 2), **since,
            "threads": threads[0] if threads else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="runs per variant (each in a fresh process)")
    parser.add_argument("--variant", choices=VARIANTS, action="append",
                        help="which variants (default: both); repeat the option for several")
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_once(args.child)))
        return
    print(f"demo project, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f} at the start\n")
    print("| variant | run | load | start→shown s | shown→engine s | →model s | →first step s | "
          "→first image painted s | render threads |")
    print("|---|---|---|---|---|---|---|---|---|")
    firsts: dict[str, list[float]] = {}
    for variant in args.variant or VARIANTS:
        for run in range(1, args.runs + 1):
            load = os.getloadavg()[0]
            with tempfile.TemporaryDirectory(prefix="first-preview-") as home:
                env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "PYTHONPATH": str(ROOT),
                       "SLIDERSTUDIO_CONFIG_DIR": home, "SLIDERSTUDIO_DATA_DIR": home}
                out = subprocess.run([sys.executable, __file__, "--child", variant], env=env, capture_output=True,
                                     text=True, check=True, timeout=TIMEOUT_S + 120).stdout
            row = json.loads(out.strip().splitlines()[-1])
            firsts.setdefault(variant, []).append(row.get("painted", float("nan")))
            print(f"| {variant} | {run} | {load:.1f} | {row['start_to_shown_s']} | {row.get('engine', '–')} | "
                  f"{row.get('model', '–')} | {row.get('step', '–')} | {row.get('painted', 'never')} | "
                  f"{row['threads']} |", flush=True)
    for variant, values in firsts.items():
        print(f"\n{variant}: first image painted {statistics.median(values):.1f} s after the window was shown "
              f"(median of {len(values)}; max {max(values):.1f} s)")


if __name__ == "__main__":
    main()
