"""`sliderstudio selfcheck`: every family, offline, on a tiny random model (issue: architecture matrix).

Per family: build a tiny model folder, resolve the slider preset (more than zero modules, none on a
text path), train a few slider steps from positive/negative/neutral buckets (finite loss, adapter
weights move, base weights do not), save, reload into a fresh pipeline through the family's loading
code, and render strengths 0, +1, −1 in one batch: 0 must equal the base render exactly, ±1 must
differ from it and from each other.
"""
from __future__ import annotations

import json
import math
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image

from sliderstudio.adapters.adapters import SLIDER, PerSampleScale, activate, attach_lora, lora_layers, slider_scale
from sliderstudio.engine.preview import PreviewRenderer
from sliderstudio.engine.project import load_project
from sliderstudio.adapters.targets import resolve_on_module, resolve_targets, text_path_modules
from sliderstudio.engine.trainer import Trainer
from sliderstudio.families.base import Family
from sliderstudio.families.registry import FAMILIES, get_family


@dataclass
class CheckResult:
    family: str
    targets: int = 0
    train: bool = False
    reload: bool = False
    preview: bool = False
    ok: bool = False
    seconds: float = 0.0
    error: str | None = None


def write_tiny_project(root: Path, model: Path, family: Family, lycoris: str | None = None) -> Path:
    """Two paired images per signed bucket and one neutral image, at the tiny model's size.

    `lycoris` names an algorithm: the run then uses the family's shipped LyCORIS preset for it.
    """
    size = int(family.extra.get("tiny_size", 64))
    for bucket, side, colour in (("pos", 0.8, (220, 40, 40)), ("neg", 0.3, (220, 40, 40)), ("neu", 0.5, (40, 40, 220))):
        folder = root / "data" / bucket
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(1 if bucket == "neu" else 2):
            arr = np.full((size, size, 3), 120 + 20 * i, dtype=np.uint8)
            half, c = int(size * side / 2), size // 2
            arr[c - half:c + half, c - half:c + half] = colour
            Image.fromarray(arr).save(folder / f"img{i}.png")
            (folder / f"img{i}.txt").write_text("a photo of a red square")
    config = {"model_family": family.id, "pretrained_model_name_or_path": str(model), "output_dir": "output",
              "lora_rank": 2, "lora_alpha": 2, "learning_rate": 5e-2, "max_train_steps": 3, "resolution": size,
              "seed": 0, "max_grad_norm": 0}
    if lycoris:
        from sliderstudio.config.lycoris_config import lycoris_preset

        (root / "lycoris.json").write_text(json.dumps(lycoris_preset(family.lycoris_group, lycoris)))
        config.update(lora_type="lycoris", lycoris_config="lycoris.json")
    (root / "config.json").write_text(json.dumps(config))
    buckets = [{"id": "pos", "instance_data_dir": "data/pos", "slider_strength": 1.0},
               {"id": "neg", "instance_data_dir": "data/neg", "slider_strength": -1.0},
               {"id": "neu", "instance_data_dir": "data/neu", "slider_strength": 0.0}]
    (root / "multidatabackend.json").write_text(json.dumps(buckets))
    return root


def _base_state(denoiser: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n.replace(".base_layer", ""): p.detach().clone() for n, p in denoiser.named_parameters()
            if ".lora_" not in n and "lycoris" not in n}


def check_training(root: Path, model: Path, family: Family) -> Path:
    events: list = []
    trainer = Trainer(load_project(root), events.append, device="cpu")
    adapter = trainer.run()
    losses = [json.loads(line)["loss"] for line in (root / "output" / "metrics.jsonl").read_text().splitlines()]
    if not losses or not all(math.isfinite(v) for v in losses):
        raise AssertionError(f"losses not finite: {losses}")
    denoiser = trainer.session.denoiser
    moved = [l for l in lora_layers(denoiser) if SLIDER in l.lora_B and l.lora_B[SLIDER].weight.abs().sum() > 0]
    if not moved and trainer.project.config.lora_type == "standard":
        raise AssertionError("adapter weights did not change")  # LyCORIS: the ±1 preview check shows it
    from sliderstudio.families.loading import load_pipeline

    fresh = _base_state(family.denoiser(load_pipeline(family, str(model))))
    trained = _base_state(denoiser)
    changed = [n for n, t in fresh.items() if n in trained and not torch.equal(t, trained[n])]
    if changed:
        raise AssertionError(f"base weights changed: {changed[:3]}")
    return adapter


def check_preview(family: Family, model: Path, adapter: Path) -> tuple[bool, bool]:
    renderer = PreviewRenderer(family, str(model), adapter)
    reloaded = renderer.adapter is not None and bool(renderer.adapter.parameters())
    size = int(family.extra.get("tiny_size", 64))
    images = [np.asarray(im, dtype=np.int16) for im in renderer.render("a photo of a red square", 0, [0.0, 1.0, -1.0],
                                                                       steps=2, guidance=1.0, size=size)]
    base = PreviewRenderer(family, str(model))
    reference = np.asarray(base.render("a photo of a red square", 0, [0.0] * 3, steps=2, guidance=1.0, size=size)[0],
                           dtype=np.int16)
    zero_is_base = np.array_equal(images[0], reference)
    signs_differ = not np.array_equal(images[1], reference) and not np.array_equal(images[2], reference) \
        and not np.array_equal(images[1], images[2])
    return reloaded, zero_is_base and signs_differ


