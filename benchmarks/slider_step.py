"""Slider-step speed and memory on the tiny SD model at 64 px on this CPU; start-up with cold/warm caches.

Each measurement runs in its own process so peak RSS belongs to that variant alone.
  python benchmarks/slider_step.py [--steps 60] [--threads 2]
Variants:
  cached    our step: latents and text conditioning come from the on-disk cache
  uncached  the same step, plus encoding the batch's image with the VAE and its caption with the
            text encoder every micro-batch (what a trainer without caches does)
  startup   Trainer set-up time (model load, targets, adapter, caches) on a first and a second run
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build(workdir: Path) -> Path:
    from conftest import make_project
    from sliderstudio.families.tiny import build_tiny_sd

    model = build_tiny_sd(workdir / "model", "sd1x")
    return make_project(workdir / "project", model, pairs=6, neutral=4, config={"max_train_steps": 10_000})


def measure(variant: str, workdir: Path, steps: int, threads: int) -> dict:
    import torch

    from sliderstudio.engine.buckets import load_image, scan_project
    from sliderstudio.engine.project import load_project
    from sliderstudio.engine.training_setup import prepare_session, to_pixels

    torch.set_num_threads(threads)
    project = load_project(workdir / "project")
    t0 = time.perf_counter()
    session = prepare_session(project, lambda msg, level: None)
    setup_s = time.perf_counter() - t0
    if variant == "startup":
        return {"variant": variant, "setup_s": round(setup_s, 3), "peak_rss_mb": round(peak_rss_mb(), 1)}
    scanned = {s.bucket.id: s for s in scan_project(project)}
    batches = session.sampler.iter_from(0)

    def one_step() -> None:
        mb = next(batches)
        if variant == "uncached":
            s = scanned[mb.bucket_id]
            pixels = torch.stack([to_pixels(load_image(s.images[i], s.bucket, 64, 0)) for i in mb.items])
            session.family.encode_images(session.pipe, pixels)
            session.family.encode_prompts(session.pipe, [s.images[i].caption for i in mb.items])
        loss = session.step.loss(mb)
        loss.backward()
        session.optimizer.step()
        session.optimizer.zero_grad(set_to_none=True)

    for _ in range(5):
        one_step()
    t0 = time.perf_counter()
    for _ in range(steps):
        one_step()
    elapsed = time.perf_counter() - t0
    return {"variant": variant, "steps_per_s": round(steps / elapsed, 2), "ms_per_step": round(1000 * elapsed / steps, 1),
            "setup_s": round(setup_s, 3), "peak_rss_mb": round(peak_rss_mb(), 1)}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", nargs=2, metavar=("VARIANT", "WORKDIR"))
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child[0], Path(args.child[1]), args.steps, args.threads)))
        return 0
    workdir = Path(tempfile.mkdtemp(prefix="slider-bench-"))
    build(workdir)
    rows = []
    for variant in ("startup", "startup", "cached", "uncached"):
        out = subprocess.run([sys.executable, __file__, "--child", variant, str(workdir), "--steps", str(args.steps),
                              "--threads", str(args.threads)], capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    rows[0]["variant"], rows[1]["variant"] = "startup (cold cache)", "startup (warm cache)"
    print(f"tiny SD 1.x UNet (32, 64), 64 px, batch 1, LoRA r2 on 28 slider modules, {args.threads} threads")
    print(f"{'variant':<22} {'steps/s':>8} {'ms/step':>8} {'set-up s':>9} {'peak RSS MB':>12}")
    for r in rows:
        print(f"{r['variant']:<22} {r.get('steps_per_s', '-'):>8} {r.get('ms_per_step', '-'):>8} "
              f"{r['setup_s']:>9} {r['peak_rss_mb']:>12}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
