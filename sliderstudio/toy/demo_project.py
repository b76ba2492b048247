"""Write a ready-to-train slider project in the toy world (used by `sliderstudio demo` and the app).

Why generated rather than shipped: the before/after pairs are cheap to draw, any seed gives a
fresh but reproducible dataset, and the folder is exactly what a user would build by hand:
two paired buckets (same file names, same colour/background/position, only the concept
differs), a neutral bucket for preservation, and SimpleTuner-style config files.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from sliderstudio.toy.world import (
    EVAL_SUBJECTS, SIZE_MAX, SIZE_MIN, ShapeSpec, caption, draw_centre, random_spec, render, subject,
)

#: Images are written at 64 px; the config trains at 32 (the engine resizes), as a user's
#: photos would be larger than the training resolution.
IMAGE_PX = 64
TRAIN_RESOLUTION = 32
#: Concept intensities drawn per pair (1 = the full before/after), each trained at that slider
#: strength, as Concept Sliders' image sliders train one folder per scale (docs/TRAINING.md).
LEVELS: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0)
#: The slider strength of the full-intensity pair, unless a concept says otherwise (before issue #16
#: the pair trained at ±0.5).
FULL_STRENGTH = 1.0
#: The size concept's: its full pair trains at ±0.6 and intensity m at strength 0.6·m^0.7, so the
#: dial's ±1 asks for more than the data's size change (trained at ±1 the slider stops at about two
#: thirds of its data's range) and its middle strengths for less (a slider that extrapolates is
#: steepest in the middle). On the world-6 toy model that reaches the area range the issue asks for
#: (≥ 0.35) with even steps (docs/TRAINING.md, "World 6").
SIZE_FULL_STRENGTH = 0.6
SIZE_STRENGTH_POWER = 0.7
#: Widths (fraction of the image) of the full pair's small and big shape. The toy model draws
#: widths 0.2-0.8; the area range a size slider can show is bounded by its data's (docs/TRAINING.md).
#: Chosen so that every pair's middle (its caption, `pair_caption`) is the plain prompt's size class,
#: where the held-out prompts' shapes sit at strength 0, and the data spans area 0.37: measured the
#: most even of the widths tried (docs/TRAINING.md, "The demo's pair captions"). On world 5's narrower
#: classes 99 % of the middles are still plain (0.6 % fall below width 0.545 or above 0.619 and say
#: "slightly small" / "slightly large"); wider pairs (0.20-0.30 / 0.74-0.80) were measured there too and
#: were less even (docs/TRAINING.md, "World 5").
SMALL_WIDTHS: tuple[float, float] = (0.26, 0.36)
BIG_WIDTHS: tuple[float, float] = (0.72, 0.80)
#: Optimizer steps (each a whole cycle, `slider_step_mode` "cycle") and learning rate of the demo's image
#: slider. 400 steps at 0.0015 travel as far as the 200 at 0.003 they replace, with half the noise in each
#: step: on the demo's data, every one of four training seeds met the issue-16 targets (smoothness
#: 0.21-0.26, range 0.36-0.39), where 200 at 0.003 spread from range 0.300 to a collapsed image at −1; other
#: data draws gain too but stay short of them (docs/TRAINING.md, "World 6"). The training costs ~20 s more.
DEMO_STEPS = 400
DEMO_LEARNING_RATE = 0.0015

PROMPT_LIBRARY: dict[str, str] = {
    "red_circle": "a red circle on a blue background",
    "yellow_square": "a yellow square on a black background",
    "green_triangle": "a green triangle on a white background",
    "purple_circle": "a purple circle on a gray background",
}


@dataclass(frozen=True)
class DemoConcept:
    """One slider concept of the toy world: bucket names, how to draw a pair, what to measure."""

    name: str
    positive: str
    negative: str
    attribute: str  # slider_metrics attribute that should rise with strength
    make_pairs: Callable[[random.Random, tuple[float, ...]], list[tuple[ShapeSpec, ShapeSpec]]]
    full_strength: float = FULL_STRENGTH  # the slider strength the full-intensity pair trains at
    strength_power: float = 1.0  # intensity m trains at full_strength · m^strength_power


def draw_spec(rng: random.Random, size_range: tuple[float, float] = (SIZE_MIN, SIZE_MAX)) -> ShapeSpec:
    """A random spec whose subject is not one the world keeps for evaluation (`world.EVAL_SUBJECTS`):
    redrawn until it is not, so a slider trained on demo data is always judged on prompts it never saw."""
    while True:
        spec = random_spec(rng, size_range)
        if subject(spec) not in EVAL_SUBJECTS:
            return spec


def _size_pairs(rng: random.Random, levels: tuple[float, ...],
                widths: tuple[tuple[float, float], tuple[float, float]] | None = None) -> list[tuple[ShapeSpec, ShapeSpec]]:
    """Big vs small twins at each intensity: same kind, colours and centre (chosen so the biggest fits).

    Intensity 1 is the full pair (`widths` = (small range, big range) of the width, default
    SMALL_WIDTHS / BIG_WIDTHS); intensity m lies at (1 ± m)/2 of the way in *area*, so equal
    strength steps ask for equal area steps.
    """
    small_range, big_range = widths or (SMALL_WIDTHS, BIG_WIDTHS)
    base = draw_spec(rng)
    big, small = rng.uniform(*big_range), rng.uniform(*small_range)
    cx, cy = draw_centre(rng, big, base.kind)

    def at(t: float) -> ShapeSpec:
        size = (small ** 2 + t * (big ** 2 - small ** 2)) ** 0.5
        return base.with_(size=round(size, 4), cx=round(cx, 4), cy=round(cy, 4))

    return [(at((1 + m) / 2), at((1 - m) / 2)) for m in levels]


def _brightness_pairs(rng: random.Random, levels: tuple[float, ...]) -> list[tuple[ShapeSpec, ShapeSpec]]:
    """Brighter vs darker shape colour (shade ±0.8 at intensity 1), all else equal. Backgrounds
    exclude dark blue, on which a darkened blue shape would vanish."""
    base = draw_spec(rng, size_range=(0.4, 0.7))
    while base.background == "blue":
        base = draw_spec(rng, size_range=(0.4, 0.7))
    return [(base.with_(shade=0.8 * m), base.with_(shade=-0.8 * m)) for m in levels]


CONCEPTS: dict[str, DemoConcept] = {
    "size": DemoConcept("size", "bigger", "smaller", "area", _size_pairs, SIZE_FULL_STRENGTH, SIZE_STRENGTH_POWER),
    "brightness": DemoConcept("brightness", "brighter", "darker", "brightness", _brightness_pairs),
}


def concept_attribute(concept: str) -> str:
    """The slider_metrics attribute to score a demo slider of this concept on."""
    return _concept(concept).attribute


def _concept(concept: str) -> DemoConcept:
    if concept not in CONCEPTS:
        raise ValueError(f"unknown demo concept {concept!r}; expected one of {sorted(CONCEPTS)}")
    return CONCEPTS[concept]


def pair_caption(pos: ShapeSpec, neg: ShapeSpec) -> str:
    """The one caption both halves of a pair share: the caption of the pair's *middle*, the image
    the slider should leave at strength 0 (the area half-way between the halves, shade half-way).

    Why the middle: the slider learns its push against the base model's prediction for this
    caption, so the caption decides where strength 0 sits. Measured (docs/TRAINING.md, "The demo's
    pair captions"): captioned "slightly small" the dial grew more than it shrank, captioned with no
    size word (the plain class, bigger than most pairs' middle) it shrank evenly and stalled as it
    grew, captioned by the middle it is the most even of the three. The text names neither half.
    """
    middle = ((pos.size ** 2 + neg.size ** 2) / 2) ** 0.5
    return caption(pos.with_(size=round(middle, 4), shade=(pos.shade + neg.shade) / 2))


def _write_image(folder: Path, stem: str, spec: ShapeSpec, text: str) -> None:
    render(spec, IMAGE_PX).save(folder / f"{stem}.png")
    (folder / f"{stem}.txt").write_text(text + "\n")


def _write_json(path: Path, data: object) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n")


def project_config(seed: int, max_train_steps: int) -> dict:
    """config.json in SimpleTuner key names; the model is the bundled toy model.

    Validation (with a calibrated checkpoint) every 100 steps, and no more often than halfway through the
    run: the final adapter is calibrated anyway, and each calibration is a sweep of renders, which the demo's
    400 steps should not multiply (one halfway, as 200 steps had at 100); short runs validate only at 100."""
    every = max(100, max_train_steps // 2)
    return {
        "model_family": "sd1x", "pretrained_model_name_or_path": "sliderstudio:toy",
        "data_backend_config": "multidatabackend.json", "output_dir": "output",
        "model_type": "lora", "lora_type": "standard", "lora_rank": 4, "lora_alpha": 4,
        "slider_lora_target": True, "learning_rate": DEMO_LEARNING_RATE, "lr_scheduler": "constant",
        "lr_warmup_steps": 0, "max_train_steps": max_train_steps, "train_batch_size": 1,
        "gradient_accumulation_steps": 1, "mixed_precision": "no", "seed": seed,
        "resolution": TRAIN_RESOLUTION, "validation_steps": every, "validation_num_inference_steps": 20,
        "validation_guidance": 2.0, "validation_seed": 0, "user_prompt_library": "prompt_library.json",
        "checkpointing_steps": every, "slider_pairing": "auto", "slider_neutral_mode": "preserve",
        "slider_step_mode": "cycle",  # +s, −s and the anchor in one forward per step (docs/TRAINING.md)
        # the anchor weighs 1 on the world-6 toy model: as even as 3 and reaching further (docs/TRAINING.md,
        # "World 6"); 3 had been the most even with the least drift on the world-2 and world-5 models
        "slider_preserve_weight": 1.0,
    }


def _bucket(bucket_id: str, strength: float) -> dict:
    return {"id": bucket_id, "type": "local", "instance_data_dir": f"data/{bucket_id}",
            "caption_strategy": "textfile", "resolution": TRAIN_RESOLUTION,
            "slider_strength": strength, "probability": 1.0, "repeats": 0}


def level_ids(concept: str, level: float) -> tuple[str, str]:
    """(positive, negative) bucket ids of one intensity: `bigger`/`smaller` at 1, `bigger_050` at 0.5."""
    c = _concept(concept)
    if level == 1.0:
        return c.positive, c.negative
    tag = f"_{round(level * 100):03d}"
    return c.positive + tag, c.negative + tag


def data_backends(concept: str, levels: tuple[float, ...] = LEVELS,
                  full_strength: float | None = None, strength_power: float | None = None) -> list[dict]:
    """multidatabackend.json: a positive (+m^p·full) and a negative (−m^p·full) bucket per intensity m,
    and the neutral (0) bucket. `full_strength` and `strength_power` None are the concept's own; the
    power p maps intensity to trained strength (1: linear; > 1 asks for more of the concept at mid
    strengths, < 1 for less: levers measured in docs/TRAINING.md)."""
    c = _concept(concept)
    full_strength = c.full_strength if full_strength is None else full_strength
    strength_power = c.strength_power if strength_power is None else strength_power
    if strength_power <= 0:
        raise ValueError(f"strength_power must be > 0, got {strength_power!r}")
    out = []
    for m in levels:
        pos, neg = level_ids(concept, m)
        strength = round(m ** strength_power * full_strength, 4)
        out += [_bucket(pos, strength), _bucket(neg, -strength)]
    return out + [_bucket("neutral", 0.0)]


def _check_levels(levels: tuple[float, ...]) -> None:
    if not levels or any(not 0 < m <= 1 for m in levels) or len(set(levels)) != len(levels):
        raise ValueError(f"levels must be distinct intensities in (0, 1], got {levels!r}")


def write_demo_project(workdir: Path, concept: str = "size", pairs: int = 6, seed: int = 0,
                       max_train_steps: int = DEMO_STEPS, levels: tuple[float, ...] = LEVELS,
                       full_strength: float | None = None, config: dict | None = None,
                       size_widths: tuple[tuple[float, float], tuple[float, float]] | None = None,
                       strength_power: float | None = None) -> Path:
    """Write the demo project into `workdir` (created if needed) and return that folder.

    Contents: per intensity in `levels`, data/<positive>[_NNN]/ and data/<negative>[_NNN]/ with
    `pairs` PNG+TXT files of identical names (size: bigger/smaller; brightness: brighter/darker; the
    same pair drawn at each intensity, as Concept Sliders' image folders), data/neutral/ with
    ordinary varied images, config.json (`config` overrides keys), multidatabackend.json and
    prompt_library.json. `size_widths` = ((small lo, hi), (big lo, hi)) overrides the size pair's
    widths; `full_strength` is the slider strength of the full pair and `strength_power` maps each
    intensity m to the trained strength full·m^p (`data_backends`; None: the concept's own).
    Deterministic for a given (concept, pairs, seed, levels, size_widths, strength_power).
    """
    c = _concept(concept)
    if pairs < 1:
        raise ValueError("pairs must be >= 1")
    make_pairs = c.make_pairs
    if size_widths is not None:
        if concept != "size":
            raise ValueError(f"size_widths applies to the size concept only, not {concept!r}")
        make_pairs = lambda r, lv: _size_pairs(r, lv, size_widths)  # noqa: E731
    _check_levels(tuple(levels))
    root = Path(workdir)
    rng = random.Random(f"sliderstudio-demo-{concept}-{seed}")
    ids = [level_ids(concept, m) for m in levels]
    dirs = {name: root / "data" / name for name in [*(i for pair in ids for i in pair), "neutral"]}
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    for i in range(pairs):
        for (pos_id, neg_id), (pos, neg) in zip(ids, make_pairs(rng, tuple(levels))):
            text = pair_caption(pos, neg)
            _write_image(dirs[pos_id], f"pair_{i:03d}", pos, text)
            _write_image(dirs[neg_id], f"pair_{i:03d}", neg, text)
    for i in range(max(4, pairs)):
        spec = draw_spec(rng)
        _write_image(dirs["neutral"], f"image_{i:03d}", spec, caption(spec))
    _write_json(root / "config.json", {**project_config(seed, max_train_steps), **(config or {})})
    _write_json(root / "multidatabackend.json", data_backends(concept, tuple(levels), full_strength, strength_power))
    _write_json(root / "prompt_library.json", PROMPT_LIBRARY)
    return root