def attach_random_slider(family: Family, pipe: Any, rank: int = 2, seed: int = 0) -> list[str]:
    """A slider adapter on the family's slider preset with random (non-zero) weights, for mechanics tests."""
    denoiser = family.denoiser(pipe)
    names = resolve_on_module(denoiser, family.presets["slider"], "slider").module_names
    attach_lora(denoiser, names, rank, rank, seed=seed)
    activate(denoiser, SLIDER)
    g = torch.Generator("cpu").manual_seed(seed)
    for layer in lora_layers(denoiser):
        if SLIDER in layer.lora_B:
            weight = layer.lora_B[SLIDER].weight
            weight.data.copy_(0.1 * torch.randn(weight.shape, generator=g))
    return names


def per_sample_scale_error(family: Family, pipe: Any, strengths: Sequence[float] = (0.0, 1.0, -0.5),
                           seed: int = 0) -> tuple[float, float]:
    """(max |batched − separate|, max |strength 1 − strength 0|) for one training-style forward.

    One batch with a per-sample slider scale (the preview's batched strengths) must equal a separate
    forward per sample at that strength; the second number shows the adapter has an effect at all.
    """
    size, n = int(family.extra.get("tiny_size", 64)), len(strengths)
    g = torch.Generator("cpu").manual_seed(seed)
    latents = family.encode_images(pipe, torch.rand((n, 3, size, size), generator=g) * 2 - 1)
    schedule = family.noise_schedule(pipe)
    timesteps = family.sample_timesteps(schedule, n, g)
    noisy, _ = family.noisy_and_target(schedule, latents, torch.randn(latents.shape, generator=g), timesteps)
    words = ["a photo of a red square", "a blue circle", "a small dog on the background"]
    conds = family.encode_prompts(pipe, [words[i % len(words)] for i in range(n)])
    denoiser = family.denoiser(pipe)
    device, dtype = denoiser.device, denoiser.dtype

    def forward(rows: slice, batch: list) -> torch.Tensor:
        cond = family.collate(batch, device, dtype, size)
        return family.predict(denoiser, noisy[rows].to(device, dtype), timesteps[rows].to(device), cond)

    with torch.no_grad():
        with PerSampleScale(denoiser, strengths):
            batched = forward(slice(0, n), conds)
        separate = []
        for i, strength in enumerate(strengths):
            with slider_scale(denoiser, strength):
                separate.append(forward(slice(i, i + 1), [conds[i]]))
        with slider_scale(denoiser, 1.0):
            on = forward(slice(0, 1), [conds[0]])
        with slider_scale(denoiser, 0.0):
            off = forward(slice(0, 1), [conds[0]])
    return (batched - torch.cat(separate)).abs().max().item(), (on - off).abs().max().item()


def check_family(family: Family, workdir: Path, lycoris: str | None = None) -> CheckResult:
    """The whole check for one family; with `lycoris` ('lokr', …) the slider is a LyCORIS network."""
    result = CheckResult(family.id)
    start = time.perf_counter()
    try:
        model = family.build_tiny(workdir / "model")
        report = resolve_targets(family, str(model), "slider")
        on_text = text_path_modules(report.module_names, family)
        if on_text:
            raise AssertionError(f"slider preset reaches the text path: {on_text[:3]}")
        result.targets = report.total
        adapter = check_training(write_tiny_project(workdir / "project", model, family, lycoris), model, family)
        result.train = True
        result.reload, result.preview = check_preview(family, model, adapter)
        result.ok = result.reload and result.preview
        if not result.ok:
            result.error = "reload failed" if not result.reload else "strength 0 ≠ base or ±1 not distinct"
    except Exception as exc:  # a family's failure is a row of the report, not a crash of the check
        result.error = f"{type(exc).__name__}: {exc}"
        result.error += "\n" + traceback.format_exc(limit=3) if not isinstance(exc, AssertionError) else ""
    result.seconds = round(time.perf_counter() - start, 2)
    return result


def run_checks(family: str = "all", lycoris: str | None = None) -> list[CheckResult]:
    families = list(FAMILIES.values()) if family == "all" else [get_family(family)]
    results = []
    for fam in families:
        with tempfile.TemporaryDirectory(prefix=f"selfcheck-{fam.id}-") as tmp:
            results.append(check_family(fam, Path(tmp), lycoris))
    return results


def main(family: str = "all", as_json: bool = False) -> int:
    results = run_checks(family)
    if as_json:
        print(json.dumps([{k: v for k, v in asdict(r).items() if k != "error" or v} for r in results], indent=2))
    else:
        print(f"{'family':<16}{'targets':>8}  train  reload  preview  ok   seconds")
        for r in results:
            mark = lambda b: "yes" if b else "no"
            print(f"{r.family:<16}{r.targets:>8}  {mark(r.train):<5}  {mark(r.reload):<6}  {mark(r.preview):<7}  "
                  f"{mark(r.ok):<3}  {r.seconds:>7.1f}")
            if r.error:
                print(f"    {r.error.splitlines()[0]}")
    return 0 if all(r.ok for r in results) else 1
