"""Everything a run needs before its first step, in the order that fails fastest.

Bucket and output checks come before the model loads (bad input costs milliseconds, not minutes);
targets are resolved and checked before the adapter is attached; latents and captions are encoded
once into the on-disk cache.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from sliderstudio import __version__
from sliderstudio.core import adapters
from sliderstudio.core.buckets import (
    ScannedBucket, balance, bucket_resolution, load_image, require_trainable, scan_project,
)
from sliderstudio.core.caches import FeatureCache, model_key, transform_tag
from sliderstudio.core.errors import OutputError
from sliderstudio.core.project import Project
from sliderstudio.core.sampler import SliderSampler, sampler_buckets
from sliderstudio.core.slider_step import SliderStep, StepData
from sliderstudio.core.targets import preset_patterns, require_matches, resolve_on_module
from sliderstudio.families.base import Family
from sliderstudio.families.loading import load_pipeline, resolve_model_path
from sliderstudio.families.registry import get_family

Logger = Callable[[str, str], None]


@dataclass
class TrainingSession:
    family: Family
    pipe: Any
    denoiser: torch.nn.Module
    lora_config: Any
    sampler: SliderSampler
    step: SliderStep
    optimizer: torch.optim.Optimizer
    scheduler: Any
    accelerator: Any
    params: list[torch.nn.Parameter]
    total_steps: int
    targets: list[str]
    info: dict[str, Any] = field(default_factory=dict)

    def metadata(self, step: int) -> dict[str, Any]:
        return {**self.info, "step": step}


def check_output_dir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:
        raise OutputError(f"the output folder is not writable ({exc.strerror or exc})", file=path,
                          key="output_dir") from None


def pick_device(requested: str | None) -> torch.device:
    if requested:
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def weight_dtype(mixed_precision: str, device: torch.device) -> torch.dtype:
    if device.type == "cuda" and mixed_precision == "bf16":
        return torch.bfloat16
    if device.type == "cuda" and mixed_precision == "fp16":
        return torch.float16
    return torch.float32


def to_pixels(image: Any) -> torch.Tensor:
    arr = np.asarray(image, dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(arr).permute(2, 0, 1)


def encode_buckets(project: Project, family: Family, pipe: Any, scanned: list[ScannedBucket],
                   cache: FeatureCache, seed: int) -> StepData:
    latents, captions, sizes = {}, {}, {}
    for s in scanned:
        size = bucket_resolution(project, s.bucket)
        sizes[s.bucket.id] = size
        tag = transform_tag(size, s.bucket.crop, s.bucket.crop_style, seed)
        override = project.resolve(s.bucket.cache_dir_vae) if s.bucket.cache_dir_vae else None

        def encode(indices: list[int], s: ScannedBucket = s, size: int = size) -> list[torch.Tensor]:
            pixels = torch.stack([to_pixels(load_image(s.images[i], s.bucket, size, seed)) for i in indices])
            return list(family.encode_images(pipe, pixels))

        encoded = cache.latents([(r.path, tag) for r in s.images], encode, override)
        for i, (record, latent) in enumerate(zip(s.images, encoded)):
            latents[(s.bucket.id, i)] = latent
            captions[(s.bucket.id, i)] = record.caption
    prompts = sorted(set(captions.values()) | {""})
    conds = cache.conditioning(prompts, lambda ps: family.encode_prompts(pipe, ps))
    return StepData(latents, captions, conds, sizes)


def attach_assistant(project: Project, family: Family, pipe: Any, log: Logger) -> list[str]:
    """Load an assistant adapter frozen at its own fixed strength (never scaled, never saved)."""
    cfg = project.config
    if not cfg.assistant_lora_path or cfg.disable_assistant_lora:
        return []
    path = project.resolve(cfg.assistant_lora_path)
    from sliderstudio.core.adapter_io import read_metadata

    read_metadata(path)
    pipe.load_lora_weights(str(path), adapter_name=adapters.ASSISTANT)
    adapters.set_multiplier(family.denoiser(pipe), cfg.assistant_lora_strength, adapters.ASSISTANT)
    log(f"assistant adapter loaded from {path} at strength {cfg.assistant_lora_strength}", "info")
    return [adapters.ASSISTANT]


def make_optimizer(params: list[torch.nn.Parameter], project: Project, device: torch.device,
                   total: int) -> tuple[torch.optim.Optimizer, Any]:
    from diffusers.optimization import get_scheduler

    cfg = project.config
    fused = device.type == "cuda"
    optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.adam_weight_decay,
                                  fused=fused, foreach=None if fused else True)
    scheduler = get_scheduler(cfg.lr_scheduler, optimizer, num_warmup_steps=cfg.lr_warmup_steps,
                              num_training_steps=total)
    return optimizer, scheduler


def prepare_session(project: Project, log: Logger, device_name: str | None = None) -> TrainingSession:
    cfg = project.config
    for warning in project.warnings:
        log(warning, "warning")
    family = get_family(cfg.model_family, str(project.config_path))
    scanned = scan_project(project, deep=True)
    require_trainable(project, scanned)
    for s in scanned:
        for problem in s.problems:
            log(f"bucket '{s.bucket.id}': {problem}", "warning")
    bal = balance(project, scanned)
    if bal.warning:
        log(bal.warning, "warning")
    if any(s.bucket.role == "neutral" for s in scanned) and cfg.slider_neutral_mode == "off":
        log("slider_neutral_mode is 'off': neutral buckets are skipped", "warning")
    log("pairing: " + (f"paired mode ({bal.pairs} positive images with counterparts: "
                       + ", ".join(f"{p}↔{n}" for p, n in bal.pair_map.items()) + ")"
                       if bal.pairing else "unpaired sampling"), "info")
    check_output_dir(project.output_dir)
    location = resolve_model_path(cfg.pretrained_model_name_or_path)

    device = pick_device(device_name)
    dtype = weight_dtype(cfg.mixed_precision, device)
    log(f"loading {family.label} from {location} on {device}", "info")
    pipe = load_pipeline(family, cfg.pretrained_model_name_or_path, dtype, device)
    denoiser = family.denoiser(pipe)

    preset, patterns = preset_patterns(family, cfg)
    report = require_matches(resolve_on_module(denoiser, patterns, preset),
                             "peft_lora_target_modules" if preset == "custom" else "slider_lora_target")
    log(f"targets ({preset}): {report.total} modules\n{report.table()}", "info")

    frozen = attach_assistant(project, family, pipe, log)
    lora_config = adapters.attach_lora(denoiser, report.module_names, cfg.lora_rank, cfg.effective_alpha,
                                       cfg.lora_dropout, adapters.SLIDER, cfg.seed)
    adapters.activate(denoiser, adapters.SLIDER, frozen)
    params = adapters.adapter_parameters(denoiser, adapters.SLIDER)
    for p in params:
        p.data = p.data.float()
    if cfg.gradient_checkpointing and hasattr(denoiser, "enable_gradient_checkpointing"):
        denoiser.enable_gradient_checkpointing()
    denoiser.train()

    cache = FeatureCache(project.root / "cache", model_key(family.id, location))
    data = encode_buckets(project, family, pipe, scanned, cache, cfg.seed)
    log(cache.describe(), "info")

    sampler = SliderSampler(sampler_buckets(scanned, cfg.slider_neutral_mode), cfg.seed, cfg.train_batch_size,
                            bal.pair_map)
    total = cfg.max_train_steps or max(1, math.ceil(cfg.num_train_epochs * sampler.epoch_length()
                                                    / cfg.gradient_accumulation_steps))
    optimizer, scheduler = make_optimizer(params, project, device, total)
    from accelerate import Accelerator

    mp = cfg.mixed_precision if device.type == "cuda" else ("bf16" if cfg.mixed_precision == "bf16" else "no")
    accelerator = Accelerator(mixed_precision=mp, cpu=device.type == "cpu")
    step = SliderStep(family, denoiser, family.noise_schedule(pipe, cfg.prediction_type), data, cfg.seed, device,
                      dtype, cfg.caption_dropout_probability, cfg.noise_offset, accelerator.autocast)
    info = {"base_model": cfg.pretrained_model_name_or_path, "family": family.id, "targets": report.module_names,
            "preset": preset, "rank": cfg.lora_rank, "alpha": cfg.effective_alpha, "lora_type": cfg.lora_type,
            "strengths": sorted({b.slider_strength for b in project.active_buckets()}),
            "pairing": bal.pairing, "sliderstudio_version": __version__}
    log(f"training {total} steps, {sum(p.numel() for p in params)} adapter parameters", "info")
    return TrainingSession(family, pipe, denoiser, lora_config, sampler, step, optimizer, scheduler, accelerator,
                           params, total, report.module_names, info)
