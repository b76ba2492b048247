"""LoRA vs LyCORIS on the tiny SD 1.x model: slider-step time, adapter size, saved file size, preview time.

  python benchmarks/adapter_step.py [--steps 30] [--threads 2] [--rounds 3]
Every variant trains on the same project (the family's 28 slider modules, 64 px, batch 1). Steps are
timed in rounds that alternate the variants, so a busy machine slows all of them alike; the median
round is reported.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

VARIANTS = {
    "lora r4": {"lora_rank": 4, "lora_alpha": 4},
    "lycoris lokr": {"algo": "lokr", "linear_dim": 4, "linear_alpha": 1, "factor": 4},
    "lycoris locon": {"algo": "locon", "linear_dim": 4, "linear_alpha": 4},
    "lycoris loha": {"algo": "loha", "linear_dim": 4, "linear_alpha": 4},
    "lycoris full": {"algo": "full"},
}


def project_for(workdir: Path, model: Path, name: str, spec: dict) -> Path:
    from conftest import make_project

    root = workdir / name.replace(" ", "-")
    if "algo" in spec:
        make_project(root, model, pairs=6, neutral=4, config={"lora_type": "lycoris", "lycoris_config": "l.json",
                                                              "max_train_steps": 10_000})
        (root / "l.json").write_text(json.dumps(spec))
    else:
        make_project(root, model, pairs=6, neutral=4, config={"max_train_steps": 10_000, **spec})
    return root


def main() -> int:
    import torch

    from sliderstudio.engine.preview import render_strengths
    from sliderstudio.engine.project import load_project
    from sliderstudio.engine.training_setup import prepare_session
    from sliderstudio.families.tiny import build_tiny_sd

    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    workdir = Path(tempfile.mkdtemp(prefix="adapter-bench-"))
    model = build_tiny_sd(workdir / "model", "sd1x")
    sessions = {name: prepare_session(load_project(project_for(workdir, model, name, spec)), lambda m, l: None)
                for name, spec in VARIANTS.items()}
    iters = {name: s.sampler.iter_from(0) for name, s in sessions.items()}

    def one_step(name: str) -> None:
        s = sessions[name]
        s.step.loss(next(iters[name])).backward()
        s.optimizer.step()
        s.optimizer.zero_grad(set_to_none=True)

    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for name in VARIANTS:
        for _ in range(3):
            one_step(name)
    for _ in range(args.rounds):
        for name in VARIANTS:
            t0 = time.perf_counter()
            for _ in range(args.steps):
                one_step(name)
            times[name].append(1000 * (time.perf_counter() - t0) / args.steps)
    print(f"tiny SD 1.x, 64 px, batch 1, slider preset (28 modules), {args.threads} threads, "
          f"median of {args.rounds} rounds × {args.steps} steps")
    print(f"{'variant':<15} {'ms/step':>8} {'params':>9} {'file KB':>8} {'preview 5 strengths s':>22}")
    for name, s in sessions.items():
        path = s.adapter.save(workdir / name.replace(" ", "-") / "out.safetensors", s.metadata(0))
        s.adapter.train(False)
        t0 = time.perf_counter()
        with torch.no_grad():
            render_strengths(s.family, s.pipe, ["a red square"] * 5, [-1, -0.5, 0, 0.5, 1], 0, 4, 2.0, 64,
                             adapter=s.adapter)
        preview = time.perf_counter() - t0
        params = sum(p.numel() for p in s.params)
        print(f"{name:<15} {statistics.median(times[name]):>8.1f} {params:>9} {path.stat().st_size / 1024:>8.1f} "
              f"{preview:>22.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
