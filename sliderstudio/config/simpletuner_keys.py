"""Every SimpleTuner config key, classified: implemented, mapped to our name, or ignored with a reason.

SimpleTuner's whole training-config surface (its field registry, shipped as data in
`sliderstudio/config_data/simpletuner/`) is known here so that a SimpleTuner config opens as is: a key
SimpleTuner knows is never fatal. It is either a TrainConfig field (implemented), another spelling of
one (mapped), or ignored with a sentence saying what ignoring it means for this run. Only a key
SimpleTuner does not know either is an error (with a did-you-mean). Values of keys with a fixed list
of choices are checked against SimpleTuner's list, ignored keys included, because SimpleTuner itself
would refuse such a config.
"""
from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from sliderstudio.kernel.errors import ConfigError
from sliderstudio.kernel.suggest import did_you_mean
from sliderstudio.kernel.resources import read_config_data

Status = Literal["implemented", "mapped", "ignored", "slider_studio"]

# SimpleTuner's spelling → the TrainConfig field that holds it. TrainConfig keeps the legacy names
# (`checkpointing_steps`, `validation_steps`), which SimpleTuner still reads as aliases, so a saved
# config stays loadable by both programs.
ALIASES: dict[str, str] = {
    "checkpoint_step_interval": "checkpointing_steps",
    "validation_step_interval": "validation_steps",
    "enable_group_offload": "offload_blocks",  # diffusers' group offloading, block level (engine.block_offload)
    "group_offload_blocks_per_group": "offload_blocks_per_group",
}
# Other memory options that ask for the same thing in other words: key → (TrainConfig field, the value
# it means there, or None when the given value asks for nothing). musubi's block swap and RamTorch both
# keep the denoiser's weights in CPU memory and bring them to the device as they run.
VALUE_MAPS: dict[str, tuple[str, Any]] = {
    "musubi_blocks_to_swap": ("offload_blocks", lambda v: True if _number(v) > 0 else None),
    "ramtorch": ("offload_blocks", lambda v: True if _flag(v) else None),
}
# Keys with a near meaning: used only when the TrainConfig key itself is not given.
SOFT_ALIASES: dict[str, str] = {
    "validation_lycoris_strength": "validation_adapter_strength",
}
# Documented keys SimpleTuner still accepts outside its registry (its README and OPTIONS.md).
LEGACY_KEYS: dict[str, str] = {
    "fuse_qkv_projections": "fused QKV projections need Flash Attention 3; attention runs unfused",
    "ignore_final_epochs": "the run ends at max_train_steps, or after num_train_epochs when that is 0",
    "validation_torch_compile": "validation renders without torch.compile",
    "validation_torch_compile_mode": "validation renders without torch.compile",
    "crepa_cumulative_neighbors": "CREPA (a video regulariser) is not implemented: the plain slider loss is used",
    "crepa_model": "CREPA (a video regulariser) is not implemented: the plain slider loss is used",
    "enable_xformers_memory_efficient_attention": "attention uses PyTorch's scaled-dot-product kernels",
    "allow_tf32": "TF32 follows PyTorch's default on this machine",
    "text_encoder_precision": "text encoders load in the training precision (no quantisation)",
    "user_prompt_library_strength": "each prompt's adapter_strength in the prompt library sets its strength",
    "vae_cache_clear_each_epoch": "the latent cache is kept between epochs and runs",
}
_TEXT_ENCODER_PRECISION = re.compile(r"text_encoder_\d+_precision")
# SimpleTuner's base_model_precision values (its registry fills the list at run time, so fields.json has
# none); TrainConfig accepts these, engine.quantise decides which run on this machine.
BASE_MODEL_PRECISION_VALUES: tuple[str, ...] = (
    "no_change", "int8-torchao", "int8dq-torchao", "int8dq-int4-torchao", "int4-torchao", "fp8-torchao",
    "fp8wo-torchao", "fp8-int4-torchao", "int2-quanto", "int4-quanto", "int8-quanto", "fp8-quanto",
    "fp8uz-quanto", "nf4-bnb", "fp8-native", "fp8-transformerengine", "int8-sdnq", "uint8-sdnq", "fp8-sdnq",
    "fp16-sdnq", "int16-sdnq", "uint16-sdnq", "int6-sdnq", "int5-sdnq", "uint5-sdnq", "uint4-sdnq",
)

