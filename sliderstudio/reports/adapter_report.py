"""`sliderstudio report --lora F`: what an adapter's calibration says, and how good the slider is.

Why a report command: the calibrated range and polarity live in the adapter's metadata, where no
user looks; the quality figures (range, Spearman, smoothness, preservation, collapsed images) need
renders. This module reads the first, renders the second where there is a meter for it (the toy
world) or a project to calibrate on, and gives both as a dict (--json) and as text.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from sliderstudio.engine.calibration import CALIBRATION_KEY, POLARITY_KEY, RANGE_KEY
from sliderstudio.kernel.errors import InputError, ModelLoadError
from sliderstudio.toy.metrics import smoothness, spearman
from sliderstudio.families.registry import get_family

#: The quality sweep: the promised range in even steps.
QUALITY_STRENGTHS: tuple[float, ...] = (-1.0, -0.75, -0.5, -0.25, 0.0, 0.25, 0.5, 0.75, 1.0)
#: Tensor-name pieces of LoRA / LyCORIS files (diffusers, PEFT, kohya, LyCORIS algorithms).
ADAPTER_KEY_MARKS = ("lora", "lycoris", "hada_w", "lokr_w", "oft_", "dora_scale")


def read_adapter(path: Path) -> dict[str, Any]:
    """The adapter's metadata; InputError (exit 2, naming the file) for anything that is not an adapter."""
    from safetensors import safe_open

    from sliderstudio.adapters.adapter_io import read_metadata

    if not path.is_file():
        raise InputError("no such adapter file", file=path, key="--lora")
    meta = read_metadata(path)  # refuses other suffixes and unreadable files (ModelLoadError, exit 2)
    with safe_open(str(path), "pt") as fh:
        names = list(fh.keys())
    if not any(mark in name.lower() for name in names for mark in ADAPTER_KEY_MARKS):
        raise ModelLoadError(f"not a LoRA/LyCORIS adapter: none of its {len(names)} tensors has an adapter name",
                             file=path, key="--lora")
    return meta


def build_report(path: Path, project_dir: str | None = None, model: str | None = None, seeds: int = 2,
                 quality: bool = True) -> dict[str, Any]:
    """The report as a dict: file, calibration (or None), and the quality figures where measurable."""
    from sliderstudio.toy import is_toy

    meta = read_adapter(path)
    project = _load(project_dir) if project_dir else None
    base = model or (project.config.pretrained_model_name_or_path if project else None) or meta.get("base_model")
    report: dict[str, Any] = {
        "file": str(path), "family": meta.get("family"), "base_model": base, "step": meta.get("step"),
        "recommended_range": meta.get(RANGE_KEY), "polarity": meta.get(POLARITY_KEY),
        "calibration": meta.get(CALIBRATION_KEY), "quality": None, "quality_note": None,
    }
    if not quality:
        return report
    if base and is_toy(str(base)):
        report["quality"] = toy_quality(path, project, seeds, report["calibration"])
    elif project is not None:
        report["quality"] = generic_quality(path, project, str(base), meta.get("family"), seeds)
    else:
        report["quality_note"] = ("no quality figures: this adapter is not for the toy model; give --project P "
                                  "(its validation prompts are rendered and measured)")
    return report


def _load(project_dir: str) -> Any:
    from sliderstudio.engine.project import load_project

    return load_project(project_dir)


def _prompts(project: Any) -> list[str]:
    from sliderstudio.toy.demo_project import PROMPT_LIBRARY

    prompts = [p.prompt for p in project.validation_prompts()] if project is not None else []
    return prompts or list(PROMPT_LIBRARY.values())


def toy_quality(path: Path, project: Any, seeds: int, calibration: dict | None) -> dict[str, Any]:
    """Toy world: render the quality sweep and score it with the attribute meter (toy.report)."""
    from sliderstudio.engine.calibration import choose_attribute, render_sweeps
    from sliderstudio.engine.preview import PreviewRenderer
    from sliderstudio.toy import TOY_MODEL_ID
    from sliderstudio.toy.metrics import TOY_METER, measure_image
    from sliderstudio.toy.quality import DEFAULT_GUIDANCE, DEFAULT_STEPS
    from sliderstudio.toy.report import SweepItem, sweep_quality

    renderer = PreviewRenderer(get_family("sd1x"), TOY_MODEL_ID, path)
    sweeps = render_sweeps(lambda p, s, st: renderer.render(p, s, st, DEFAULT_STEPS, DEFAULT_GUIDANCE),
                           _prompts(project), list(range(seeds)), QUALITY_STRENGTHS)
    measure = (calibration or {}).get("measure", "")
    attribute = measure.split(":", 1)[1] if measure.startswith("attribute:") else \
        choose_attribute(TOY_METER, sweeps, [[measure_image(im) for im in sw.images] for sw in sweeps])
    items = [SweepItem(im, sw.prompt, sw.seed, s) for sw in sweeps for im, s in zip(sw.images, sw.strengths)]
    return {"kind": "toy", **sweep_quality(items, attribute)}


