"""Step cost of a text-pair micro-batch against an image and a neutral (preserve) micro-batch.

    python benchmarks/text_step_cost.py [--threads N] [--repeats R]

The bundled toy model, a LoRA r4 slider on its slider preset, batch 1 at 32 px; each micro-batch is
loss + backward + AdamW step. Prints the median wall and CPU milliseconds per kind and repeat (CPU
time stays meaningful on a shared machine, where wall time mostly measures the other jobs).
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from sliderstudio.adapters import adapters
from sliderstudio.engine.sampler import MicroBatch
from sliderstudio.adapters.slider_adapter import PeftSlider
from sliderstudio.engine.slider_step import SliderStep, StepData
from sliderstudio.adapters.targets import resolve_on_module
from sliderstudio.config.text_pairs import TextPair
from sliderstudio.engine.text_slider import PairData, TextSlider
from sliderstudio.families.loading import load_pipeline
from sliderstudio.families.registry import get_family
from sliderstudio.kernel.resources import toy_model_dir

PROMPTS = ["a red circle on a blue background", "a large red circle on a blue background",
           "a small red circle on a blue background"]


def build_step() -> tuple[SliderStep, torch.optim.Optimizer]:
    family = get_family("sd1x")
    pipe = load_pipeline(family, str(toy_model_dir()), torch.float32, "cpu")
    unet = family.denoiser(pipe)
    report = resolve_on_module(unet, family.presets["slider"], "slider")
    config = adapters.attach_lora(unet, report.module_names, 4, 4.0, 0.0, adapters.SLIDER, 0)
    adapter = PeftSlider(unet, "unet", config, family.pipeline_class)
    adapter.activate([])
    unet.train()
    conds = dict(zip(PROMPTS, family.encode_prompts(pipe, PROMPTS)))
    latents = torch.randn(4, 4, 4, 4, generator=torch.Generator().manual_seed(0))
    data = StepData({("img", i): latents[i] for i in range(4)}, {("img", i): PROMPTS[0] for i in range(4)},
                    {PROMPTS[0]: conds[PROMPTS[0]]}, {"img": 32})
    step = SliderStep(family, unet, family.noise_schedule(pipe), data, 0, torch.device("cpu"), torch.float32,
                      adapter=adapter)
    pair = TextPair(positive=PROMPTS[1], negative=PROMPTS[2], neutral=PROMPTS[0])
    step.text = TextSlider({"text:t+": PairData(pair, conds[PROMPTS[0]], conds[PROMPTS[1]], conds[PROMPTS[2]], [],
                                                latents, 32)})
    return step, torch.optim.AdamW(adapter.parameters(), 1e-3)


def timed(step: SliderStep, optimizer: torch.optim.Optimizer, kind: str, n: int) -> tuple[float, float]:
    """Median (wall ms, CPU ms) of n micro-batches of one kind."""
    walls, cpus = [], []
    for i in range(n):
        mb = MicroBatch(i, 0, "text:t+" if kind == "text" else "img", "positive", 1.0, (i % 4,), ("x",),
                        preserve=kind == "neutral")
        wall, cpu = time.perf_counter(), time.process_time()
        step.loss(mb).backward()
        optimizer.step()
        optimizer.zero_grad()
        walls.append(1000 * (time.perf_counter() - wall))
        cpus.append(1000 * (time.process_time() - cpu))
    return round(sorted(walls)[n // 2], 1), round(sorted(cpus)[n // 2], 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--n", type=int, default=30)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    step, optimizer = build_step()
    kinds = ("image", "neutral", "text")
    for kind in kinds:
        timed(step, optimizer, kind, 5)  # warm-up
    result = {kind: [] for kind in kinds}
    for _ in range(args.repeats):
        for kind in kinds:
            result[kind].append(timed(step, optimizer, kind, args.n))
    print(json.dumps({"threads": args.threads, "median_ms_wall_cpu": result}))


if __name__ == "__main__":
    main()
