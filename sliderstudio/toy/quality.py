"""How well does the toy model draw what its caption says?

    python -m sliderstudio.toy.quality --model DIR [--n N] [--steps S] [--guidance G] [--out FILE]

Renders captions of held-out specs (drawn from a seed range the training script never uses)
and reads the result back with `sliderstudio.toy.metrics`: the fraction of samples
with the right shape colour, the right background colour and the right shape kind. The same
classifiers are first run on the ground-truth renders of those specs, which shows how much of
any error belongs to the classifier rather than the model (it should be ~100 %), and on those
renders passed through the model's VAE (the ceiling the latent space allows).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

from sliderstudio.toy.metrics import measure_image
from sliderstudio.toy.train_base import with_world
from sliderstudio.toy.world import WORLD, ShapeSpec, caption, random_specs, render

#: Held-out specs come from this seed; train_base draws its pool from its `--seed` (default 0).
HELD_OUT_SEED = 1_000_003
#: Recommended sampling settings for the toy model (leading-spacing DDIM, see train_base).
DEFAULT_STEPS = 20
DEFAULT_GUIDANCE = 2.0
RESOLUTION = 32


@dataclass(frozen=True)
class Accuracy:
    n: int
    shape_colour: float
    background: float
    kind: float

    def to_dict(self) -> dict:
        return {"n": self.n, "shape_colour": round(self.shape_colour, 4),
                "background": round(self.background, 4), "kind": round(self.kind, 4)}


def held_out_specs(n: int, seed: int = HELD_OUT_SEED, world: int = WORLD) -> list[ShapeSpec]:
    return random_specs(seed, n, world=world)


def model_world(model: Path) -> int:
    """The world version a toy model was last trained on (its captions are the ones it knows)."""
    log_file = Path(model) / "training_log.json"
    if not log_file.is_file():
        return WORLD
    log = with_world(json.loads(log_file.read_text()))
    return int(log["continued"]["world"]) if "continued" in log else int(log["world"])


def score(specs: list[ShapeSpec], images: list) -> Accuracy:
    """Fraction of images whose measured colours and kind match their spec."""
    ms = [measure_image(im) for im in images]
    n = len(specs)
    frac = lambda ok: sum(ok) / max(n, 1)  # noqa: E731
    return Accuracy(
        n=n,
        shape_colour=frac(m.shape_colour == s.colour for m, s in zip(ms, specs)),
        background=frac(m.background_colour == s.background for m, s in zip(ms, specs)),
        kind=frac(m.kind == s.kind for m, s in zip(ms, specs)),
    )


def load_pipeline(model: Path):
    """The toy model through the ordinary SD 1.x path, on CPU, without progress bars."""
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(str(model), local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def generate(pipe, prompts: list[str], seeds: list[int], steps: int = DEFAULT_STEPS,
             guidance: float = DEFAULT_GUIDANCE, batch: int = 25) -> list:
    """Render each prompt with its own seeded generator, in batches (one image per prompt)."""
    import torch

    images: list = []
    for i in range(0, len(prompts), batch):
        gens = [torch.Generator().manual_seed(s) for s in seeds[i:i + batch]]
        out = pipe(prompts[i:i + batch], height=RESOLUTION, width=RESOLUTION, num_inference_steps=steps,
                   guidance_scale=guidance, generator=gens)
        images += out.images
    return images


def vae_roundtrip(pipe, images: list) -> list:
    """Ground-truth renders encoded and decoded by the model's VAE: what the latent space can
    show at best, so the model's accuracy can be read against this ceiling."""
    import numpy as np
    import torch
    from PIL import Image

    x = torch.from_numpy(np.stack([np.asarray(im) for im in images])).permute(0, 3, 1, 2).float() / 127.5 - 1
    with torch.no_grad():
        rec = pipe.vae.decode(pipe.vae.encode(x).latent_dist.mean).sample
    arr = ((rec.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return [Image.fromarray(a) for a in arr]


def evaluate(model: Path, n: int = 100, steps: int = DEFAULT_STEPS, guidance: float = DEFAULT_GUIDANCE,
             save_grid: Path | None = None) -> dict:
    """Accuracy of the model on `n` held-out captions, plus the classifier's own accuracy."""
    t0 = time.perf_counter()
    world = model_world(model)
    specs = held_out_specs(n, world=world)
    truth_images = [render(s, RESOLUTION) for s in specs]
    truth = score(specs, truth_images)
    pipe = load_pipeline(model)
    vae_cap = score(specs, vae_roundtrip(pipe, truth_images))
    images = generate(pipe, [caption(s, world) for s in specs], list(range(n)), steps, guidance)
    acc = score(specs, images)
    if save_grid is not None:
        _save_grid(images, save_grid)
    return {"model": str(model), "world": world, **acc.to_dict(), "steps": steps, "guidance": guidance,
            "held_out_seed": HELD_OUT_SEED, "classifier_on_ground_truth": truth.to_dict(),
            "classifier_on_vae_roundtrip": vae_cap.to_dict(),
            "seconds": round(time.perf_counter() - t0, 1)}


def _save_grid(images: list, path: Path, cols: int = 10) -> None:
    """A contact sheet of the samples, for looking at failures."""
    from PIL import Image

    w, h = images[0].size
    rows = (len(images) + cols - 1) // cols
    sheet = Image.new("RGB", (cols * w, rows * h), (0, 0, 0))
    for i, im in enumerate(images):
        sheet.paste(im, ((i % cols) * w, (i // cols) * h))
    sheet.save(path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Accuracy of the toy model on held-out captions.")
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--steps", type=int, default=DEFAULT_STEPS)
    ap.add_argument("--guidance", type=float, default=DEFAULT_GUIDANCE)
    ap.add_argument("--grid", type=Path, help="also save the samples as a contact sheet PNG")
    ap.add_argument("--out", type=Path, help="write the JSON here too")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (more is slower on a busy CPU)")
    a = ap.parse_args(argv)
    import torch

    torch.set_num_threads(a.threads)
    result = evaluate(a.model, a.n, a.steps, a.guidance, a.grid)
    text = json.dumps(result, indent=2)
    print(text)
    if a.out:
        a.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