def generic_quality(path: Path, project: Any, model: str, family: str | None, seeds: int) -> dict[str, Any]:
    """Any model: calibrate now on the project's validation prompts; the figures inside [-1, 1]."""
    from dataclasses import replace

    from sliderstudio.engine.calibration_run import calibrate_file, settings_for

    if not project.validation_prompts():
        raise InputError("the project has no validation prompts to measure the slider on",
                         file=project.config_path, key="validation_prompt")
    settings = settings_for(project)
    settings = replace(settings, seeds=[settings.seeds[0] + k for k in range(seeds)])
    cal = calibrate_file(path, get_family(family or project.config.model_family), model, settings, project)
    return {"kind": "generic", "measure": cal.measure, "calibration": cal.to_dict(),
            **inner_figures(cal.to_dict())}


def inner_figures(cal: dict[str, Any]) -> dict[str, Any]:
    """Per sweep and overall range / Spearman / smoothness / broken renders of a calibration, inside [-1, 1]."""
    strengths = [p["strength"] for p in cal["curve"]]
    inner = [i for i, s in enumerate(strengths) if abs(s) <= 1.0]
    xs = [strengths[i] for i in inner]
    rows = []
    for sw in cal["sweeps"]:
        vals = [sw["response"][i] for i in inner]
        rows.append({"prompt": sw["prompt"], "seed": sw["seed"], "range": vals[-1] - vals[0],
                     "spearman": spearman(xs, vals), "smoothness": smoothness(vals),
                     "broken": [[xs[k], sw["broken"][i]] for k, i in enumerate(inner) if sw["broken"][i]]})
    return {"sweeps": rows, "average": {
        "n": len(rows), "range": float(np.mean([r["range"] for r in rows])),
        "spearman": float(np.mean([r["spearman"] for r in rows])),
        "min_spearman": float(min(r["spearman"] for r in rows)),
        "smoothness": float(np.mean([r["smoothness"] for r in rows])),
        "broken": int(sum(len(r["broken"]) for r in rows)), "images": len(rows) * len(inner)}}


# ----------------------------------------------------------------------------------- text

def format_report(report: dict[str, Any]) -> str:
    lines = [report["file"]]
    cal = report["calibration"]
    if cal is None:
        lines.append("no calibration in this adapter's metadata (trained before calibration existed, with "
                     "slider_calibration off, or without validation prompts)")
    else:
        lines += format_calibration(cal)
    quality = report["quality"]
    if quality and quality["kind"] == "toy":
        from sliderstudio.toy.report import format_quality

        lines += ["", format_quality(quality)]
    elif quality:
        lines += ["", "measured now on the project's validation prompts:", *format_calibration(quality["calibration"]),
                  "", *format_inner(quality)]
    elif report.get("quality_note"):
        lines += ["", report["quality_note"]]
    return "\n".join(lines)


def format_calibration(cal: dict[str, Any]) -> list[str]:
    """The range, why it ends, the polarity and the response curve table."""
    lo, hi = cal["recommended"]
    step = f" at step {cal['step']}" if cal.get("step") is not None else ""
    lines = [f"calibrated{step} on {len(cal['prompts'])} prompt(s) x {len(cal['seeds'])} seed(s), "
             f"{cal['images']} images, {cal['seconds']:.1f} s; measure: {cal['measure']}",
             f"recommended range: {lo:+g} … {hi:+g}"]
    for side in ("negative", "positive"):
        if cal["breaks"].get(side) is not None:
            lines.append(f"  {side} side: breaks down at {cal['breaks'][side]:+g}")
        elif cal["saturates"].get(side) is not None:
            lines.append(f"  {side} side: saturates (or turns back) at {cal['saturates'][side]:+g}")
        else:
            lines.append(f"  {side} side: still responding at the end of the sweep")
    lines.append(f"polarity: {cal['polarity']} ({polarity_text(cal)})")
    lines.append(f"{'strength':>8} {'response':>9} {'pixel':>7} {'latent':>7} {'broken':>6}")
    for p in cal["curve"]:
        latent = "-" if p["latent"] is None else f"{p['latent']:.3f}"
        reasons = f" ({', '.join(p['reasons'])})" if p["reasons"] else ""
        lines.append(f"{p['strength']:>+8.2f} {p['response']:>9.4f} {p['pixel']:>7.3f} {latent:>7} "
                     f"{p['broken']:>6}{reasons}")
    return lines


def polarity_text(cal: dict[str, Any]) -> str:
    verdicts = {"positive": "+1 adds what the positive buckets show",
                "reversed": "+1 moves AWAY from what the positive buckets show: use negative strengths",
                "unclear": "the measured difference between +1 and -1 is too small to tell",
                "unknown": "no evidence: measured during training from signed image buckets, or in the toy "
                           "world from the project's bucket images"}
    return verdicts.get(cal["polarity"], cal["polarity"])


def format_inner(quality: dict[str, Any]) -> list[str]:
    lines = [f"quality inside [-1, 1] ({quality['measure']}, signed):",
             f"{'prompt':<40} {'seed':>4} {'range':>7} {'spearman':>8} {'smooth':>6}  broken"]
    for r in quality["sweeps"]:
        broken = ", ".join(f"{s:+g} {why}" for s, why in r["broken"]) or "none"
        lines.append(f"{r['prompt'][:40]:<40} {r['seed']:>4} {r['range']:>7.3f} {r['spearman']:>8.3f} "
                     f"{r['smoothness']:>6.2f}  {broken}")
    a = quality["average"]
    lines.append(f"{'overall (' + str(a['n']) + ' sweeps)':<40} {'':>4} {a['range']:>7.3f} {a['spearman']:>8.3f} "
                 f"{a['smoothness']:>6.2f}  {a['broken']} of {a['images']} images")
    return lines