SECTION_REASONS: dict[str, str] = {
    "accelerate": "accelerate option not implemented: several processes start from num_processes alone "
                  "(one machine; FSDP through fsdp_enable; DeepSpeed and multi-machine runs are not implemented)",
    "memory_optimization": "memory option not implemented yet: the model trains on the standard memory path",
    "quantization": "quantisation belongs to the memory options, not implemented yet: the base model loads "
                    "unquantised in the training precision",
    "lora_config": "LoRA variant not implemented: the slider is a standard PEFT LoRA, or the LyCORIS config",
    "optimizer_config": "optimizer detail not implemented: the optimizer runs with its defaults for it",
    "training_data": "dataset housekeeping option: no images are checked, pruned or deleted here; every image "
                     "of every bucket is used",
    "image_processing": "an aspect-bucket option: buckets are set per entry of the dataloader JSON",
    "data_config": "dataloader tuning: Slider Studio scans the buckets and caches latents its own way",
    "hardware": "worker-count tuning: Slider Studio chooses its own thread counts",
    "dataset_config": "a dataset default: set it per bucket in the dataloader JSON",
    "loss_functions": "training-objective extension not implemented: the plain slider loss is used",
    "caching": "cache tuning: Slider Studio keeps its own cache in the project's cache/ folder",
    "caption_processing": "caption option not implemented: captions are used as the bucket gives them",
    "checkpointing": "checkpoints are written every checkpointing_steps and at the end only",
    "essential_settings": "no TensorBoard logs: metrics go to output_dir/metrics.jsonl",
    "architecture": "architecture option not implemented: the model is used as loaded",
    "model_config": "component override not implemented: every component comes from "
                    "pretrained_model_name_or_path",
    "model_specific": "model-specific option not implemented: the family's defaults are used",
    "project_settings": "no tracking or webhooks: metrics go to output_dir/metrics.jsonl and the app's plot",
    "validation_options": "validation option not implemented: validation renders the prompts at the slider "
                          "strengths with the pipeline's own scheduler",
    "validation_schedule": "validation option not implemented: validation runs every validation_steps and at "
                           "the end",
    "dataset_defaults": "caption option not implemented: captions are used as the bucket gives them",
    "training_schedule": "timestep-sampling option not implemented: the family's own timestep sampling is used",
    "distillation": "no distillation: the slider is trained with the plain slider loss",
    "ema_config": "no EMA: the saved adapter holds the last step's weights",
    "evaluation": "no evaluation runs: only validation images are rendered",
    "text_encoder": "text encoders stay frozen: a slider trains the visual path only",
    "repository": "nothing is uploaded: the adapter stays in output_dir",
    "project": "not needed here: one process on one device",
    "vae_config": "VAE option not implemented: the VAE runs in the pipeline's precision, one image batch at a time",
    "noise_settings": "noise option not implemented: only noise_offset is applied",
    "validation_guidance": "guidance option not implemented: validation uses validation_guidance only",
    "lyrics_embedder": "audio families are not supported",
    "model_card": "no model card is written",
    "publishing_controls": "nothing is uploaded and no hook scripts run: the adapter stays in output_dir",
    "training_config": "not implemented",
    "prompt_management": "prompt option not implemented: validation uses the prompt library / validation_prompt",
    "validation_adapters": "no extra adapters are loaded for validation",
}
KEY_REASONS: dict[str, str] = {
    "seed_for_each_device": "one device: the single seed is used",
    "tracker_project_name": "no tracking: metrics go to output_dir/metrics.jsonl and the app's plot",
    "tracker_run_name": "no tracking: metrics go to output_dir/metrics.jsonl and the app's plot",
    "i_know_what_i_am_doing": "no safety limits to unlock here",
    "local_rank": "one process on one device",
    "fsdp_state_dict_type": "the adapter and checkpoints are always written whole (one file, as a 1-process run "
                            "writes it): the slider's parameters are replicated, only the frozen base is sharded",
    "fsdp_cpu_ram_efficient_loading": "every process loads the whole model, then keeps only its shard",
    "fsdp_cpu_offload": "the shards stay on the device; offload_blocks is the CPU-memory option (not with FSDP)",
    "fsdp_activation_checkpointing": "gradient_checkpointing turns on the denoiser's own activation checkpointing",
    "fsdp_auto_wrap_policy": "FSDP shards the denoiser's repeated blocks (fsdp_transformer_layer_cls_to_wrap or "
                             "every block of its ModuleLists), then the rest at the root",
    "fsdp_limit_all_gathers": "an FSDP1 option: FSDP2 (fsdp_version 2) limits its gathers itself",
    "merge_environment_config": "config.env files are not read",
    "disable_bucket_pruning": "Slider Studio never prunes small buckets: every image is used",
    "allow_dataset_oversubscription": "one device: buckets are cycled as needed, no repeats are added",
    "num_validation_images": "one image per prompt and strength is rendered",
    "prodigy_steps": "Prodigy adapts its step size for the whole run",
    "text_encoder_batch_size": "captions are encoded once into the cache, in one batch per bucket",
    "vae_batch_size": "latents are encoded once into the cache",
    "strict_epoch_limit": "the run ends at max_train_steps, or after num_train_epochs when that is 0",
    "musubi_block_swap_device": "offloaded blocks live in CPU memory (offload_blocks)",
    "group_offload_use_stream": "offload_blocks moves blocks synchronously: diffusers' prefetch follows the "
                                "forward order, which backward's recomputation reverses",
    "group_offload_type": "offload_blocks streams whole blocks (block_level)",
    "group_offload_to_disk_path": "offload_blocks keeps the blocks in CPU memory, not on disk",
    "group_offload_text_encoder": "the text encoders leave the device once the caches are complete",
    "group_offload_vae": "the VAE encoder leaves the device once the caches are complete; its decoder stays",
    "ramtorch_transformer_percent": "offload_blocks streams every block of the denoiser",
    "ramtorch_target_modules": "offload_blocks streams every block of the denoiser",
    "ramtorch_text_encoder": "the text encoders leave the device once the caches are complete",
    "ramtorch_text_encoder_percent": "the text encoders leave the device once the caches are complete",
    "ramtorch_vae": "the VAE encoder leaves the device once the caches are complete; its decoder stays",
    "ramtorch_controlnet": "offload_blocks is not available for ControlNet sliders",
    "ramtorch_disable_sync_hooks": "offload_blocks uses diffusers' group-offloading hooks, not RamTorch's",
    "ramtorch_disable_extensions": "offload_blocks uses diffusers' group-offloading hooks, not RamTorch's",
    "gradient_checkpointing_interval": "gradient_checkpointing, when on, checkpoints every block",
    "gradient_checkpointing_backend": "gradient_checkpointing, when on, uses the model's own (torch) checkpointing",
    "push_to_hub": "nothing is uploaded: the adapter stays in output_dir",
    "push_checkpoints_to_hub": "nothing is uploaded: checkpoints stay in output_dir",
    "report_to": "no tracking: metrics go to output_dir/metrics.jsonl and the app's plot",
    "validation_noise_scheduler": "validation uses the pipeline's own scheduler",
    "num_eval_images": "no evaluation runs: only validation images are rendered",
    "caption_strategy": "caption_strategy is set per bucket in the dataloader JSON",
    "instance_prompt": "instance_prompt is set per bucket in the dataloader JSON",
    "resolution_type": "resolution_type is set per bucket in the dataloader JSON",
}
# Keys whose values have a sensible default of their own, checked nowhere else: paths and free text.
_NO_CHOICE_CHECK = frozenset({"resume_from_checkpoint", "data_backend_config", "model_flavour", "webhook_config"})

