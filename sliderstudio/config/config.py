"""The typed training config, with SimpleTuner's key names so existing setups carry over (SPEC §7).

Validation lives here so that the GUI and the CLI give the same messages. Every error names the
file, the key and what was expected, and is raised before any model is loaded.
"""
from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from sliderstudio.config.config_migrations import CONFIG_SCHEMA_VERSION, migrate_config
from sliderstudio.kernel.errors import ConfigError
from sliderstudio.kernel.suggest import did_you_mean
from sliderstudio.config.text_pairs import TextPair, duplicate_id
from sliderstudio.config.simpletuner_keys import (
    BASE_MODEL_PRECISION_VALUES, KeyNote, normalise_train_data,
)


# Training-config keys: every SimpleTuner key is classified in simpletuner_keys (implemented / mapped / ignored).
# Dataloader keys SimpleTuner reads that Slider Studio ignores (each with its reason in
# simpletuner_keys.classify_bucket_key); tests/test_simpletuner_keys.py checks that none is a BucketConfig field.
UNIMPLEMENTED_BUCKET_KEYS = frozenset({
    "skip_file_discovery", "preserve_data_backend_cache", "caption_filter_list", "vae_cache_clear_each_epoch",
    "hash_filenames", "write_batch_size", "is_regularisation_data", "repeats_per_epoch", "conditioning",
    "aws_max_pool_connections",
})


