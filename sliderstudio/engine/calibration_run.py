"""Running a calibration: inside the trainer (the live session) or on a saved adapter file (`report`).

Why apart from `calibration`: that module measures sweeps it is given (numpy only, testable on
images); this one knows how to get them: which prompts, seeds and steps the config asks for, how
the training session renders without disturbing training, whether the base is the toy model (so
the toy world's attribute meter applies), and where the bucket images are that say what "+1 adds
the concept" looks like.
"""
from __future__ import annotations

from contextlib import ExitStack, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from PIL import Image

from sliderstudio.engine.attribute_meters import AttributeMeter, meter_for
from sliderstudio.engine.calibration import (
    Calibration, bucket_direction, measure, render_sweeps, timed, to_metadata,
)
from sliderstudio.kernel.errors import TrainingStopped
from sliderstudio.families.base import Family

#: Toy world: at most this many images per signed bucket say which way the concept goes.
BUCKET_SAMPLE = 16
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


@dataclass(frozen=True)
class Settings:
    """What one calibration renders: prompts x seeds x strengths at `steps` denoising steps."""

    strengths: list[float]
    prompts: list[str]
    seeds: list[int]
    steps: int
    guidance: float
    negative_prompt: str | None = None
    batch: int = 0  # strengths per render call (0: all of a sweep in one)


def settings_for(project: Any) -> Settings:
    """The calibration the config asks for: the first validation prompts, seeds from validation_seed on."""
    cfg = project.config
    prompts = [p.prompt for p in project.validation_prompts()][: cfg.slider_calibration_prompts]
    seeds = [cfg.validation_seed + k for k in range(cfg.slider_calibration_seeds)]
    return Settings(list(cfg.slider_calibration_strengths), prompts, seeds,
                    cfg.slider_calibration_steps or cfg.validation_num_inference_steps, cfg.validation_guidance,
                    cfg.validation_negative_prompt, cfg.slider_calibration_batch)


def bucket_images(project: Any, sign: int, limit: int = BUCKET_SAMPLE) -> list[Image.Image]:
    """Up to `limit` images of the project's positive (sign > 0) or negative buckets (local folders)."""
    images: list[Image.Image] = []
    for bucket in project.active_buckets():
        if (bucket.slider_strength > 0) != (sign > 0) or bucket.slider_strength == 0:
            continue
        folder = project.bucket_dir(bucket)
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if folder.is_dir() else []
        for path in files[: limit - len(images)]:
            with Image.open(path) as im:
                images.append(im.convert("RGB"))
    return images


def expected_direction(meter: AttributeMeter, project: Any) -> dict[str, float]:
    """With a meter: how each attribute moves from the negative to the positive bucket images."""
    return bucket_direction(meter, bucket_images(project, +1), bucket_images(project, -1))


def calibrate_with(render: Callable[[str, int, list[float]], list[Any]], settings: Settings,
                   meter: AttributeMeter | None,
                   pipe: Any = None, expected: dict[str, float] | None = None,
                   loss_evidence: dict[str, Any] | None = None) -> Calibration:
    """Render the sweeps and measure them, timed."""
    def run() -> Calibration:
        sweeps = render_sweeps(render, settings.prompts, settings.seeds, settings.strengths, pipe, settings.batch)
        return measure(sweeps, meter=meter, expected=expected, loss_evidence=loss_evidence)

    return timed(run)


def summary(cal: Calibration) -> str:
    """One log line: the range, where it stops, the polarity and the cost."""
    lo, hi = cal.recommended

    def why(side: str) -> str:
        if cal.breaks[side] is not None:
            return f"breaks at {cal.breaks[side]:+g}"
        if cal.saturates[side] is not None:
            return f"saturates at {cal.saturates[side]:+g}"
        return "sweep end"

    return (f"calibration ({cal.measure}): recommended range {lo:+g} … {hi:+g} ({why('negative')}; "
            f"{why('positive')}), polarity {cal.polarity}; {cal.images} images in {cal.seconds:.1f} s")


