"""The demo's text-pair size slider ("large" ↔ "small"): no images, only prompts (SPEC §2.6, §11).

Why its own project: the image slider's project trains on before/after pictures; this one trains the
same concept from the toy model's own words, so the demo shows both ways side by side. Training
prompts and the evaluation prompts are disjoint (kind, shape colour and background combinations),
so the sweep measures what the slider does to prompts it never saw.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from sliderstudio.kernel.events import Event, Log
from sliderstudio.engine.preview import PreviewRenderer
from sliderstudio.engine.project import load_project
from sliderstudio.engine.trainer import Trainer
from sliderstudio.toy.demo_project import project_config
from sliderstudio.toy.report import SweepItem, write_report
from sliderstudio.toy.world import plain_prompt
from sliderstudio.families.registry import get_family

#: (kind, shape colour, background) the slider trains on: every kind, colour and background at least once.
TRAIN_SUBJECTS: tuple[tuple[str, str, str], ...] = (
    ("circle", "red", "blue"), ("square", "green", "white"), ("triangle", "yellow", "black"),
    ("circle", "cyan", "gray"), ("square", "purple", "white"), ("triangle", "blue", "gray"),
    ("circle", "yellow", "black"), ("square", "red", "gray"),
)
#: Held-out prompts the demo sweeps (none of them is a training subject).
EVAL_SUBJECTS: tuple[tuple[str, str, str], ...] = (
    ("circle", "green", "black"), ("square", "yellow", "blue"), ("triangle", "red", "white"),
    ("circle", "purple", "white"), ("square", "cyan", "black"), ("triangle", "green", "blue"),
    ("circle", "blue", "white"), ("triangle", "purple", "gray"),
)
EVAL_SEEDS = (11, 12, 13)
#: Validation prompts (prompt_library.json): the trained subjects' plain prompts, so the calibration
#: after training measures the dial on what the slider was made for; the evaluation stays held out.
CALIBRATION_SUBJECTS: tuple[tuple[str, str, str], ...] = TRAIN_SUBJECTS[:2]


@dataclass(frozen=True)
class TextSliderSettings:
    """The tuned training settings of the demo's text slider (docs/TOY-WORLD.md has the measurements)."""

    steps: int = 150
    #: η 2.75 towards "large", 1.75 towards "small", with `target_preset` "default" (below). Measured on the
    #: 9-strength held-out check (docs/TRAINING.md, "The output layer out of the slider preset, and
    #: cross-attention for text pairs"), over training seeds 0-3, smoothness / range / collapsed images:
    #: η 3 / 2.25: 0.270 / 0.392 (0.378-0.406) / 2 (seed 1: the red triangle on black at −1); 2.75 / 2:
    #: 0.259 / 0.381 / 1; 2.75 / 1.75: 0.261 / 0.374 (0.360-0.390) / 0, and on seeds 4-5 too. With the
    #: visual-path slider preset η 3 / 2.25 was the most it took (range 0.349, seeds 0.339-0.357).
    guidance: float = 2.75
    #: η of the −direction (0: as `guidance`).
    negative_guidance: float = 1.75
    strength: float = 1.0
    samples: int = 4
    rank: int = 4
    learning_rate: float = 1e-3
    #: slider_target_preset: the family's ordinary LoRA targets, which include cross-attention. A text pair's
    #: concept is its words, and adapting how the words act reaches further at the same η (3 / 2.25, 4 seeds:
    #: range 0.378-0.406) than the visual-path slider preset (0.339-0.357), so a gentler η spans the range.
    target_preset: str = "default"
    #: The size words of the pair's positive and negative prompts (the neutral prompt has none).
    positive_word: str = "large"
    negative_word: str = "small"


def text_pairs(settings: TextSliderSettings) -> list[dict]:
    """slider_text_pairs: one pair per training subject, "large" vs "small" (the settings' words) around
    the plain prompt."""
    return [{"id": f"{colour}-{kind}-{background}",
             "positive": plain_prompt(kind, colour, background, settings.positive_word),
             "negative": plain_prompt(kind, colour, background, settings.negative_word),
             "neutral": plain_prompt(kind, colour, background),
             "guidance": settings.guidance, "strength": settings.strength, "samples": settings.samples,
             **({"negative_guidance": settings.negative_guidance} if settings.negative_guidance else {})}
            for kind, colour, background in TRAIN_SUBJECTS]


def write_text_project(workdir: Path, settings: TextSliderSettings = TextSliderSettings(), seed: int = 0) -> Path:
    """A project with no image buckets: config.json (slider_text_pairs), an empty dataloader list and
    prompt_library.json (validation prompts: the final adapter is calibrated on them)."""
    root = Path(workdir)
    root.mkdir(parents=True, exist_ok=True)
    config = project_config(seed, settings.steps)
    config.update(lora_rank=settings.rank, lora_alpha=settings.rank, learning_rate=settings.learning_rate,
                  slider_target_preset=settings.target_preset, validation_steps=0, checkpointing_steps=0,
                  slider_text_pairs=text_pairs(settings))
    (root / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    (root / "multidatabackend.json").write_text("[]\n")
    library = {f"{colour}_{kind}": plain_prompt(kind, colour, background) for kind, colour, background in CALIBRATION_SUBJECTS}
    (root / config["user_prompt_library"]).write_text(json.dumps(library, indent=2) + "\n")
    return root


def eval_prompts() -> list[str]:
    return [plain_prompt(*s) for s in EVAL_SUBJECTS]


def run_text_demo(workdir: Path, settings: TextSliderSettings = TextSliderSettings(),
                  sweep: Callable[..., tuple[list[SweepItem], bool]] | None = None,
                  sink: Callable[[Event], None] | None = None, prompts: int | None = None,
                  seeds: int | None = None) -> dict:
    """Train the text slider, sweep the held-out prompts × seeds, write report/ and return its metrics."""
    from sliderstudio.toy.demo import sweep as image_sweep

    sink = sink or (lambda event: None)
    root = write_text_project(workdir, settings)
    sink(Log(f"text-slider project written to {root}"))
    project = load_project(root)
    adapter = Trainer(project, sink).run()
    model = project.config.pretrained_model_name_or_path
    renderer, base = PreviewRenderer(get_family("sd1x"), model, adapter), PreviewRenderer(get_family("sd1x"), model)
    items, identical = (sweep or image_sweep)(renderer, base, eval_prompts()[: prompts or None],
                                              list(EVAL_SEEDS[: seeds or None]))
    metrics = write_report(root / "report", items, "area", base_identical=identical)
    avg = metrics["average"]
    sink(Log("text slider metrics: " + json.dumps({k: avg[k] for k in sorted(avg)}, default=float)))
    return metrics