# SimpleTuner's dynamo_backend choices; which of them this PyTorch has is checked at set-up (engine.regional_compile).
DYNAMO_BACKENDS: tuple[str, ...] = (
    "no", "inductor", "eager", "aot_eager", "aot_ts_nvfuser", "nvprims_nvfuser", "cudagraphs", "ofi", "fx2trt",
    "onnxrt", "tensorrt", "ipex", "tvm", "hpu_backend",
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class TrainConfig(_Strict):
    """`config.json`. Field descriptions double as the GUI's tooltips."""

    model_family: str = Field("sd1x", description="Model family id (sd1x, sd2x, sdxl, …)")
    model_flavour: str | None = Field(None, description="Family flavour, e.g. 'turbo' or 'v-prediction'")
    pretrained_model_name_or_path: str = Field(
        "sliderstudio:toy", description="Base model: diffusers folder, single .safetensors file, hub id, or 'sliderstudio:toy'")
    data_backend_config: str = Field("multidatabackend.json", description="Dataloader JSON (the buckets)")
    output_dir: str = Field("output", description="Where the adapter, metrics and checkpoints go")
    model_type: Literal["lora"] = Field("lora", description="Only adapters are trained")
    lora_type: Literal["standard", "lycoris"] = Field("standard", description="PEFT LoRA or LyCORIS")
    lora_rank: int = Field(4, ge=1, le=1024, description="LoRA rank")
    lora_alpha: float | None = Field(None, gt=0, description="LoRA alpha (defaults to the rank)")
    lora_dropout: float = Field(0.0, ge=0.0, lt=1.0, description="LoRA dropout")
    lycoris_config: str | None = Field(None, description="LyCORIS JSON (algo, dims, apply_preset)")
    slider_lora_target: bool = Field(True, description="Use the family's slider preset (visual path only)")
    slider_target_preset: Literal["slider", "reference", "default"] | None = Field(
        None, description="Explicit preset choice; overrides slider_lora_target")
    peft_lora_target_modules: list[str] | None = Field(None, description="Explicit target list (overrides presets)")
    learning_rate: float = Field(1e-4, gt=0, title="learning rate", description="Peak learning rate",
                                 json_schema_extra={"decimals": 6, "step": 1e-4})
    lr_scale: bool = Field(False, description="Multiply learning_rate by train_batch_size × gradient_accumulation_steps")
    lr_scale_sqrt: bool = Field(False, description="With lr_scale: by the square root of that product")
    lr_scheduler: Literal["constant", "constant_with_warmup", "cosine", "cosine_with_restarts", "linear",
                          "polynomial"] = Field("constant", description="Learning-rate schedule")
    lr_warmup_steps: int = Field(0, ge=0, description="Warm-up steps")
    lr_end: float = Field(4e-7, ge=0, description="Final learning rate of the polynomial schedule")
    lr_num_cycles: float = Field(1, gt=0, description="Cycles of cosine_with_restarts (and half-waves of cosine)")
    lr_power: float = Field(0.8, gt=0, description="Power of the polynomial schedule")
    optimizer: str = Field("adamw_bf16", description="Optimizer, by SimpleTuner's name (adamw_bf16, bnb-adamw8bit, "
                                                     "prodigy, optimi-lion, torch-adafactor, …)")
    optimizer_config: str | None = Field(None, description="Extra optimizer settings as 'key=value,key=value'")
    optimizer_beta1: float | None = Field(None, ge=0, lt=1, description="Beta 1 of any optimizer that has betas")
    optimizer_beta2: float | None = Field(None, ge=0, lt=1, description="Beta 2 of any optimizer that has betas")
    adam_beta1: float = Field(0.9, ge=0, lt=1, description="Adam-family beta 1")
    adam_beta2: float = Field(0.999, ge=0, lt=1, description="Adam-family beta 2")
    adam_epsilon: float = Field(1e-8, gt=0, description="Adam-family epsilon")
    max_train_steps: int = Field(0, ge=0, title="steps", description="Optimizer steps (0: use num_train_epochs)")
    num_train_epochs: int = Field(1, ge=0, description="Epochs when max_train_steps is 0")
    train_batch_size: int = Field(1, ge=1, title="batch size", description="Images per micro-batch")
    gradient_accumulation_steps: int = Field(1, ge=1, description="Micro-batches per optimizer step")
    mixed_precision: Literal["no", "fp16", "bf16"] = Field("no", description="Autocast precision")
    gradient_checkpointing: bool = Field(False, description="Trade compute for memory")
    base_model_precision: Literal[BASE_MODEL_PRECISION_VALUES] = Field(  # type: ignore[valid-type]
        "no_change", description="Quantise the frozen base (int8-torchao, fp8-torchao, int8-quanto; "
                                 "no_change keeps it in the training precision)")
    offload_blocks: bool = Field(False, description="Keep the denoiser's blocks in CPU memory and stream them to "
                                                    "the device one group at a time (slower; turns on "
                                                    "gradient_checkpointing)")
    offload_blocks_per_group: int = Field(1, ge=1, description="With offload_blocks: blocks moved together")
    adam_weight_decay: float = Field(1e-2, ge=0, description="AdamW weight decay")
    max_grad_norm: float = Field(1.0, ge=0, description="Gradient clipping (0: off)")
    grad_clip_method: Literal["norm", "value"] = Field(
        "norm", description="Clip the gradients' total norm, or each gradient value, at max_grad_norm")
    logging_steps: int = Field(1, ge=1, description="Read the loss from the device every N optimizer steps: "
                                                    "metrics and progress arrive N at a time, with one host "
                                                    "synchronisation instead of N")
    attention_mechanism: str = Field(
        "diffusers", description="Attention kernel: 'diffusers' lets PyTorch choose per family and device, with "
                                 "fallbacks; cudnn, native-flash, native-efficient, native-math force one")
    dynamo_backend: Literal[DYNAMO_BACKENDS] = Field(  # type: ignore[valid-type]
        "no", description="torch.compile backend for the denoiser ('no': eager; 'inductor' on a GPU)")
    dynamo_mode: Literal["", "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"] = Field(
        "", description="torch.compile mode (inductor only; empty: its default)")
    dynamo_fullgraph: bool = Field(False, description="torch.compile with fullgraph=True (no graph breaks allowed)")
    dynamo_dynamic: bool = Field(False, description="torch.compile with dynamic shapes")
    dynamo_use_regional_compilation: bool = Field(
        False, description="Compile each repeated block of the denoiser instead of the whole model (a third of "
                           "the compile wait, the same speed)")
    loss_type: Literal["l2", "huber", "smooth_l1"] = Field("l2", description="Loss between prediction and target")
    huber_c: float = Field(0.1, gt=0, le=1, description="Huber / smooth-L1 transition point")
    huber_schedule: Literal["snr", "exponential", "constant"] = Field(
        "snr", description="How huber_c varies with the timestep")
    snr_gamma: float | None = Field(
        None, gt=0, le=1000, title="min-SNR γ", description="Min-SNR-γ loss weighting (ε- and v-prediction models; 5 is the paper's "
                                         "value): timesteps cleaner than SNR γ weigh less; unset: all weigh the same")
    use_soft_min_snr: bool = Field(
        False, title="soft min-SNR", description="With snr_gamma: SimpleTuner's soft min-SNR, which reads each "
                                                 "timestep's SNR as (σ·σ_data)² / (σ² + σ_data²)² "
                                                 "(needs soft_min_snr_sigma_data)")
    soft_min_snr_sigma_data: float | None = Field(
        None, gt=0, le=100, title="σ data", description="The data's standard deviation that soft min-SNR weighs with "
                                                        "(use_soft_min_snr)")
    flow_schedule_shift: float | None = Field(
        None, gt=0, description="Flow models: timestep shift for training (default: the model's scheduler)")
    flow_schedule_auto_shift: bool = Field(
        False, description="Flow models: shift by image size, as resolution-dependent schedulers do")
    vae_enable_tiling: bool = Field(False, description="Encode and decode large images in tiles")
    vae_enable_slicing: bool = Field(False, description="Encode and decode one image of a batch at a time")
    noise_offset: float = Field(0.0, ge=0, description="Noise offset")
    noise_offset_probability: float = Field(1.0, ge=0, le=1, description="Share of micro-batches given the offset")
    caption_dropout_probability: float = Field(0.0, ge=0, le=1, description="Caption dropout")
    prediction_type: Literal["epsilon", "v_prediction", "flow_matching"] | None = Field(
        None, description="Override the model's prediction type")
    seed: int = Field(0, title="seed", description="Seed for sampling, noise and initialisation")
    resolution: int = Field(512, ge=8, title="resolution", description="Training resolution in pixels (short side)")
    validation_steps: int = Field(0, ge=0, title="validate every",
                                  description="Render validation every N steps (0: off)")
    validation_disable: bool = Field(False, description="No scheduled validation (Sample now still renders)")
    validation_prompt: str | None = Field(None, description="Validation prompt when no library is given")
    validation_negative_prompt: str | None = Field(None, description="Negative prompt for validation")
    user_prompt_library: str | None = Field(None, description="Prompt library JSON")
    validation_adapter_strength: float = Field(1.0, description="Default adapter strength for validation")
    validation_num_inference_steps: int = Field(20, ge=1, description="Validation denoising steps")
    validation_guidance: float = Field(5.0, ge=0, description="Classifier-free guidance scale")
    validation_seed: int = Field(0, description="Validation seed")
    validation_resolution: int | str | None = Field(
        None, description="Validation size: pixels, 'WxH', or a comma list of them (defaults to resolution)")
    validation_guidance_rescale: float = Field(0.0, ge=0, le=1, description="Guidance rescale (pipelines that take it)")
    validation_prompt_library: bool = Field(False, description="Also render the built-in validation prompts")
    checkpointing_steps: int = Field(0, ge=0, title="checkpoint every",
                                     description="Checkpoint every N steps (0: only at the end)")
    checkpoints_total_limit: int | None = Field(None, ge=1, description="Keep at most N checkpoints")
    checkpoint_epoch_interval: int | None = Field(None, ge=0, description="Also checkpoint every N epochs")
    validation_epoch_interval: float | None = Field(None, ge=0, description="Also validate every N epochs "
                                                                            "(fractions run within an epoch)")
    resume_from_checkpoint: str | None = Field(None, description="'latest' or a checkpoint folder")
    disable_assistant_lora: bool = Field(False, description="Do not load the assistant adapter")
    assistant_lora_path: str | None = Field(None, description="Assistant adapter for distilled models")
    assistant_lora_strength: float = Field(1.0, description="Fixed strength of the assistant adapter")
    lora_format: Literal["both", "diffusers", "comfyui"] = Field(
        "both", description="Files written at the end: 'both' (default) and 'comfyui' add the ComfyUI/kohya file "
                            "next to the diffusers one, 'diffusers' writes only the diffusers file")
    slider_neutral_mode: Literal["preserve", "off"] = Field("preserve", description="Neutral buckets as preservation")
    slider_pairing: Literal["auto", "off"] = Field("auto", description="Pair positive/negative images by file stem")
    slider_step_mode: Literal["micro_batch", "cycle"] = Field(
        "micro_batch", title="step mode",
        description="'cycle': each optimizer step takes a whole positive → negative → neutral cycle "
                                   "(one batched forward with a per-sample strength where shapes allow); "
                                   "'micro_batch': one micro-batch per step")
    slider_preserve_weight: float = Field(1.0, ge=0, le=100, title="anchor weight",
                                          description="Weight of the neutral (anchor) loss against the signed ones")
    timestep_bias_strategy: Literal["none", "later", "earlier", "range"] = Field(
        "none", title="timestep bias",
        description="Train more often at some noise levels: 'later' the noisiest timestep_bias_portion (layout, "
                    "size), 'earlier' the least noisy (detail), 'range' timestep_bias_begin…end; none: the family's "
                    "own draw")
    timestep_bias_multiplier: float = Field(
        1.0, gt=0, le=1000, title="bias multiplier", description="How many times more often the biased timesteps are "
                                                                 "drawn (below 1: less often; 1: no bias)")
    timestep_bias_portion: float = Field(
        0.25, ge=0, le=1, title="bias portion", description="'later' / 'earlier': the share of the 1000 timesteps "
                                                            "that is biased")
    timestep_bias_begin: int = Field(0, ge=0, le=1000, title="bias begin",
                                     description="'range': the first biased timestep (of 1000)")
    timestep_bias_end: int = Field(1000, ge=0, le=1000, title="bias end",
                                   description="'range': the biased timesteps end before this one")
    slider_text_pairs: list[TextPair] = Field(
        default_factory=list, description="Text-pair sliders: positive/negative prompts trained against the base's "
                                          "own predictions, no images (config/text_pairs.py)")
    controlnet: bool = Field(False, description="Train the slider on a ControlNet (SD 1.x, SDXL, SD3, Flux.1)")
    controlnet_model_name_or_path: str | None = Field(
        None, description="The ControlNet the slider is trained on (diffusers folder)")
    slider_start_fraction: float = Field(0.0, ge=0, le=1, description="Slider off for this first fraction of steps in previews")
    slider_calibration: bool = Field(True, description="After training (and at each checkpoint while validation is "
                                                       "on), measure the response "
                                                       "to the dial on the validation prompts and write the "
                                                       "recommended range and polarity into the adapter")
    slider_calibration_strengths: list[float] = Field(
        [-3.0, -2.0, -1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0, 3.0], min_length=2,
        description="Strengths the calibration sweeps (0 is always added)")
    slider_calibration_prompts: int = Field(2, ge=1, description="Validation prompts the calibration renders")
    slider_calibration_seeds: int = Field(1, ge=1, description="Seeds per prompt in the calibration")
    slider_calibration_steps: int | None = Field(
        None, ge=1, description="Denoising steps of the calibration renders (default: validation_num_inference_steps)")
    slider_calibration_batch: int = Field(6, ge=0, description="Strengths per calibration render call (0: a whole "
                                                                "sweep at once); lower it if the calibration runs "
                                                                "out of memory")
    num_processes: int = Field(1, ge=1, le=1024, description="Training processes on this machine, one device each "
                                                           "(GPUs, or CPU cores); train_batch_size is split among them")
    devices: str | None = Field(None, description="Devices to train on: cpu, a GPU index (0), GPU indices (0,1) "
                                                  "or all; one process per chosen GPU (config.device_choice). "
                                                  "Default: a GPU when there is one")
    fsdp_enable: bool = Field(False, description="Shard the frozen denoiser over the num_processes processes "
                                                 "(FSDP2; transformer families): each holds about 1/N of it")
    fsdp_version: int = Field(2, ge=2, le=2, description="FSDP version: 2 (torch's fully_shard) only")
    fsdp_reshard_after_forward: bool = Field(True, description="Free the gathered block weights after each "
                                                               "forward (less memory, one more gather in backward)")
    fsdp_transformer_layer_cls_to_wrap: str | None = Field(
        None, description="Comma-separated class names of the blocks to shard one by one (default: every "
                          "repeated block of the denoiser's ModuleLists)")
    schema_version: int = Field(CONFIG_SCHEMA_VERSION, ge=1, description="Config schema version "
                                                                         "(config/config_migrations.py)")

    @field_validator("validation_resolution", mode="before")
    @classmethod
    def _check_validation_resolution(cls, value: Any) -> Any:
        if value is not None and not isinstance(value, bool):
            parse_sizes(value)
        return value

    @field_validator("devices", mode="before")
    @classmethod
    def _check_devices(cls, value: Any) -> Any:
        from sliderstudio.config.device_choice import normalise

        try:
            return normalise(None if value is None else str(value))
        except ConfigError as exc:
            raise ValueError(exc.message) from None

    @field_validator("timestep_bias_strategy", mode="before")
    @classmethod
    def _no_bias_is_none(cls, value: Any) -> Any:
        """SimpleTuner's default is null; "none" means the same and is what the app's choice shows."""
        return "none" if value is None else value

    @field_validator("attention_mechanism")
    @classmethod
    def _check_attention(cls, value: str) -> str:
        from sliderstudio.config.attention_backend import check_mechanism

        return check_mechanism(value)

    @field_validator("peft_lora_target_modules", mode="before")
    @classmethod
    def _split_targets(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        return value

    @model_validator(mode="after")
    def _check_length(self) -> "TrainConfig":
        if self.max_train_steps == 0 and self.num_train_epochs == 0:
            raise ValueError("max_train_steps and num_train_epochs are both 0: nothing to train")
        if self.lora_type == "lycoris" and not self.lycoris_config:
            raise ValueError("lora_type 'lycoris' needs lycoris_config (a JSON file)")
        duplicate = duplicate_id(self.slider_text_pairs)
        if duplicate:
            raise ValueError(f"slider_text_pairs[{duplicate[0]}]: the name '{duplicate[1]}' is already used by an "
                             "earlier pair; give each pair its own id")
        if self.use_soft_min_snr and self.soft_min_snr_sigma_data is None:
            raise ValueError("use_soft_min_snr needs soft_min_snr_sigma_data, the data's standard deviation the "
                             "soft weighting reads the SNR with (SimpleTuner refuses it without one too)")
        if self.timestep_bias_strategy == "range" and self.timestep_bias_begin >= self.timestep_bias_end:
            raise ValueError(f"timestep_bias_strategy 'range' needs timestep_bias_begin < timestep_bias_end (got "
                             f"{self.timestep_bias_begin} and {self.timestep_bias_end}): no timestep would be biased")
        if self.controlnet and not self.controlnet_model_name_or_path:
            raise ValueError("controlnet: true needs controlnet_model_name_or_path (a trained ControlNet folder; "
                             "one fresh from the UNet outputs zeros, so a slider on it could change nothing)")
        return self

    @property
    def effective_alpha(self) -> float:
        return float(self.lora_alpha if self.lora_alpha is not None else self.lora_rank)

    @property
    def target_preset(self) -> str:
        """The preset this config selects: an explicit list ('custom') beats slider_target_preset beats
        slider_lora_target. One rule, read by the trainer (targets.preset_patterns) and the app alike."""
        if self.peft_lora_target_modules:
            return "custom"
        return self.slider_target_preset or ("slider" if self.slider_lora_target else "default")

    @property
    def validation_sizes(self) -> list[tuple[int, int]]:
        """(width, height) of each validation resolution; the training resolution when none is set."""
        if self.validation_resolution is None:
            return [(self.resolution, self.resolution)]
        return parse_sizes(self.validation_resolution)


def parse_sizes(value: Any) -> list[tuple[int, int]]:
    """SimpleTuner's validation_resolution: 1024, "1024", "1024x768" or "1024x768,512" → [(w, h), …]."""
    parts = [value] if isinstance(value, int) else [p.strip() for p in str(value).split(",") if p.strip()]
    sizes = []
    for part in parts:
        match = re.fullmatch(r"(\d+)(?:\s*[xX]\s*(\d+))?", str(part))
        if not match:
            raise ValueError(f"expected pixels, 'WxH' or a comma list of them (got {value!r})")
        width = int(match.group(1))
        height = int(match.group(2) or width)
        if min(width, height) < 8:
            raise ValueError(f"a validation size must be at least 8 pixels (got {value!r})")
        sizes.append((width, height))
    if not sizes:
        raise ValueError(f"expected pixels, 'WxH' or a comma list of them (got {value!r})")
    return sizes


class BucketConfig(_Strict):
    """One entry of the dataloader JSON (SimpleTuner's keys; docs/TRAINING.md "Dataloader entries")."""

    id: str = Field(..., min_length=1, description="Bucket id")
    type: str = Field("local", description="Storage backend: 'local' (a folder), 'huggingface' (a data set), "
                                           "'csv' (a table of image URLs), 'aws' (an S3 prefix) or 'webshart' "
                                           "(WebDataset tar shards)")
    dataset_type: str = Field("image", description="image, conditioning, text_embeds or image_embeds")
    instance_data_dir: str | None = Field(None, description="Folder of images (and .txt captions)")
    caption_strategy: Literal["textfile", "filename", "instanceprompt", "huggingface", "parquet", "csv",
                              "webshart"] = Field("textfile", description="Where captions come from")
    instance_prompt: str | None = Field(None, description="Caption for 'instanceprompt' (and fallback)")
    prepend_instance_prompt: bool = Field(False, description="Put instance_prompt before every caption")
    only_instance_prompt: bool = Field(False, description="Use instance_prompt as every caption")
    resolution: int | float | None = Field(None, gt=0, description="Bucket resolution (defaults to the config's)")
    resolution_type: Literal["pixel", "pixel_area", "area"] = Field(
        "pixel", description="pixel: short side in px; area: megapixels; pixel_area: side of an equal-area square")
    crop: bool = Field(False, description="Crop to the bucket's aspect (off: resize to the aspect bucket)")
    crop_style: str = Field("center", description="Where to crop: center, random, corner or face")
    crop_aspect: Literal["square", "preserve", "closest", "random"] = Field(
        "square", description="Crop shape: square, the image's own aspect, or one of crop_aspect_buckets")
    crop_aspect_buckets: list[float] | None = Field(
        None, description="Aspect ratios (w/h) that 'closest'/'random' choose from")
    minimum_image_size: float | None = Field(None, gt=0, description="Skip smaller images (resolution_type units)")
    maximum_image_size: float | None = Field(None, gt=0, description="Downsample larger images first")
    target_downsample_size: float | None = Field(None, gt=0, description="Size big images are downsampled to")
    minimum_aspect_ratio: float | None = Field(None, gt=0, description="Skip images narrower than this (w/h)")
    maximum_aspect_ratio: float | None = Field(None, gt=0, description="Skip images wider than this (w/h)")
    metadata_backend: Literal["discovery", "json", "huggingface", "parquet", "csv", "webshart"] = Field(
        "discovery", description="How image sizes are found (Slider Studio reads the headers every run)")
    probability: float = Field(1.0, ge=0, description="Relative chance within its group")
    repeats: int = Field(0, ge=0, description="Extra passes per epoch")
    slider_strength: float = Field(0.0, ge=-10, le=10, description=">0 positive, <0 negative, 0 neutral")
    cache_dir_vae: str | None = Field(None, description="VAE latent cache folder ({model_family} expands)")
    cache_dir: str | None = Field(None, description="Cache folder of a text_embeds / image_embeds entry")
    conditioning_data_dir: str | None = Field(None, description="ControlNet conditioning images (same file names)")
    conditioning_data: str | list[str] | None = Field(None, description="Id(s) of linked conditioning entries")
    conditioning_type: str | None = Field(None, description="Kind of a conditioning entry (e.g. controlnet)")
    text_embeds: str | None = Field(None, description="Id of the text_embeds entry for this image entry")
    image_embeds: str | None = Field(None, description="Id of the image_embeds entry holding this entry's latents")
    dataset_name: str | None = Field(None, description="Hugging Face data set id, or a local saved data set")
    split: str = Field("train", description="Hugging Face split")
    revision: str | None = Field(None, description="Hugging Face revision")
    image_column: str | None = Field(None, description="Hugging Face image column (default 'image')")
    caption_column: str | list[str] | None = Field(None, description="Hugging Face caption column(s)")
    fallback_caption_column: str | None = Field(None, description="Caption column used when the first is empty")
    huggingface: dict[str, Any] | None = Field(None, description="Hugging Face options block (same sub-keys)")
    parquet: dict[str, Any] | None = Field(
        None, description="Caption table for caption_strategy 'parquet' (path, filename_column, caption_column…)")
    default: bool = Field(False, description="Default text-embedding cache")
    disabled: bool = Field(False, description="Skip this bucket")
    max_num_samples: int | None = Field(None, ge=1, description="Use at most this many images (chosen by seed)")
    disable_multiline_split: bool = Field(False, description="A caption file is one caption, not one per line")
    csv_file: str | None = Field(None, description="type csv: the table of image URLs / paths and captions")
    csv_cache_dir: str | None = Field(None, description="type csv: where fetched images are kept")
    csv_url_column: str = Field("url", description="type csv: the column of image URLs or paths")
    csv_caption_column: str = Field("caption", description="type csv: the caption column")
    aws_bucket_name: str | None = Field(None, description="type aws: the S3 bucket")
    aws_data_prefix: str = Field("", description="type aws: the key prefix of the images")
    aws_region_name: str | None = Field(None, description="type aws: the S3 region")
    aws_endpoint_url: str | None = Field(None, description="type aws: an S3-compatible endpoint")
    aws_access_key_id: str | None = Field(None, description="type aws: access key (else the AWS environment)")
    aws_secret_access_key: str | None = Field(None, description="type aws: secret key (else the AWS environment)")
    aws_session_token: str | None = Field(None, description="type aws: session token, if any")
    source: str | None = Field(None, description="type webshart: a folder of .tar shards, or a Hugging Face repo")
    metadata: str | None = Field(None, description="type webshart: where the shards' .json index is, if apart")
    hf_token: str | None = Field(None, description="type webshart: Hugging Face token for a private repo")
    subfolder: str | None = Field(None, description="type webshart: subfolder of the Hugging Face repo")
    webshart: dict[str, Any] | None = Field(None, description="type webshart: options block (same sub-keys)")

    @field_validator("crop_style")
    @classmethod
    def _check_crop_style(cls, value: str) -> str:
        from sliderstudio.config.dataloader_entries import check_crop_style

        return check_crop_style(value)

    @field_validator("type")
    @classmethod
    def _check_type(cls, value: str) -> str:
        from sliderstudio.config.dataloader_entries import check_backend_type

        return check_backend_type(value)

    @field_validator("dataset_type")
    @classmethod
    def _check_dataset_type(cls, value: str) -> str:
        from sliderstudio.config.dataloader_entries import check_dataset_type

        return check_dataset_type(value)

    @model_validator(mode="after")
    def _needs_folder(self) -> "BucketConfig":
        from sliderstudio.config.dataloader_entries import check_entry

        check_entry(self)
        return self

    @property
    def role(self) -> str:
        if self.slider_strength > 0:
            return "positive"
        if self.slider_strength < 0:
            return "negative"
        return "neutral"


class PromptEntry(BaseModel):
    """One prompt of the library; `adapter_strength` None means the global default."""

    name: str
    prompt: str
    adapter_strength: float | None = None


def strip_dashes(data: dict[str, Any]) -> dict[str, Any]:
    """SimpleTuner configs may spell keys as `--key`."""
    return {str(k).lstrip("-"): v for k, v in data.items()}


def build(model: type[BaseModel], data: dict[str, Any], file: str, where: str = "") -> Any:
    """Validate `data` into `model`, turning pydantic's report into a ConfigError naming file and key."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err.get("loc", ()))
        key = f"{where}{loc}" if loc else (where.rstrip(".") or None)
        msg = err.get("msg", "invalid value").removeprefix("Value error, ")
        value = err.get("input") if loc else None
        text = f"{msg}" + (f" (got {value!r})" if loc and not isinstance(value, dict) else "")
        raise ConfigError(text, file=file, key=key) from None


def parse_train_config(data: dict[str, Any], file: str) -> tuple[TrainConfig, list[str]]:
    """The config and its warnings (keys ignored, values changed); mapped keys are in the report only."""
    config, notes = parse_train_config_report(data, file)
    return config, [str(n) for n in notes if n.kind != "mapped"]


def parse_train_config_report(data: dict[str, Any], file: str) -> tuple[TrainConfig, list[KeyNote]]:
    """SimpleTuner keys mapped or ignored with reasons (simpletuner_keys); unknown keys and bad choices fail."""
    if not isinstance(data, dict):
        raise ConfigError("the top level must be a JSON object of key: value", file=file)
    data, migrated = migrate_config(data, file)  # an older schema_version read in today's form
    kept, notes = normalise_train_data(data, file)
    notes = migrated + notes
    config = build(TrainConfig, kept, file)
    from sliderstudio.config.lr_schedule import check_schedule
    from sliderstudio.config.optimizers import check_optimizer

    check_schedule(config, file)
    return config, notes + check_optimizer(config, file)


def parse_buckets(data: Any, file: str,
                  variables: dict[str, str] | None = None) -> tuple[list[BucketConfig], list[str]]:
    """`variables` fill path templates such as {model_family} (config/dataloader_entries.py)."""
    from sliderstudio.config.dataloader_entries import expand_templates, link_entries, spelled_out, split_entry_keys

    if not isinstance(data, list):
        raise ConfigError("the dataloader config must be a JSON list of bucket objects", file=file)
    buckets, warnings, seen = [], [], set()
    for index, entry in enumerate(data):
        if not isinstance(entry, dict):
            raise ConfigError(f"entry {index} must be an object", file=file, key=f"[{index}]")
        entry = expand_templates(spelled_out(strip_dashes(entry), file, f"[{index}]."), variables or {}, file,
                                 f"[{index}].")
        kept, warn = split_entry_keys(entry, file, f"[{index}].")
        warnings += warn
        bucket = build(BucketConfig, kept, file, where=f"[{index}].")
        if bucket.id in seen:
            raise ConfigError(f"duplicate bucket id '{bucket.id}'", file=file, key=f"[{index}].id")
        seen.add(bucket.id)
        buckets.append(bucket)
    link_entries(buckets, file)
    return buckets, warnings


def parse_prompt_library(data: Any, file: str) -> list[PromptEntry]:
    """name → prompt string, or name → {"prompt": ..., "adapter_strength": number}."""
    if not isinstance(data, dict):
        raise ConfigError("the prompt library must be a JSON object of name: prompt", file=file)
    entries = []
    for name, value in data.items():
        if isinstance(value, str):
            entries.append(PromptEntry(name=name, prompt=value))
            continue
        extra = sorted(set(value) - {"prompt", "adapter_strength"}) if isinstance(value, dict) else []
        if extra:  # before the missing-prompt check: a misspelt "prompt" gets its suggestion
            hint = did_you_mean(extra[0], ("prompt", "adapter_strength"))
            raise ConfigError(f"unknown field(s) {extra}{hint}", file=file, key=name)
        if not isinstance(value, dict) or not isinstance(value.get("prompt"), str):
            raise ConfigError("expected a prompt string or {\"prompt\": str, \"adapter_strength\": number}",
                              file=file, key=name)
        strength = value.get("adapter_strength")
        if strength is not None and (isinstance(strength, bool) or not isinstance(strength, (int, float))):
            raise ConfigError(f"adapter_strength must be a number (got {strength!r})", file=file,
                              key=f"{name}.adapter_strength")
        entries.append(PromptEntry(name=name, prompt=value["prompt"],
                                   adapter_strength=None if strength is None else float(strength)))
    return entries


def coerce_override(key: str, raw: str) -> Any:
    """A `--key value` from the command line: JSON when it parses (numbers, lists, true), else the string."""
    import json

    lowered = raw.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw
