"""Checks that a config which parses also describes a run that makes sense, before any model loads.

The config's own validation knows each value alone; these checks know the run: a batch larger than
any bucket, an accumulation that never completes one optimizer step, a number no run could reach, a
file a key points to that is not there. Each one either stops the run with the key, the value and
the counts that contradict it (exit 2), or, where the run still does what was asked in substance,
becomes a warning that says what will actually happen.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from sliderstudio.config.config import TrainConfig
from sliderstudio.kernel.errors import ConfigError, DatasetError

if TYPE_CHECKING:
    from sliderstudio.engine.buckets import ScannedBucket
    from sliderstudio.engine.project import Project

# Values beyond these describe no run anyone can finish; they are typos (an extra 000) or placeholders.
# key → (largest sensible value, what a larger one would mean)
LIMITS: dict[str, tuple[float, str]] = {
    "train_batch_size": (4096, "no machine holds a micro-batch that large"),
    "max_train_steps": (10_000_000, "a run that long never finishes"),
    "num_train_epochs": (100_000, "a run that long never finishes"),
    "gradient_accumulation_steps": (10_000, "an optimizer step that long never completes"),
    "lr_warmup_steps": (10_000_000, "a warm-up that long never ends"),
    "resolution": (16384, "images that large do not fit in memory"),
    "validation_resolution": (16384, "images that large do not fit in memory"),
    "validation_num_inference_steps": (1000, "a render that long never finishes"),
    "lora_alpha": (4096, "alpha / rank would scale the adapter's output into overflow"),
    "noise_offset": (1.0, "the offset would drown the images in noise (typical: 0.05-0.1)"),
    "seed": (2**32 - 1, "seeds are 32-bit"),
    "validation_seed": (2**32 - 1, "seeds are 32-bit"),
}
HIGH_LEARNING_RATE = 0.1  # Adam-like optimizers on an adapter at or above this diverge within a few steps
MAX_LEARNING_RATE = 10.0  # beyond even the step-size-free optimizers' 1.0
STEP_SIZE_FREE = ("prodigy", "dadapt")  # optimizers that expect learning_rate 1.0
BUCKET_LIMITS: dict[str, float] = {"repeats": 10_000}
MAX_BUCKET_SIDE = 16384  # pixels, as for `resolution`


def check_limits(config: TrainConfig, file: str) -> list[str]:
    """Absurd magnitudes are errors; a learning rate that can only diverge is a warning."""
    for key, (limit, meaning) in LIMITS.items():
        value = getattr(config, key, None)
        if key == "validation_resolution" and value is not None:  # may be "WxH" or a list (SimpleTuner)
            value = max(max(size) for size in config.validation_sizes)
        if value is not None and abs(value) > limit:
            raise ConfigError(f"{value} is out of range: {meaning}", file=file, key=key, value=value,
                              expected=f"at most {int(limit) if limit == int(limit) else limit}")
    lr = config.learning_rate
    if lr > MAX_LEARNING_RATE:
        raise ConfigError(f"{lr} would turn the adapter into noise at the first step", file=file,
                          key="learning_rate", value=lr, expected=f"at most {MAX_LEARNING_RATE:g}")
    optimizer = str(getattr(config, "optimizer", "adamw")).lower()
    warnings = []
    if lr >= HIGH_LEARNING_RATE and not any(name in optimizer for name in STEP_SIZE_FREE):
        warnings.append(f"{file}: key 'learning_rate' is {lr}: an Adam-like optimizer on an adapter at this rate "
                        "diverges within a few steps (sliders train at 1e-4 … 2e-3)")
    if config.lycoris_config and config.lora_type != "lycoris":
        warnings.append(f"{file}: key 'lycoris_config' is set but lora_type is '{config.lora_type}': the LyCORIS "
                        "file is not used (set lora_type 'lycoris' to use it)")
    if config.controlnet_model_name_or_path and not config.controlnet:
        warnings.append(f"{file}: key 'controlnet_model_name_or_path' is set but controlnet is false: the slider "
                        "trains on the base model (set controlnet true to train it on the ControlNet)")
    if config.lr_warmup_steps and config.lr_scheduler == "constant":
        warnings.append(f"{file}: key 'lr_warmup_steps' is {config.lr_warmup_steps} but lr_scheduler 'constant' "
                        "has no warm-up; use 'constant_with_warmup'")
    return warnings + timestep_bias_warnings(config, file) + soft_min_snr_warnings(config, file)


def soft_min_snr_warnings(config: TrainConfig, file: str) -> list[str]:
    """SimpleTuner's soft min-SNR keys set where they weigh nothing: only snr_gamma turns weighting on."""
    if config.snr_gamma is not None:
        return []
    tuned = [k for k in ("use_soft_min_snr", "soft_min_snr_sigma_data")
             if k in config.model_fields_set and getattr(config, k) not in (None, False)]
    return [f"{file}: key '{tuned[0]}' is set but snr_gamma is not: no min-SNR weighting runs, soft or not "
            "(set snr_gamma, e.g. 5)"] if tuned else []


