"""The toy model's own size dial, before any slider: how even can a size slider on it be?

    python benchmarks/base_size_dial.py                      # the shipped toy model
    python benchmarks/base_size_dial.py --model DIR          # another toy model folder

Why: a slider moves what the base model can draw. This renders the held-out prompts × seeds of
`toy/sweep_check.py` at the 9 strengths −1 … +1 with the *prompt embedding* moved from "a small …"
(−1) through the plain prompt (0) to "a large …" (+1), linearly, no adapter at all: the model's own
way from small to large. Its smoothness and range (the product's metric, `toy.metrics`) show
whether the model draws sizes as a continuum or jumps between clusters, which no slider trained on
it can hide; its centroid drift, how far the model itself moves a shape as it names it bigger.
Also prints the mean area per kind for the plain, "small" and "large" prompts at
strength 0. Prints one JSON object; ~30 s on 2 CPU threads.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _sized(prompt: str, word: str) -> str:
    return prompt.replace("a ", f"a {word} ", 1) if word else prompt


def measure(model: str, guidance: float, steps: int, words: tuple[str, str] = ("small", "large")) -> dict:
    import numpy as np
    import torch
    from diffusers import StableDiffusionPipeline

    from sliderstudio.kernel.resources import toy_model_dir
    from sliderstudio.toy.metrics import measure_image, smoothness, sweep_metrics
    from sliderstudio.toy.sweep_check import HELD_OUT_PROMPTS, HELD_OUT_SEEDS, STRENGTHS

    folder = toy_model_dir() if model == "sliderstudio:toy" else Path(model)
    pipe = StableDiffusionPipeline.from_pretrained(str(folder), local_files_only=True, safety_checker=None)
    pipe.set_progress_bar_config(disable=True)

    def embed(prompt: str) -> torch.Tensor:
        ids = pipe.tokenizer([prompt], padding="max_length", max_length=pipe.tokenizer.model_max_length,
                             return_tensors="pt").input_ids
        return pipe.text_encoder(ids)[0]

    lo, hi = words
    smooth, ranges, drift, areas = [], [], [], {w: {} for w in (lo, "", hi)}
    with torch.no_grad():
        empty = embed("")
        for prompt in HELD_OUT_PROMPTS:
            kind = prompt.split()[2]
            plain, small, large = embed(prompt), embed(_sized(prompt, lo)), embed(_sized(prompt, hi))
            rows = torch.cat([plain + s * ((large - plain) if s > 0 else (plain - small)) for s in STRENGTHS])
            ends = torch.cat([small, large])
            for seed in HELD_OUT_SEEDS:
                noise = torch.randn((1, 4, 8, 8), generator=torch.Generator().manual_seed(seed))
                images = pipe(prompt_embeds=torch.cat([rows, ends]), negative_prompt_embeds=empty.repeat(len(rows) + 2, 1, 1),
                              latents=noise.repeat(len(rows) + 2, 1, 1, 1), height=32, width=32,
                              num_inference_steps=steps, guidance_scale=guidance).images
                measures = [measure_image(im) for im in images]
                values = [m.area for m in measures]
                sweep = values[: len(STRENGTHS)]
                drift.append(sweep_metrics(STRENGTHS, measures[: len(STRENGTHS)]).preservation.centroid)
                smooth.append(smoothness(sweep))
                ranges.append(sweep[-1] - sweep[0])
                at_zero = sweep[list(STRENGTHS).index(0.0)]
                for word, value in ((lo, values[-2]), ("", at_zero), (hi, values[-1])):
                    areas[word].setdefault(kind, []).append(value)
    return {"model": str(folder), "words": list(words), "guidance": guidance, "steps": steps, "sweeps": len(smooth),
            "embedding_dial_smoothness": round(float(np.mean(smooth)), 4),
            "embedding_dial_range": round(float(np.mean(ranges)), 4),
            "embedding_dial_centroid": round(float(np.mean(drift)), 4),
            "mean_area": {word or "plain": {k: round(float(np.mean(v)), 4) for k, v in by_kind.items()}
                          for word, by_kind in areas.items()}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="sliderstudio:toy")
    ap.add_argument("--guidance", type=float, default=2.0)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--words", default="small:large", metavar="SMALL:LARGE",
                    help="the size words at strength -1 and +1 (default small:large)")
    a = ap.parse_args(argv)
    import torch

    torch.set_num_threads(a.threads)
    print(json.dumps(measure(a.model, a.guidance, a.steps, tuple(a.words.split(":"))), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
