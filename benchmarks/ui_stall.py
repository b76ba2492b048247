"""How long the app's event loop stalls while the bundled toy model trains.

    python benchmarks/ui_stall.py [--steps 40] [--checkpoint-every 10] [--variant process] [--runs 10]

The whole app runs offscreen with the demo project open (the preview follows each checkpoint);
the Train button is pressed and a 10 ms QTimer on the UI thread records every gap between two
ticks until the run ends. Three ways of hosting the trainer, each in its own process (a fresh
interpreter, so one variant's imports and heap do not colour another):

  thread          the trainer runs on the worker's QThread inside the app, import heap left
                  to the garbage collector (how the app trained at first)
  thread+freeze   the same, with the import heap frozen out of the GC (`gc.freeze`)
  process         the app as it is: the worker supervises `sliderstudio train --events`

Prints one table row per run (`--runs N` repeats each chosen `--variant`, every run in a fresh
process): wall time, ticks, median / 99th percentile / maximum gap, the most CPU the UI thread
used between two ticks; then, per variant, the maximum gap of every run and how many exceeded
100 ms.
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
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("thread", "thread+freeze", "process")
LIMIT_MS = 100.0


def project_dir(workdir: Path, steps: int, every: int) -> Path:
    from sliderstudio.toy.demo_project import write_demo_project

    folder = write_demo_project(workdir / "demo", max_train_steps=steps)
    config_path = folder / "config.json"
    config = json.loads(config_path.read_text())
    config.update(checkpointing_steps=every, validation_steps=every)
    config_path.write_text(json.dumps(config, indent=2))
    return folder


def run_variant(variant: str, steps: int, every: int) -> dict:
    """The whole app (window, preview following checkpoints) with the Train button pressed."""
    from PySide6.QtCore import QTimer

    from sliderstudio.gui.app import make_application, wait_until_settled
    from sliderstudio.gui.workers import engine
    from tests.gui.heartbeat import Heartbeat     # the tests' probe; this script runs from the checkout

    app = make_application()
    if variant == "thread":
        engine.freeze_import_heap = lambda: 0
    if variant.startswith("thread"):
        host_trainer_on_the_worker_thread()
    from sliderstudio.gui.main_window import MainWindow

    with tempfile.TemporaryDirectory() as tmp:
        window = MainWindow()
        window.resize(1400, 900)
        window.show()
        window.project_vm.open(project_dir(Path(tmp), steps, every))
        wait_until_settled(window)
        recorder = Heartbeat()
        started = time.perf_counter()
        window.training_vm.stateChanged.connect(lambda state: state == "idle" and app.quit())
        QTimer.singleShot(0, window.training_pane.train_button.click)
        app.exec()                # the UI thread waits in Qt's loop, as in the app
        wall = time.perf_counter() - started
        recorder.stop()
        error = window.training_vm.last_error
        window.shutdown(store=False)
    if error:
        raise SystemExit(f"{variant}: training failed: {error}")
    gaps = sorted(recorder.gaps)
    return {"variant": variant, "wall_s": round(wall, 1), "ticks": len(gaps),
            "median_ms": round(statistics.median(gaps) * 1000, 1),
            "p99_ms": round(gaps[int(0.99 * (len(gaps) - 1))] * 1000, 1),
            "max_ms": round(gaps[-1] * 1000, 1), "ui_cpu_ms": round(recorder.max_busy * 1000, 1)}


def host_trainer_on_the_worker_thread() -> None:
    """The app's first design, for comparison: the worker runs the trainer itself, on its QThread."""
    from sliderstudio.engine.trainer import Trainer
    from sliderstudio.gui.workers.training import TrainingWorker

    TrainingWorker._supervise = lambda self: Trainer(self.project, self._sink).run()


def run_child(variant: str, steps: int, every: int) -> dict:
    """One run of one variant in a fresh interpreter, with its own settings and data folders."""
    with tempfile.TemporaryDirectory(prefix="ui-stall-") as settings:
        env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "PYTHONPATH": str(ROOT),
               "SLIDERSTUDIO_CONFIG_DIR": settings, "SLIDERSTUDIO_DATA_DIR": settings}
        out = subprocess.run([sys.executable, __file__, "--child", variant, "--steps", str(steps),
                              "--checkpoint-every", str(every)],
                             env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def summary(variant: str, rows: list[dict]) -> str:
    """Per variant: every run's maximum gap and how many went over the 100 ms bound."""
    gaps = [row["max_ms"] for row in rows]
    over = sum(gap > LIMIT_MS for gap in gaps)
    return (f"{variant}: max gap per run (ms) {', '.join(f'{g:.0f}' for g in gaps)}; "
            f"worst {max(gaps):.0f} ms; {over} of {len(gaps)} runs over {LIMIT_MS:.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--checkpoint-every", type=int, default=10)
    parser.add_argument("--variant", choices=VARIANTS, action="append",
                        help="which variants (default: all three); repeat the option for several")
    parser.add_argument("--runs", type=int, default=1, help="runs per variant, each in a fresh process")
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)   # one run, here, as JSON
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_variant(args.child, args.steps, args.checkpoint_every)))
        return
    print(f"toy model, {args.steps} steps, checkpoint + validation every {args.checkpoint_every}, "
          f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}\n")
    print("| variant | run | load | wall s | ticks | median gap ms | p99 gap ms | max gap ms | max UI-thread CPU ms |")
    print("|---|---|---|---|---|---|---|---|---|")
    results: dict[str, list[dict]] = {}
    for variant in args.variant or VARIANTS:
        for run in range(1, args.runs + 1):
            load = os.getloadavg()[0]
            row = run_child(variant, args.steps, args.checkpoint_every)
            results.setdefault(variant, []).append(row)
            print(f"| {row['variant']} | {run} | {load:.1f} | {row['wall_s']} | {row['ticks']} | {row['median_ms']} "
                  f"| {row['p99_ms']} | {row['max_ms']} | {row['ui_cpu_ms']} |", flush=True)
    print()
    for variant, rows in results.items():
        print(summary(variant, rows))


if __name__ == "__main__":
    main()