BUCKET_REASONS: dict[str, str] = {
    "vae_cache_clear_each_epoch": "the latent cache is kept between epochs and runs",
    "is_regularisation_data": "regularisation data is expressed as a neutral bucket (slider_strength 0)",
    "repeats_per_epoch": "use repeats or probability to weight a bucket",
    "skip_file_discovery": "buckets are always scanned (it takes milliseconds)",
    "preserve_data_backend_cache": "buckets are always scanned (it takes milliseconds)",
    "hash_filenames": "cache entries are named by content hash already",
    "caption_filter_list": "captions are used as written (no filter list is applied)",
    "write_batch_size": "cache files are written one at a time",
    "aws_max_pool_connections": "S3 objects are fetched by 8 connections at a time",
    "is_regularization_data": "regularisation data is expressed as a neutral bucket (slider_strength 0)",
    "shard_cache_gb": "a webshart Hub source's shard cache is limited by the webshart block's shard_cache_gb "
                      "(default 25 GB)",
    "shard_cache_dir": "a webshart Hub source's shards are cached in cache/webshart/<id>/.shard_cache",
    "metadata_cache_dir": "a webshart Hub source's index is cached in cache/webshart/<id>/.metadata_cache",
    "parallel_downloads": "webshart samples are exported one at a time into cache/webshart/<id>/",
    "buffer_size": "webshart samples are exported one at a time into cache/webshart/<id>/",
    "max_file_size": "webshart samples are exported one at a time into cache/webshart/<id>/ (any size)",
}


