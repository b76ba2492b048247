"""Everything a run needs before its first step, in the order that fails fastest.

Bucket and output checks come before the model loads (bad input costs milliseconds, not minutes);
targets are resolved and checked before the adapter is attached; latents and captions are encoded
once into the on-disk cache.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch

from sliderstudio import __version__
from sliderstudio.engine.block_offload import BlockOffload, offload_for_training, require_offloadable
from sliderstudio.kernel.build_lock import BUILD_LOCK
from sliderstudio.adapters import adapters
from sliderstudio.engine.buckets import (
    ScannedBucket, assign_targets, balance, bucket_resolution, describe_targets, load_image, require_trainable,
    scan_project,
)
from sliderstudio.engine.caches import FeatureCache, model_key
from sliderstudio.config.dataloader_entries import text_cache_dir
from sliderstudio.engine.sized_encoding import encode_by_size, image_size, image_tags
from sliderstudio.engine.encoder_residency import EncoderResidency, encoder_modules, place_pipeline
from sliderstudio.kernel.errors import OutputError
from sliderstudio.engine.face_crops import assign_faces
from sliderstudio.engine.precision_check import precision_warning
from sliderstudio.engine.project import Project
from sliderstudio.engine.quantise import loading_config, quantise_base, require_runnable
from sliderstudio.config.attention_backend import AttentionKernel, attention_for
from sliderstudio.engine.regional_compile import CompiledDenoiser, check_compile_options, compile_denoiser
from sliderstudio.engine.run_checks import check_run
from sliderstudio.engine.sampler import SliderSampler, sampler_buckets
from sliderstudio.adapters.slider_adapter import PeftSlider, SliderAdapter
from sliderstudio.engine.slider_step import SliderStep, StepData
from sliderstudio.config.text_pairs import active_pairs
from sliderstudio.engine.sampler import text_sampler_entries
from sliderstudio.engine.text_slider import TextSlider, prepare_text_slider
from sliderstudio.engine.snr_weighting import MinSnrWeight
from sliderstudio.engine.timestep_bias import TimestepBias
from sliderstudio.adapters.targets import (
    TargetReport, preset_patterns, require_matches, resolve_on_module, text_path_modules,
)
from sliderstudio.families.base import Family
from sliderstudio.families.detect import config_family
from sliderstudio.families.loading import load_pipeline, resolve_model_path
from sliderstudio.families.registry import get_family

if TYPE_CHECKING:
    from sliderstudio.adapters.controlnet import ControlInputs

Logger = Callable[[str, str], None]


@dataclass
class TrainingSession:
    family: Family
    pipe: Any
    denoiser: torch.nn.Module  # what the step calls: the family's denoiser, or UNet + ControlNet
    adapter: SliderAdapter
    sampler: SliderSampler
    step: SliderStep
    optimizer: torch.optim.Optimizer
    scheduler: Any
    accelerator: Any
    params: list[torch.nn.Parameter]
    total_steps: int
    targets: list[str]
    info: dict[str, Any] = field(default_factory=dict)
    render_pipe: Any = None  # what validation renders with (a ControlNet pipeline for ControlNet sliders)
    encoders: EncoderResidency | None = None  # text encoders + VAE encoder: off the device after caching
    compiled: CompiledDenoiser = field(default_factory=CompiledDenoiser)  # torch.compile'd blocks (dynamo_*)
    attention: AttentionKernel | None = None  # the SDPA kernel chain (attention_mechanism)
    offload: BlockOffload | None = None  # the denoiser's blocks streamed from CPU memory (offload_blocks)
    fsdp: Any = None  # engine.fsdp.ShardReport when the frozen denoiser is sharded over the processes (fsdp_enable)

    @property
    def lora_config(self) -> Any:
        return getattr(self.adapter, "lora_config", None)

    def metadata(self, step: int) -> dict[str, Any]:
        return {**self.info, "step": step}


def check_output_dir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test-{os.getpid()}"  # one per process: several may start at once
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:
        raise OutputError(f"the output folder is not writable ({exc.strerror or exc})", file=path,
                          key="output_dir") from None


def pick_device(requested: str | None) -> torch.device:
    from sliderstudio.engine.distributed import current_ranks

    ranks = current_ranks()
    if requested:
        device = torch.device(requested)
    else:
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if ranks.distributed and device.type == "cuda":  # one GPU per process (engine.distributed)
        return torch.device("cuda", ranks.local_rank)
    return device


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
                   cache: FeatureCache, seed: int, control_inputs: ControlInputs | None = None) -> StepData:
    latents, captions, sizes, item_sizes = {}, {}, {}, {}
    control: dict[tuple[str, int], torch.Tensor] | None = {} if control_inputs is not None else None
    for s in scanned:
        size = bucket_resolution(project, s.bucket)
        sizes[s.bucket.id] = size
        tags = image_tags(s, size, seed)
        override = project.resolve(s.bucket.cache_dir_vae) if s.bucket.cache_dir_vae else None

        def encode(indices: list[int], s: ScannedBucket = s, size: int = size) -> list[torch.Tensor]:
            return encode_by_size(indices, lambda i: image_size(s, i, size),
                                  lambda i: to_pixels(load_image(s.images[i], s.bucket, image_size(s, i, size), seed,
                                                                s.focus_at(i))),
                                  lambda pixels: family.encode_images(pipe, pixels))

        encoded = cache.latents(list(zip((r.path for r in s.images), tags)), encode, override)
        for i, (record, latent) in enumerate(zip(s.images, encoded)):
            latents[(s.bucket.id, i)] = latent
            captions[(s.bucket.id, i)] = record.variants
            item_sizes[(s.bucket.id, i)] = image_size(s, i, size)
        if control is not None:
            control.update(encode_control(s, control_inputs, cache, size, seed, tags, override))
    prompts = sorted({line for lines in captions.values() for line in lines} | {""})
    text_dir = text_cache_dir(project.buckets)
    conds = cache.conditioning(prompts, lambda ps: family.encode_prompts(pipe, ps),
                               project.resolve(text_dir) if text_dir else None)
    return StepData(latents, captions, conds, sizes, control, item_sizes)


def caches_complete(project: Project, scanned: list[ScannedBucket], cache: FeatureCache, seed: int) -> bool:
    """Whether encode_buckets would encode nothing: every latent and caption already cached (same keys)."""
    captions: set[str] = {""}
    for s in scanned:
        size = bucket_resolution(project, s.bucket)
        override = project.resolve(s.bucket.cache_dir_vae) if s.bucket.cache_dir_vae else None
        if not cache.has_latents(list(zip((r.path for r in s.images), image_tags(s, size, seed))), override):
            return False
        captions.update(line for r in s.images for line in r.variants)
    text_dir = text_cache_dir(project.buckets)
    return cache.has_conditioning(sorted(captions), project.resolve(text_dir) if text_dir else None)


def encode_control(s: ScannedBucket, inputs: ControlInputs, cache: FeatureCache, size: int,
                   seed: int, tags: list[str], override: Path | None) -> dict[tuple[str, int], torch.Tensor]:
    """ControlNet conditioning, cropped like its images, in the family's representation, cached like latents."""
    from sliderstudio.engine.buckets import ImageRecord

    paths = [inputs.files[(s.bucket.id, i)] for i in range(len(s.images))]

    def load(indices: list[int]) -> list[torch.Tensor]:
        return encode_by_size(indices, lambda i: image_size(s, i, size),
                              lambda i: to_pixels(load_image(ImageRecord(paths[i], paths[i].stem, ""), s.bucket,
                                                             image_size(s, i, size), seed, s.focus_at(i))),
                              inputs.encode)

    images = cache.latents(list(zip(paths, tags)), load, override, kind=inputs.kind)
    return {(s.bucket.id, i): image for i, image in enumerate(images)}


