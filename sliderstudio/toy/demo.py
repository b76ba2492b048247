"""`sliderstudio demo`: the whole flow on the bundled toy model, measured (SPEC §11).

Write a paired before/after project, train the slider on the CPU, render a strength sweep over
several prompts and seeds, check that strength 0 reproduces the base model exactly, and write
report/ (sweep.png, sweep.json, metrics.json) with the slider's measured quality. For the size
concept the demo then trains the same slider from prompts alone ("large" ↔ "small", toy.text_demo)
and reports it the same way under text-slider/report/.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np

from sliderstudio.kernel.events import Event, Log
from sliderstudio.engine.preview import PreviewRenderer
from sliderstudio.engine.project import load_project
from sliderstudio.engine.trainer import Trainer
from sliderstudio.toy.demo_project import DEMO_STEPS, concept_attribute, write_demo_project
from sliderstudio.toy.report import SweepItem, write_report
from sliderstudio.families.registry import get_family

SWEEP = [-1.0, -0.5, 0.0, 0.5, 1.0]
RENDER_STEPS = 20
GUIDANCE = 2.0


def sweep(renderer: PreviewRenderer, base: PreviewRenderer, prompts: list[str], seeds: list[int],
          steps: int = RENDER_STEPS) -> tuple[list[SweepItem], bool]:
    """Render every prompt × seed at each strength (one batched call each) and compare 0 with the base."""
    items, identical = [], True
    zero = SWEEP.index(0.0)
    for prompt in prompts:
        for seed in seeds:
            images = renderer.render(prompt, seed, SWEEP, steps, GUIDANCE)
            reference = base.render(prompt, seed, [0.0] * len(SWEEP), steps, GUIDANCE)[zero]
            identical &= bool(np.array_equal(np.asarray(images[zero]), np.asarray(reference)))
            items += [SweepItem(im, prompt, seed, s) for im, s in zip(images, SWEEP)]
    return items, identical


def run_demo(workdir: Path, concept: str = "size", steps: int | None = None, seeds: int = 2,
             prompts: int | None = None, sink: Callable[[Event], None] | None = None,
             text_slider: bool = True) -> dict:
    sink = sink or (lambda event: None)
    root = write_demo_project(Path(workdir), concept=concept, max_train_steps=steps or DEMO_STEPS)
    sink(Log(f"demo project written to {root}"))
    project = load_project(root)
    adapter = Trainer(project, sink).run()
    library = [p.prompt for p in project.prompts][: prompts or None]
    renderer = PreviewRenderer(get_family("sd1x"), project.config.pretrained_model_name_or_path, adapter)
    base = PreviewRenderer(get_family("sd1x"), project.config.pretrained_model_name_or_path)
    items, identical = sweep(renderer, base, library, list(range(seeds)))
    metrics = write_report(root / "report", items, concept_attribute(concept), base_identical=identical)
    avg = metrics["average"]
    sink(Log("slider metrics: " + json.dumps({k: avg[k] for k in sorted(avg)}, default=float)))
    sink(Log(f"report written to {root / 'report'} (strength 0 identical to base: {identical})"))
    if text_slider and concept == "size":  # the same concept from prompts alone ("large" ↔ "small")
        metrics["text_slider"] = demo_text_slider(root / "text-slider", steps, seeds, sink)
    return metrics


def demo_text_slider(workdir: Path, steps: int | None, seeds: int, sink: Callable[[Event], None]) -> dict:
    """Train and sweep the text-pair size slider (toy.text_demo) and report it beside the image slider."""
    from dataclasses import replace

    from sliderstudio.toy.text_demo import EVAL_SEEDS, TextSliderSettings, run_text_demo

    settings = replace(TextSliderSettings(), steps=steps) if steps else TextSliderSettings()
    metrics = run_text_demo(workdir, settings, sweep, sink, seeds=1 if seeds <= 1 else len(EVAL_SEEDS))
    sink(Log(f"text-slider report written to {workdir / 'report'} (strength 0 identical to base: "
             f"{metrics.get('base_identical')})"))
    return metrics