def timestep_bias_warnings(config: TrainConfig, file: str) -> list[str]:
    """SimpleTuner's timestep-bias keys that change nothing as set (engine.timestep_bias)."""
    strategy = config.timestep_bias_strategy
    if strategy == "none":
        tuned = [k for k in ("timestep_bias_multiplier", "timestep_bias_portion", "timestep_bias_begin",
                             "timestep_bias_end") if k in config.model_fields_set]
        return [f"{file}: key '{tuned[0]}' is set but timestep_bias_strategy is 'none': timesteps are drawn "
                "without bias (set timestep_bias_strategy 'later', 'earlier' or 'range')"] if tuned else []
    if config.timestep_bias_multiplier == 1:
        return [f"{file}: key 'timestep_bias_strategy' is '{strategy}' but timestep_bias_multiplier is 1: every "
                "timestep keeps its weight (a multiplier above 1 trains there more often, below 1 less)"]
    return []


def require_file(project: Project, key: str, value: str | None, what: str = "file") -> Path | None:
    """The path a config key names, which must exist; the error names the key and the resolved path."""
    if not value:
        return None
    path = project.resolve(value)
    exists = path.is_dir() if what == "folder" else path.is_file()
    if not exists:
        found = "a folder" if path.is_dir() else ("a file" if path.exists() else "nothing")
        raise ConfigError(f"no such {what} ({found} at that path)", file=path, key=key, value=value)
    return path


def check_bucket_limits(project: Project) -> None:
    """Per-bucket magnitudes no run survives: `repeats` builds an epoch list of that many passes, a
    bucket `resolution` resizes every image to it."""
    file = project.dataloader_path
    for bucket in project.active_buckets():
        for key, limit in BUCKET_LIMITS.items():
            value = getattr(bucket, key)
            if value > limit:
                raise ConfigError(f"{value} is beyond any run that could finish", file=file,
                                  key=f"{bucket.id}.{key}", value=value, expected=f"at most {limit:g}")
        res = bucket.resolution
        if res is None:
            continue
        side = (float(res) * 1_000_000) ** 0.5 if bucket.resolution_type == "area" or res < 8 else float(res)
        if side > MAX_BUCKET_SIDE:
            raise ConfigError(f"{res} ({bucket.resolution_type}) means images {side:.0f} px on a side", file=file,
                              key=f"{bucket.id}.resolution", value=res,
                              expected=f"at most {MAX_BUCKET_SIDE} px on a side")


def check_project(project: Project) -> None:
    """The project-level checks that need no image scan: file keys and per-bucket magnitudes."""
    check_files(project)
    check_bucket_limits(project)


def check_files(project: Project) -> None:
    """Files named by config keys that are read only after the model loads: found missing up front."""
    cfg = project.config
    if cfg.assistant_lora_path and not cfg.disable_assistant_lora:
        require_file(project, "assistant_lora_path", cfg.assistant_lora_path)
    if cfg.controlnet and cfg.controlnet_model_name_or_path:
        require_file(project, "controlnet_model_name_or_path", cfg.controlnet_model_name_or_path, "folder")
    if cfg.resume_from_checkpoint and cfg.resume_from_checkpoint != "latest":
        require_file(project, "resume_from_checkpoint", cfg.resume_from_checkpoint, "folder")