def attach_assistant(project: Project, family: Family, pipe: Any, log: Logger) -> list[str]:
    """Load an assistant adapter frozen at its own fixed strength (never scaled, never saved)."""
    cfg = project.config
    if not cfg.assistant_lora_path or cfg.disable_assistant_lora:
        hint = family.assistant_hint(cfg.model_flavour)
        if hint and not cfg.disable_assistant_lora:
            log(hint, "warning")
        return []
    path = project.resolve(cfg.assistant_lora_path)
    from sliderstudio.adapters.adapter_io import read_metadata

    read_metadata(path)
    with BUILD_LOCK:
        pipe.load_lora_weights(str(path), adapter_name=adapters.ASSISTANT)
    adapters.set_multiplier(family.denoiser(pipe), cfg.assistant_lora_strength, adapters.ASSISTANT)
    log(f"assistant adapter loaded from {path} at strength {cfg.assistant_lora_strength}", "info")
    return [adapters.ASSISTANT]


def make_optimizer(params: list[torch.nn.Parameter], project: Project, device: torch.device,
                   total: int) -> tuple[torch.optim.Optimizer, Any]:
    """SimpleTuner's optimizer / lr_scheduler names and settings (config.optimizers, config.lr_schedule)."""
    from sliderstudio.config.lr_schedule import build_scheduler
    from sliderstudio.config.optimizers import build_optimizer

    optimizer = build_optimizer(params, project.config, device, str(project.config_path))
    return optimizer, build_scheduler(optimizer, project.config, total)