@dataclass(frozen=True)
class KeyStatus:
    """How Slider Studio treats one SimpleTuner key: `target` is the TrainConfig field (when there is one)."""

    key: str
    status: Status
    target: str | None = None
    reason: str = ""


@dataclass(frozen=True)
class KeyNote:
    """One line of the open report: a key that was mapped, ignored, or whose value was changed."""

    kind: Literal["mapped", "ignored", "changed"]
    key: str
    detail: str
    file: str = ""
    value: Any = field(default=None, compare=False)  # what the config gave (kept for writing back)

    def __str__(self) -> str:
        prefix = f"{self.file}: " if self.file else ""
        if self.kind == "mapped":
            return f"{prefix}mapped: {self.key} → {self.detail}"
        if self.kind == "ignored":
            return f"{prefix}ignored: {self.key} (a SimpleTuner option Slider Studio does not implement) — {self.detail}"
        return f"{prefix}changed: {self.key} — {self.detail}"


def _data_file(name: str) -> str:
    return read_config_data("simpletuner", name)


@functools.cache
def registry() -> dict[str, dict[str, Any]]:
    """SimpleTuner's field registry: key → {type, section, default, choices?, aliases?, model_specific?}."""
    return json.loads(_data_file("fields.json"))


@functools.cache
def dataloader_keys() -> frozenset[str]:
    """Every key SimpleTuner's data-backend code reads from a dataloader entry."""
    return frozenset(line.strip() for line in _data_file("dataloader-keys.txt").splitlines() if line.strip())


@functools.cache
def _registry_aliases() -> dict[str, str]:
    """Legacy spellings the registry itself lists (e.g. checkpointing_steps → checkpoint_step_interval)."""
    return {alias: key for key, spec in registry().items() for alias in spec.get("aliases", []) if alias != key}


def _train_fields() -> frozenset[str]:
    from sliderstudio.config.config import TrainConfig  # late: config.py imports this module

    return frozenset(TrainConfig.model_fields)


def is_simpletuner_key(key: str) -> bool:
    return (key in registry() or key in _registry_aliases() or key in LEGACY_KEYS
            or bool(_TEXT_ENCODER_PRECISION.fullmatch(key)))


def ignore_reason(key: str) -> str:
    """What ignoring `key` means for this run, by key, else by its registry section (+ the families it is for)."""
    families = registry().get(key, {}).get("model_specific")
    return base_ignore_reason(key) + (f" (SimpleTuner applies it to {', '.join(families)} only)" if families else "")