def _sampled(project: Project, scanned: list[ScannedBucket]) -> list[ScannedBucket]:
    from sliderstudio.engine.sampler import sampler_buckets

    ids = {b.id for b in sampler_buckets(scanned, project.config.slider_neutral_mode)}
    return [s for s in scanned if s.bucket.id in ids]


def check_batch_size(project: Project, scanned: list[ScannedBucket]) -> list[str]:
    """The sampler fills a micro-batch from one bucket: it never holds more than that bucket's images.

    Larger than every bucket: no micro-batch ever has the asked size, and memory estimates made for
    it are wrong, so it is an error. Larger than some buckets only: those buckets give smaller
    micro-batches (still a valid slider run), so it is a warning naming them.
    """
    from sliderstudio.config.text_pairs import active_pairs

    size = project.config.train_batch_size
    sampled = _sampled(project, scanned)
    texts = active_pairs(project.config.slider_text_pairs)  # a text pair's micro-batch holds its base renders
    largest = max([s.count for s in sampled] + [p.samples for p in texts.values()])
    counts = ", ".join([f"'{s.bucket.id}' {s.count}" for s in sampled]
                       + [f"text pair '{name}' {p.samples} (samples)" for name, p in texts.items()])
    if size > largest:
        raise ConfigError(f"train_batch_size {size} is larger than every bucket (images per bucket: {counts}); "
                          "a micro-batch is drawn from one bucket, so none could ever be that large",
                          file=project.config_path, key="train_batch_size", value=size,
                          expected=f"at most {largest}")
    small = [s for s in sampled if s.count < size]
    if not small:
        return []
    names = ", ".join(f"'{s.bucket.id}' ({s.count})" for s in small)
    return [f"train_batch_size is {size} but bucket(s) {names} hold fewer images: their micro-batches hold only "
            "that many"]


def check_steps(project: Project, scanned: list[ScannedBucket]) -> list[str]:
    """Epochs × micro-batches must make at least one optimizer step; warm-up and validation must fit."""
    from sliderstudio.engine.sampler import SliderSampler, sampler_buckets
    from sliderstudio.engine.sampler import text_sampler_entries

    cfg = project.config
    texts, text_map = text_sampler_entries(cfg.slider_text_pairs)
    buckets = sampler_buckets(scanned, cfg.slider_neutral_mode) + texts
    if cfg.max_train_steps:
        total = cfg.max_train_steps
    else:
        from sliderstudio.engine.buckets import balance

        pairs = {**balance(project, scanned).pair_map, **text_map}
        per_epoch = SliderSampler(buckets, cfg.seed, cfg.train_batch_size, pairs).epoch_length()
        micro = cfg.num_train_epochs * per_epoch
        if micro < cfg.gradient_accumulation_steps:
            raise ConfigError(f"num_train_epochs {cfg.num_train_epochs} × {per_epoch} micro-batches per epoch = "
                              f"{micro}, fewer than gradient_accumulation_steps {cfg.gradient_accumulation_steps}: "
                              "not one optimizer step would complete", file=project.config_path,
                              key="gradient_accumulation_steps", value=cfg.gradient_accumulation_steps,
                              expected=f"at most {micro}, or set max_train_steps")
        total = math.ceil(micro / cfg.gradient_accumulation_steps)
    warnings = []
    if cfg.lr_warmup_steps >= total and cfg.lr_scheduler != "constant":
        warnings.append(f"lr_warmup_steps {cfg.lr_warmup_steps} ≥ the run's {total} optimizer steps: the learning "
                        "rate never reaches learning_rate")
    return warnings


def check_sampled(project: Project, scanned: list[ScannedBucket]) -> None:
    """A bucket with probability 0 is never drawn: at least one signed bucket (or text pair) must be."""
    from sliderstudio.config.text_pairs import active_pairs

    if active_pairs(project.config.slider_text_pairs):
        return
    if not any(s.bucket.role != "neutral" for s in _sampled(project, scanned)):
        raise DatasetError("no positive or negative bucket takes part in sampling (their probability is 0)",
                           file=project.dataloader_path, key="probability")


def check_run(project: Project, scanned: list[ScannedBucket]) -> list[str]:
    """All run-level checks on scanned buckets; raises for nonsense, returns the warnings."""
    check_sampled(project, scanned)
    return check_batch_size(project, scanned) + check_steps(project, scanned)