def apply_vae_options(pipe: Any, cfg: Any, log: Logger) -> None:
    """vae_enable_tiling / vae_enable_slicing on the pipeline's VAE: used for encoding and for rendering."""
    vae = getattr(pipe, "vae", None)
    for flag, method in (("vae_enable_tiling", "enable_tiling"), ("vae_enable_slicing", "enable_slicing")):
        if not getattr(cfg, flag):
            continue
        if vae is not None and hasattr(vae, method):
            getattr(vae, method)()
        else:
            log(f"{flag}: this model's VAE ({type(vae).__name__}) has no {method}(); ignored", "warning")


def log_loss_weighting(step: SliderStep, snr_gamma: float | None, log: Logger) -> None:
    """Say where the timesteps go and how they weigh, when SimpleTuner's keys change either."""
    if step.timestep_bias is not None:
        log(step.timestep_bias.describe(), "info")
    if step.snr_weight is not None:
        log(step.snr_weight.describe(), "info")
    elif snr_gamma is not None:
        log(f"snr_gamma {snr_gamma:g} is not applied: min-SNR weighting needs a DDPM-style schedule (ε- or "
            "v-prediction), and this family's schedule has no ᾱ table (flow matching or a noise ratio); every "
            "timestep weighs the same", "warning")


def prepare_session(project: Project, log: Logger, device_name: str | None = None) -> TrainingSession:
    cfg = project.config
    for note in project.key_notes:
        if note.kind == "mapped":
            log(str(note), "info")
    for warning in project.warnings:
        log(warning, "warning")
    family_id, family_note = config_family(cfg, str(project.config_path))  # the files say which family
    family = get_family(family_id, str(project.config_path))
    if family_note:
        log(family_note, "info")
    scanned = scan_project(project, deep=True, log=log)
    require_trainable(project, scanned)
    for warning in check_run(project, scanned):
        log(warning, "warning")
    for s in scanned:
        for problem in s.problems:
            log(f"bucket '{s.bucket.id}': {problem}", "warning")
    bal = balance(project, scanned)
    if bal.warning:
        log(bal.warning, "warning")
    assign_targets(project, scanned, bal.pair_map, family.size_alignment)
    assign_faces(project, scanned, bal.pair_map, log)  # crop_style face: one face centre per pair
    log("aspect buckets: " + describe_targets(scanned), "info")
    if any(s.bucket.role == "neutral" for s in scanned) and cfg.slider_neutral_mode == "off":
        log("slider_neutral_mode is 'off': neutral buckets are skipped", "warning")
    log("pairing: " + (f"paired mode ({bal.pairs} positive images with counterparts: "
                       + ", ".join(f"{p}↔{n}" for p, n in bal.pair_map.items()) + ")"
                       if bal.pairing else "unpaired sampling"), "info")
    control_files = None
    if cfg.controlnet:
        from sliderstudio.adapters.controlnet import conditioning_files, controlnet_location, require_controlnet_support

        require_controlnet_support(family, project.config_path)
        controlnet_location(cfg, project.root)
        control_files = conditioning_files(project, scanned)
    check_output_dir(project.output_dir)
    location = resolve_model_path(cfg.pretrained_model_name_or_path)

    device = pick_device(device_name)
    from sliderstudio.engine.distributed import join_processes, main_process_first

    join_processes(device)  # several processes: meet now, before the slow part (engine.distributed)
    slow = precision_warning(cfg.mixed_precision, device)
    if slow:
        log(slow, "warning")
    dtype = weight_dtype(cfg.mixed_precision, device)
    scheme = require_runnable(cfg.base_model_precision, device, str(project.config_path),  # before any weight
                              cfg.lora_type)
    compile_opts = check_compile_options(cfg, str(project.config_path))
    if cfg.offload_blocks:  # before any weight: a denoiser or quantisation the hooks cannot stream
        require_offloadable(family, cfg.base_model_precision, cfg.controlnet, str(project.config_path))
    cache = FeatureCache(project.root / "cache", model_key(family.id, location))
    warm = (control_files is None and not cfg.slider_text_pairs  # text pairs render with the encoders first
            and caches_complete(project, scanned, cache, cfg.seed))
    log(f"loading {family.label} from {location} on {device}", "info")
    pipe = load_pipeline(family, cfg.pretrained_model_name_or_path, dtype,
                         "cpu" if warm or cfg.offload_blocks else device, loading_config(scheme, family.denoiser_name))
    quantise_base(family.denoiser(pipe), cfg.base_model_precision, scheme, log)
    encoders = EncoderResidency(encoder_modules(pipe), device, log, on_device=not warm)
    if cfg.offload_blocks:  # the denoiser stays in CPU memory; its hooks bring each block over
        place_pipeline(pipe, device, {**(encoders.modules if warm else {}), "denoiser": family.denoiser(pipe)})
    if warm:
        if not cfg.offload_blocks:
            place_pipeline(pipe, device, encoders.modules)
        log(f"every latent and caption is cached: the encoders ({encoders.names}) are not loaded on {device}; "
            "validation brings them over for its renders only", "info")
    apply_vae_options(pipe, cfg, log)
    host, host_name, denoiser, render_pipe = adapter_host(project, family, pipe, device, dtype, log)
    adapter, report, frozen = attach_slider(project, family, pipe, host, host_name, log)
    params = adapter.parameters()
    for p in params:
        p.data = p.data.float()
    if cfg.gradient_checkpointing and hasattr(host, "enable_gradient_checkpointing"):
        host.enable_gradient_checkpointing()
    offload = offload_for_training(host, params, device, cfg.offload_blocks_per_group, cfg.gradient_checkpointing,
                                   log) if cfg.offload_blocks else None
    sharded = shard_denoiser(project, family, host, params, device, log)
    denoiser.train()
    adapter.train(True)

    control_inputs = None
    if control_files is not None:
        from sliderstudio.adapters.controlnet import control_inputs_for

        control_inputs = control_inputs_for(family, pipe, host, control_files)
    with main_process_first():  # several processes: the main one fills the cache, the others read it
        data = encode_buckets(project, family, pipe, scanned, cache, cfg.seed, control_inputs)
    text = text_slider_for(project, family, pipe, adapter, cache, log)
    log(cache.describe(), "info")
    encoders.release("the caches are complete, training reads latents and captions from them")

    text_entries, text_map = text_sampler_entries(cfg.slider_text_pairs)
    sampler = SliderSampler(sampler_buckets(scanned, cfg.slider_neutral_mode) + text_entries, cfg.seed,
                            cfg.train_batch_size, {**bal.pair_map, **text_map})
    total = cfg.max_train_steps or max(1, math.ceil(cfg.num_train_epochs * sampler.epoch_length()
                                                    / micro_batches_per_step(cfg, sampler)))
    optimizer, scheduler = make_optimizer(params, project, device, total)
    from accelerate import Accelerator

    mp = cfg.mixed_precision if device.type == "cuda" else ("bf16" if cfg.mixed_precision == "bf16" else "no")
    from accelerate.utils import InitProcessGroupKwargs
    from sliderstudio.engine.distributed import process_group_timeout

    accelerator = Accelerator(mixed_precision=mp, cpu=device.type == "cpu",
                              kwargs_handlers=[InitProcessGroupKwargs(timeout=process_group_timeout())])
    from sliderstudio.engine.losses import make_loss
    from sliderstudio.families.flow import training_schedule

    schedule, shift_note = training_schedule(family, pipe, cfg)
    if shift_note:
        log(shift_note, "warning")
    compiled = compile_denoiser(denoiser, compile_opts, log)
    attention = attention_for(cfg.attention_mechanism, device, family.cudnn_attention_backward)
    log(f"attention: {attention.current.label} on {device.type} (then {', '.join(k.label for k in attention.chain[1:])}"
        " if the first step fails)", "info")
    step = SliderStep(family, denoiser, schedule, data, cfg.seed, device,
                      dtype, cfg.caption_dropout_probability, cfg.noise_offset, attention.wrap(accelerator.autocast),
                      adapter,
                      None if cfg.loss_type == "l2" else make_loss(cfg, schedule),
                      noise_offset_probability=cfg.noise_offset_probability,
                      preserve_weight=cfg.slider_preserve_weight, timestep_bias=TimestepBias.from_config(cfg),
                      snr_weight=MinSnrWeight.for_schedule(
                          cfg.snr_gamma, schedule, cfg.soft_min_snr_sigma_data if cfg.use_soft_min_snr else None))
    step.text = text
    log_loss_weighting(step, cfg.snr_gamma, log)
    info = session_metadata(project, family, report, bal.pairing, adapter)
    log(f"training {total} steps, {sum(p.numel() for p in params)} adapter parameters", "info")
    if render_pipe is not None and control_files:
        from sliderstudio.adapters.controlnet import ControlPipe, load_control_image

        first = control_files[min(control_files)]
        render_pipe = ControlPipe(render_pipe, load_control_image(first, cfg.validation_sizes[0][0]),
                                  family.controlnet.image_kwarg)
    from sliderstudio.engine.validation_render import accepts_guidance_rescale

    if cfg.validation_guidance_rescale and not accepts_guidance_rescale(render_pipe or pipe):
        log("validation_guidance_rescale: this pipeline takes no guidance_rescale; validation renders without it",
            "warning")
    return TrainingSession(family, pipe, denoiser, adapter, sampler, step, optimizer, scheduler, accelerator,
                           params, total, report.module_names, info, render_pipe or pipe, encoders, compiled,
                           attention, offload=offload, fsdp=sharded)