def base_ignore_reason(key: str) -> str:
    if key in KEY_REASONS and KEY_REASONS[key]:
        reason = KEY_REASONS[key]
    elif key in LEGACY_KEYS:
        reason = LEGACY_KEYS[key]
    elif _TEXT_ENCODER_PRECISION.fullmatch(key):
        reason = "text encoders load in the training precision (no quantisation)"
    else:
        spec = registry().get(_registry_aliases().get(key, key), {})
        reason = SECTION_REASONS.get(spec.get("section", ""), "not implemented")
    return reason


def classify_train_key(key: str) -> KeyStatus | None:
    """The status of a config.json key; None when neither SimpleTuner nor Slider Studio knows it."""
    key = key.lstrip("-")
    fields = _train_fields()
    if key in fields:
        return KeyStatus(key, "implemented" if is_simpletuner_key(key) or key in ALIASES.values()
                         else "slider_studio", key)
    for table in (ALIASES, SOFT_ALIASES, {k: t for k, (t, _) in VALUE_MAPS.items()}):
        if key in table and table[key] in fields:
            return KeyStatus(key, "mapped", table[key])
    canonical = _registry_aliases().get(key)
    if canonical in fields:
        return KeyStatus(key, "mapped", canonical)
    if is_simpletuner_key(key):
        return KeyStatus(key, "ignored", None, ignore_reason(key))
    return None


def classify_bucket_key(key: str) -> tuple[str, str]:
    """(status, reason) of a dataloader-entry key: implemented / ignored / unknown.

    The API the dataloader parser uses: a key SimpleTuner's data backends read is never fatal.
    """
    from sliderstudio.config.config import BucketConfig

    key = key.lstrip("-")
    if key in BucketConfig.model_fields:
        return "implemented", ""
    if key in dataloader_keys() or key in BUCKET_REASONS:
        return "ignored", BUCKET_REASONS.get(key, "a SimpleTuner dataloader option Slider Studio does not "
                                                  "implement; the bucket is used without it")
    return "unknown", ""


def bucket_key_names() -> frozenset[str]:
    """Every key a dataloader entry may hold without an error (the did-you-mean candidates)."""
    from sliderstudio.config.config import BucketConfig

    return frozenset(BucketConfig.model_fields) | dataloader_keys() | frozenset(BUCKET_REASONS)


def canonical_key(key: str) -> str:
    """The TrainConfig field a key lands in (itself when it is ignored or unknown)."""
    key = key.lstrip("-")
    status = classify_train_key(key)
    return status.target if status is not None and status.target else key


def all_known_train_keys() -> frozenset[str]:
    return frozenset(registry()) | frozenset(_registry_aliases()) | frozenset(LEGACY_KEYS) \
        | frozenset(ALIASES) | frozenset(SOFT_ALIASES) | _train_fields()


def unknown_key_error(key: str, value: Any, file: str, known: frozenset[str]) -> ConfigError:
    return ConfigError(f"unknown key{did_you_mean(key, known)} (neither SimpleTuner nor Slider Studio has it)", file=file, key=key,
                       value=value)


def check_value(key: str, value: Any, file: str) -> None:
    """Refuse what SimpleTuner would refuse: a value outside its fixed choices, or of the wrong kind."""
    spec = registry().get(_registry_aliases().get(key, key))
    if spec is None or value is None:
        return
    choices = spec.get("choices") or []
    if choices and key not in _NO_CHOICE_CHECK:
        allowed = {str(c) for c in choices}
        given = [v.strip() for v in value.split(",")] if key == "report_to" and isinstance(value, str) else [value]
        bad = [v for v in given if str(v) not in allowed]
        if bad:
            raise ConfigError(f"{bad[0]!r} is not one of SimpleTuner's choices for it: "
                              f"{', '.join(str(c) for c in choices)}", file=file, key=key, value=value)
    kind = spec.get("type")
    if kind == "NUMBER" and not _is_number(value):
        raise ConfigError(f"expected a number (got {value!r})", file=file, key=key, value=value)
    if kind == "CHECKBOX" and not _is_flag(value):
        raise ConfigError(f"expected true or false (got {value!r})", file=file, key=key, value=value)


