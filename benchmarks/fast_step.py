"""The fast step on this CPU: ms per optimizer step and host reads per step, for a tree and its options.

Runs the real Trainer on a tiny project (SD 1.x UNet, or a tiny transformer family) and times the loop
between two points where the host has just read the loss (so both ends are synchronised, whatever
`logging_steps` is): the Progress event of the last warm-up step and that of the last step. Host reads
(`.item()`, `.tolist()`, `float(t)`, `.cpu()`, …) are counted during the loop, all of them and those made
by Slider Studio's own code; on the CPU the optimizer's reads of its host-side step counters are among
"all" (they are no device synchronisation on a GPU either).

  python benchmarks/fast_step.py --family sd1x --steps 40 --warmup 10 [--set KEY=VALUE ...]
  PYTHONPATH=/path/to/older/tree python benchmarks/fast_step.py ...   # the same for another version
Each invocation is one process and prints one JSON line.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.append(str(ROOT / "tests"))
READS = ("item", "tolist", "__float__", "__int__", "__bool__", "cpu", "numpy")


def build_model(family: str, folder: Path) -> Path:
    if family == "sd1x":
        from sliderstudio.families.tiny import build_tiny_sd

        return build_tiny_sd(folder, "sd1x")
    from sliderstudio.families.registry import get_family

    return get_family(family).build_tiny(folder)


def count_reads(counts: dict[str, int], live: list[bool]) -> None:
    import torch

    for name in READS:
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _original=original, **kwargs):
            if live[0]:
                caller = sys._getframe(1).f_code.co_filename
                counts["all"] += 1
                counts["ours"] += "sliderstudio" in caller
            return _original(self, *args, **kwargs)
        setattr(torch.Tensor, name, counted)


def measure(family: str, steps: int, warmup: int, threads: int, settings: dict) -> dict:
    import torch

    from conftest import make_project
    from sliderstudio.kernel.events import Progress
    from sliderstudio.engine.project import load_project
    from sliderstudio.engine.trainer import Trainer

    torch.set_num_threads(threads)
    work = Path(tempfile.mkdtemp(prefix="fast-step-"))
    try:
        model = build_model(family, work / "model")
        root = make_project(work / "p", model, family=family, pairs=6, neutral=4,
                            config={"max_train_steps": warmup + steps, **settings})
        marks: dict[int, float] = {}
        cpu: dict[int, float] = {}  # process CPU seconds (all threads): steadier than wall time on a busy machine
        counts, live = {"all": 0, "ours": 0}, [False]
        count_reads(counts, live)

        def sink(event) -> None:
            if isinstance(event, Progress):
                marks[event.step] = time.perf_counter()
                times = os.times()
                cpu[event.step] = times.user + times.system
                if event.step == warmup:
                    counts.update(all=0, ours=0)
                    live[0] = True

        Trainer(load_project(root), sink).run()
        elapsed = marks[warmup + steps] - marks[warmup]
        seconds = [json.loads(line)["seconds"]
                   for line in (root / "output" / "metrics.jsonl").read_text().splitlines()][warmup:]
        cpu_s = cpu[warmup + steps] - cpu[warmup]
        return {"family": family, "settings": settings, "steps": steps,
                "ms_per_step": round(1000 * elapsed / steps, 1), "cpu_ms_per_step": round(1000 * cpu_s / steps, 1),
                "median_row_ms": round(1000 * statistics.median(seconds), 1),
                "reads_per_step": round(counts["all"] / steps, 2),
                "our_reads_per_step": round(counts["ours"] / steps, 2), "threads": threads}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--family", default="sd1x")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a config key for the run")
    args = parser.parse_args()
    settings = {}
    for item in args.set:
        key, _, raw = item.partition("=")
        try:
            settings[key] = json.loads(raw)
        except ValueError:
            settings[key] = raw
    print(json.dumps(measure(args.family, args.steps, args.warmup, args.threads, settings)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