def shard_denoiser(project: Project, family: Family, host: torch.nn.Module, params: list, device: torch.device,
                   log: Logger) -> Any:
    """fsdp_enable on several processes: the frozen denoiser sharded, the slider whole (engine.fsdp)."""
    from sliderstudio.engine import fsdp
    from sliderstudio.engine.distributed import current_ranks

    cfg, world = project.config, current_ranks().world
    if not fsdp.enabled(cfg, world):
        if cfg.fsdp_enable:
            log("fsdp_enable: one process, nothing to shard; the model is whole on the device", "warning")
        return None
    fsdp.check_options(cfg, family, str(project.config_path))
    report = fsdp.shard(host, params, device, world, cfg, str(project.config_path))
    log(report.describe(), "info")
    return report


def text_slider_for(project: Project, family: Family, pipe: Any, adapter: SliderAdapter, cache: FeatureCache,
                    log: Logger) -> TextSlider | None:
    """The text-pair objective (engine.text_slider): prompts through the feature cache, base renders of the
    neutral prompts at the training resolution with the validation render settings."""
    cfg = project.config
    if not active_pairs(cfg.slider_text_pairs):
        return None
    text_dir = text_cache_dir(project.buckets)
    override = project.resolve(text_dir) if text_dir else None
    align = family.size_alignment
    size = max(align, round(cfg.resolution / align) * align)
    return prepare_text_slider(family, pipe, cfg.slider_text_pairs, adapter,
                               lambda prompts: cache.conditioning(prompts, lambda ps: family.encode_prompts(pipe, ps),
                                                                  override),
                               cfg.seed, cfg.validation_num_inference_steps, cfg.validation_guidance, size, log)