def _is_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return True
    if isinstance(value, str):
        try:
            float(value)
            return True
        except ValueError:
            return value.strip() == ""
    return False


def _number(value: Any) -> float:
    return float(value) if _is_number(value) and str(value).strip() else 0.0


def _flag(value: Any) -> bool:
    return str(value).strip().lower() in ("true", "1")


def _is_flag(value: Any) -> bool:
    if isinstance(value, bool):
        return True
    if isinstance(value, int):
        return value in (0, 1)
    return isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0", "")


# Values SimpleTuner accepts for an implemented key that Slider Studio cannot honour as such:
# (key, value) → (value used, why). Used with a "changed" note rather than refused.
VALUE_CHANGES: dict[tuple[str, Any], tuple[Any, str]] = {
    ("mixed_precision", "fp8"): ("bf16", "fp8 training is not implemented: bf16 autocast is used"),
    ("model_type", "full"): ("lora", "Slider Studio trains adapters only: a LoRA slider is trained, "
                                     "not a full fine-tune"),
    ("lr_scheduler", "sine"): ("cosine", "SimpleTuner's sine schedule is not implemented: cosine is used"),
    ("resume_from_checkpoint", ""): (None, "empty means no resume"),
}

def _attention_changes() -> dict[tuple[str, Any], tuple[Any, str]]:
    """SimpleTuner attention kernels from packages not shipped here open as PyTorch's (config.attention_backend)."""
    from sliderstudio.config.attention_backend import SUBSTITUTES

    return {("attention_mechanism", name): change for name, change in SUBSTITUTES.items()}


VALUE_CHANGES.update(_attention_changes())


def normalise_train_data(data: dict[str, Any], file: str) -> tuple[dict[str, Any], list[KeyNote]]:
    """SimpleTuner-style config data → TrainConfig keys, with a note for each key mapped, ignored or changed.

    Both spellings of one key with different values are an error: which one wins would be a guess.
    """
    kept: dict[str, Any] = {}
    spelled: dict[str, str] = {}
    notes: list[KeyNote] = []
    soft: list[tuple[KeyStatus, Any]] = []
    known = all_known_train_keys()
    for raw_key, value in data.items():
        key = str(raw_key).lstrip("-")
        status = classify_train_key(key)
        if status is None:
            raise unknown_key_error(key, value, file, known)
        if status.status == "ignored":
            check_value(key, value, file)  # TrainConfig checks the keys it holds, with its own messages
            notes.append(KeyNote("ignored", key, status.reason, file, value))
            continue
        if key in SOFT_ALIASES:
            soft.append((status, value))
            continue
        if key in VALUE_MAPS:
            check_value(key, value, file)
            given, value = value, VALUE_MAPS[key][1](value)
            if value is None:
                notes.append(KeyNote("mapped", key, f"{status.target} ({given!r} asks for no offloading: left as "
                                                     "it is)", file, given))
                continue
        target = status.target
        if target in kept and kept[target] != value:
            raise ConfigError(f"'{spelled[target]}' and '{key}' are the same setting with different values "
                              f"({kept[target]!r} and {value!r}); keep one", file=file, key=key, value=value)
        kept[target], spelled[target] = value, key
        if target != key:
            notes.append(KeyNote("mapped", key, target, file))
    for status, value in soft:
        if status.target in kept:
            notes.append(KeyNote("ignored", status.key, f"{status.target} is given and wins", file, value))
        else:
            kept[status.target] = value
            notes.append(KeyNote("mapped", status.key, status.target, file))
    for key, value in list(kept.items()):
        change = VALUE_CHANGES.get((key, value)) if isinstance(value, (str, int, float, type(None))) else None
        if change:
            kept[key] = change[0]
            notes.append(KeyNote("changed", key, f"{value!r} → {change[0]!r}: {change[1]}", file))
    return kept, notes