# ----------------------------------------------------------------------------------- in the trainer

def calibrate_session(session: Any, project: Any, step: int, log: Callable[..., None]) -> dict[str, Any]:
    """The adapter metadata entries for the session's slider now, or {} (turned off, no validation
    prompts, or a failure: the adapter is the run's result, so calibration only ever warns)."""
    cfg = project.config
    if not cfg.slider_calibration:
        return {}
    settings = settings_for(project)
    if not settings.prompts:
        log("calibration skipped: the project has no validation prompts (validation_prompt or user_prompt_library)")
        return {}
    try:
        cal = _calibrate_live(session, project, settings)
    except (TrainingStopped, KeyboardInterrupt):
        raise
    except torch.OutOfMemoryError:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        log(f"calibration ran out of memory ({settings.batch or len(settings.strengths)} images per render call); "
            "the adapter is saved without it: lower slider_calibration_batch or turn slider_calibration off",
            "warning")
        return {}
    except Exception as exc:  # noqa: BLE001 - a failed measurement must not lose the trained adapter
        log(f"calibration failed, the adapter is saved without it: {type(exc).__name__}: {exc}", "warning")
        return {}
    cal.step = step
    log(summary(cal))
    return to_metadata(cal)


def _calibrate_live(session: Any, project: Any, settings: Settings) -> Calibration:
    """Render with the training session's own pipeline, slider in eval mode, as validation does."""
    from sliderstudio.adapters.adapters import ASSISTANT, slider_scale
    from sliderstudio.engine.polarity import loss_polarity
    from sliderstudio.engine.preview import render_strengths
    from sliderstudio.engine.text_polarity import text_loss_polarity
    from sliderstudio.engine.validation_render import validation_pipes

    cfg = project.config
    s = session
    _, size, pipe = next(iter(validation_pipes(s.render_pipe, cfg.validation_sizes[:1], cfg.validation_guidance_rescale)))
    meter = meter_for(cfg.pretrained_model_name_or_path)

    def render(prompt: str, seed: int, strengths: list[float]) -> list[Any]:
        return render_strengths(s.family, pipe, [prompt] * len(strengths), strengths, seed, settings.steps,
                                settings.guidance, size, 0.0, settings.negative_prompt, adapter=s.adapter)

    was_training = s.denoiser.training
    s.denoiser.eval()
    s.adapter.train(False)
    try:
        with ExitStack() as stack:
            stack.enter_context(torch.no_grad())
            compiled = getattr(s, "compiled", None)
            stack.enter_context(compiled.eager() if compiled is not None else nullcontext())
            stack.enter_context(slider_scale(s.family.denoiser(s.pipe), 0.0, ASSISTANT))
            stack.enter_context(s.encoders.needed() if s.encoders else nullcontext())
            # image buckets when there are any; a text-only slider: the same test on its text targets
            evidence = loss_polarity(s.step, s.sampler, 1.0) or text_loss_polarity(s.step, s.sampler)
            return calibrate_with(render, settings, meter, pipe,
                                  expected_direction(meter, project) if meter else None, evidence)
    finally:
        s.denoiser.train(was_training)
        s.adapter.train(was_training)


# ----------------------------------------------------------------------------------- on a file

def calibrate_file(adapter: Path, family: Family, model: str, settings: Settings, project: Any = None) -> Calibration:
    """Calibrate a saved adapter now (report --project): the preview's renderer, the project's buckets.

    No training session here, so the loss polarity test is not run; the toy world still gets the
    attribute polarity from the project's bucket images (where a meter is registered).
    """
    from sliderstudio.engine.preview import PreviewRenderer

    renderer = PreviewRenderer(family, model, adapter)
    meter = meter_for(model)

    def render(prompt: str, seed: int, strengths: list[float]) -> list[Any]:
        return renderer.render(prompt, seed, strengths, settings.steps, settings.guidance,
                               negative_prompt=settings.negative_prompt)

    expected = expected_direction(meter, project) if meter and project is not None else None
    return calibrate_with(render, settings, meter, renderer.pipe, expected)