def micro_batches_per_step(cfg: Any, sampler: SliderSampler) -> int:
    """gradient_accumulation_steps, times a whole sampler cycle when `slider_step_mode` is 'cycle'."""
    cycle = sampler.cycle_length() if cfg.slider_step_mode == "cycle" else 1
    return cfg.gradient_accumulation_steps * cycle


def session_metadata(project: Project, family: Family, report: TargetReport, pairing: bool,
                     adapter: SliderAdapter) -> dict[str, Any]:
    """What every saved adapter records (SPEC §8): base model, family, targets, shape, strengths, version."""
    cfg = project.config
    info = {"base_model": cfg.pretrained_model_name_or_path, "family": family.id, "targets": report.module_names,
            "preset": report.preset, "lora_type": cfg.lora_type,
            "strengths": sorted({b.slider_strength for b in project.active_buckets()}),
            "pairing": pairing, "sliderstudio_version": __version__,
            "base_model_precision": cfg.base_model_precision}
    if active_pairs(cfg.slider_text_pairs):
        info["text_pairs"] = [{"id": name, **pair.model_dump(include={"positive", "negative", "neutral", "anchors",
                                                                      "guidance", "negative_guidance", "strength"},
                                                             exclude_none=True)}
                              for name, pair in active_pairs(cfg.slider_text_pairs).items()]
    if cfg.lora_type == "standard":
        info.update(rank=cfg.lora_rank, alpha=cfg.effective_alpha)
    else:
        info.update(adapter.describe())
    if cfg.controlnet:
        from sliderstudio.adapters.controlnet import controlnet_location

        info.update(controlnet=True, controlnet_model=str(controlnet_location(cfg, project.root).resolve()))
    return info


