"""Render time of a composed preview on the toy model: the base, then 1, 2 and 3 sliders at once.

Each render is one prompt, 5 strengths of the first slider (one batch), 20 steps, the others held
at a strength; the median of 3 after a warm-up. Sliders are random LoRA adapters of the toy
demo's shape (rank 4 on every attention projection) and, for the last row, one LyCORIS (LoKr)
slider, whose per-module mixer runs the module chain once more per LyCORIS slider.

    .venv/bin/python benchmarks/composition_render.py [--threads 1]
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from sliderstudio.adapters import adapters
from sliderstudio.adapters.lycoris_adapter import attach_lycoris
from sliderstudio.config.lycoris_config import parse_lycoris_config
from sliderstudio.engine.preview import PreviewRenderer
from sliderstudio.adapters.slider_adapter import PeftSlider
from sliderstudio.families.loading import load_pipeline
from sliderstudio.families.registry import get_family
from sliderstudio.kernel.resources import toy_model_dir
from sliderstudio.toy import TOY_MODEL_ID

PROMPT = "a red circle on a blue background"
STRENGTHS = [-1.0, -0.5, 0.0, 0.5, 1.0]
ATTENTION = ("to_q", "to_k", "to_v", "to_out.0")


def random_lora(path: Path, seed: int) -> Path:
    family = get_family("sd1x")
    pipe = load_pipeline(family, str(toy_model_dir()))
    names = [n for n, _ in pipe.unet.named_modules() if n.endswith(ATTENTION)]
    config = adapters.attach_lora(pipe.unet, names, 4, 4.0, seed=seed)
    torch.manual_seed(seed)
    for p in adapters.adapter_parameters(pipe.unet):
        p.data.add_(torch.randn_like(p) * 0.05)
    path.parent.mkdir(parents=True, exist_ok=True)
    return PeftSlider(pipe.unet, "unet", config, type(pipe)).save(path, {"family": "sd1x"})


def random_lokr(path: Path, seed: int) -> Path:
    family = get_family("sd1x")
    pipe = load_pipeline(family, str(toy_model_dir()))
    spec = parse_lycoris_config({"algo": "lokr", "linear_dim": 4, "linear_alpha": 1,
                                 "apply_preset": {"target_module": list(ATTENTION)}}, "bench.json")
    slider, _ = attach_lycoris(pipe.unet, "unet", spec, ("slider", []), seed)
    for p in slider.parameters():
        p.data.add_(torch.randn_like(p) * 0.02)
    path.parent.mkdir(parents=True, exist_ok=True)
    return slider.save(path, {"family": "sd1x"})


def timed(renderer: PreviewRenderer, repeats: int = 3) -> float:
    renderer.render(PROMPT, 0, STRENGTHS, 20, 2.0)   # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        renderer.render(PROMPT, 0, STRENGTHS, 20, 2.0)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        loras = [random_lora(Path(tmp) / f"l{k}" / "a.safetensors", k) for k in range(3)]
        lokr = random_lokr(Path(tmp) / "k" / "k.safetensors", 9)
        rows = [("base (no slider)", None, []), ("1 LoRA", loras[0], []),
                ("2 LoRA", loras[0], [(loras[1], 0.5)]),
                ("3 LoRA", loras[0], [(loras[1], 0.5), (loras[2], -0.5)]),
                ("2 LoRA + 1 LoKr", loras[0], [(loras[1], 0.5), (lokr, -0.5)])]
        print(f"toy model ({TOY_MODEL_ID}), {len(STRENGTHS)} strengths in one batch, 20 steps, "
              f"{args.threads} thread(s); median of 3")
        for label, main_path, others in rows:
            renderer = PreviewRenderer(get_family("sd1x"), TOY_MODEL_ID, main_path)
            renderer.set_companions(others)
            print(f"{label:18s} {timed(renderer):6.2f} s")


if __name__ == "__main__":
    main()