def adapter_host(project: Project, family: Family, pipe: Any, device: torch.device, dtype: torch.dtype,
                 log: Logger) -> tuple[torch.nn.Module, str, torch.nn.Module, Any]:
    """Where the slider goes: (host module, its file prefix, what the step calls, render pipeline or None)."""
    cfg = project.config
    denoiser = family.denoiser(pipe)
    if not cfg.controlnet:
        return denoiser, family.denoiser_name, denoiser, None
    from sliderstudio.adapters.controlnet import control_pipeline, controlnet_location, load_controlnet

    controlnet = load_controlnet(family, controlnet_location(cfg, project.root), dtype, device)
    denoiser.requires_grad_(False)
    log(f"ControlNet slider: targets go on the ControlNet from {cfg.controlnet_model_name_or_path}; "
        f"the {family.denoiser_name} stays untouched", "info")
    wrapped = family.controlnet.wrapper(denoiser, controlnet)
    return controlnet, "controlnet", wrapped, control_pipeline(family, pipe, controlnet)


def attach_slider(project: Project, family: Family, pipe: Any, host: torch.nn.Module, host_name: str,
                  log: Logger) -> tuple[SliderAdapter, TargetReport, list[str]]:
    """Resolve targets on the host, attach the slider (LoRA or LyCORIS) and any frozen assistant."""
    cfg = project.config
    preset = preset_patterns(family, cfg)
    if cfg.lora_type == "lycoris":
        from sliderstudio.adapters.lycoris_adapter import attach_lycoris

        # LyCORIS first: it wraps plain layers; PEFT can then wrap the wrapped ones for an assistant
        adapter, report = attach_lycoris(host, host_name, project.lycoris, preset, cfg.seed)
        frozen = attach_assistant(project, family, pipe, log)
    else:
        report = require_matches(resolve_on_module(host, preset[1], preset[0]),
                                 "peft_lora_target_modules" if preset[0] == "custom" else "slider_lora_target")
        frozen = attach_assistant(project, family, pipe, log)
        config = adapters.attach_lora(host, report.module_names, cfg.lora_rank, cfg.effective_alpha,
                                      cfg.lora_dropout, adapters.SLIDER, cfg.seed)
        pipeline_class = None if host_name == "controlnet" else family.pipeline_class
        adapter = PeftSlider(host, host_name, config, pipeline_class)
    log(f"targets ({report.preset}, {cfg.lora_type}): {report.total} modules\n{report.table()}", "info")
    on_text = text_path_modules(report.module_names, family)
    if on_text:
        log(f"{len(on_text)} target(s) are on the text path (e.g. {on_text[0]}); a slider usually should "
            "change only the visual path", "warning")
    adapter.activate(frozen)
    return adapter, report, frozen
