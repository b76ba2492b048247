"""The forms a SimpleTuner dataloader entry can take, and how entries link to each other.

SimpleTuner configs mix image entries with cache entries (`text_embeds`, `image_embeds`) and
ControlNet `conditioning` entries that image entries point at by id. Checking the forms and the links
here, while the JSON is parsed, means a typo in an id or an unsupported backend costs an exit 2 naming
the key, not a crash after the model has loaded. Path templates (`{model_family}`) expand here too.
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from sliderstudio.kernel.errors import ConfigError
from sliderstudio.kernel.suggest import did_you_mean

if TYPE_CHECKING:
    from sliderstudio.config.config import BucketConfig

BACKEND_TYPES = ("local", "huggingface", "csv", "aws", "webshart")
UNSUPPORTED_BACKENDS = {
    "memory": "use a local cache folder (cache_dir) instead",
}
CROP_STYLES = ("center", "centre", "random", "corner", "face")  # face: engine/face_crops.py
UNSUPPORTED_CROP_STYLES: dict[str, str] = {}
DATASET_TYPES = ("image", "conditioning", "text_embeds", "image_embeds")
UNSUPPORTED_DATASET_TYPES = ("video", "audio", "conditioning_image_embeds")
# Path keys in which templates expand. SimpleTuner expands {model_family}; {id} is Slider Studio's addition.
TEMPLATE_KEYS = ("instance_data_dir", "cache_dir_vae", "cache_dir", "conditioning_data_dir", "csv_cache_dir",
                 "csv_file")
TEMPLATE = re.compile(r"\{([^{}]*)\}")


def check_backend_type(value: str) -> str:
    if value in BACKEND_TYPES:
        return value
    how = UNSUPPORTED_BACKENDS.get(value)
    if how:
        raise ValueError(f"type '{value}' is not supported by Slider Studio: {how}, then use "
                         "\"type\": \"local\" with instance_data_dir pointing at that folder")
    raise ValueError(f"unknown type '{value}' (expected one of {', '.join(BACKEND_TYPES)})")


def check_crop_style(value: str) -> str:
    if value in CROP_STYLES:
        return value
    why = UNSUPPORTED_CROP_STYLES.get(value)
    if why:
        raise ValueError(f"crop_style '{value}' is not supported by Slider Studio: {why}; "
                         "use center, random, corner or face")
    raise ValueError(f"unknown crop_style '{value}' (expected one of {', '.join(CROP_STYLES)})")


def check_dataset_type(value: str) -> str:
    if value in DATASET_TYPES:
        return value
    if value in UNSUPPORTED_DATASET_TYPES:
        raise ValueError(f"dataset_type '{value}' is not supported by Slider Studio (image sliders only)")
    raise ValueError(f"unknown dataset_type '{value}' (expected one of {', '.join(DATASET_TYPES)})")


def check_entry(entry: "BucketConfig") -> None:
    """What each form needs; raises ValueError (the parser adds file and entry)."""
    if entry.type == "huggingface":
        if not (entry.dataset_name or (entry.huggingface or {}).get("dataset_name")):
            raise ValueError("a huggingface entry needs dataset_name (a Hugging Face data set id)")
        if entry.dataset_type != "image":
            raise ValueError("type 'huggingface' holds image entries only")
    elif entry.type in ("csv", "aws", "webshart"):
        check_remote_entry(entry)
    elif entry.dataset_type in ("image", "conditioning") and not entry.instance_data_dir:
        raise ValueError(f"a{'n image' if entry.dataset_type == 'image' else ' conditioning'} entry "
                         "needs instance_data_dir")
    if entry.caption_strategy == "csv" and entry.type != "csv":
        raise ValueError("caption_strategy 'csv' needs \"type\": \"csv\" (captions come from csv_caption_column)")
    if entry.caption_strategy == "webshart" and entry.type != "webshart":
        raise ValueError("caption_strategy 'webshart' needs \"type\": \"webshart\" (captions come from the "
                         "shards' index or their .txt members)")
    if entry.caption_strategy == "huggingface" and entry.type != "huggingface":
        raise ValueError("caption_strategy 'huggingface' needs \"type\": \"huggingface\"")
    if entry.caption_strategy == "parquet" and not (entry.parquet or {}).get("path"):
        raise ValueError("caption_strategy 'parquet' needs a parquet block with path (a .parquet or .jsonl table)")
    if entry.caption_strategy == "instanceprompt" and not entry.instance_prompt:
        raise ValueError("caption_strategy 'instanceprompt' needs instance_prompt")
    if entry.crop_aspect_buckets is not None and any(a <= 0 for a in entry.crop_aspect_buckets):
        raise ValueError("crop_aspect_buckets must hold positive aspect ratios (width / height)")
    if entry.target_downsample_size and entry.maximum_image_size and \
            entry.target_downsample_size > entry.maximum_image_size:
        raise ValueError("target_downsample_size must not exceed maximum_image_size")


def check_remote_entry(entry: "BucketConfig") -> None:
    """A csv entry needs its table, an aws entry its bucket; both hold training images only."""
    if entry.type == "csv" and not entry.csv_file:
        raise ValueError("a csv entry needs csv_file (a table with a column of image URLs or paths)")
    if entry.type == "aws" and not entry.aws_bucket_name:
        raise ValueError("an aws entry needs aws_bucket_name")
    if entry.type == "webshart" and not (entry.source or (entry.webshart or {}).get("source")):
        raise ValueError("a webshart entry needs source (a folder of .tar shards, or a Hugging Face dataset repo)")
    if entry.dataset_type != "image":
        raise ValueError(f"type '{entry.type}' holds image entries only in Slider Studio (caches stay in the "
                         "project's cache/ folder; ControlNet conditioning images come from a local folder)")


def split_entry_keys(entry: dict[str, Any], file: str, where: str) -> tuple[dict[str, Any], list[str]]:
    """Keys Slider Studio reads, and a warning (with its reason) for each SimpleTuner key it ignores.

    classify_bucket_key is the one judge, so the warning says what ignoring the key means; only a key
    SimpleTuner's data backends do not read either is an error, with a did-you-mean.
    """
    from sliderstudio.config.simpletuner_keys import bucket_key_names, classify_bucket_key

    kept, warnings = {}, []
    for key, value in entry.items():
        status, reason = classify_bucket_key(key)
        if status == "implemented":
            kept[key] = value
        elif status == "ignored":
            warnings.append(f"{file}: {where}{key} is a SimpleTuner option Slider Studio does not implement; "
                            f"ignored — {reason}")
        else:
            raise ConfigError(f"unknown key{did_you_mean(key, bucket_key_names())}", file=file, key=f"{where}{key}",
                              value=value)
    return kept, warnings


# SimpleTuner's alternative spellings of entry keys (DATALOADER.md: `disable` for `disabled`).
SPELLINGS = {"disable": "disabled"}


def spelled_out(entry: dict[str, Any], file: str, where: str) -> dict[str, Any]:
    """`disable: true` must skip the entry, not be ignored as an unknown option."""
    out = dict(entry)
    for alias, key in SPELLINGS.items():
        if alias in out:
            if key in out and out[key] != out[alias]:
                raise ConfigError(f"'{alias}' and '{key}' disagree", file=file, key=f"{where}{alias}",
                                  value=out[alias])
            out[key] = out.pop(alias)
    return out


def expand_templates(entry: dict[str, Any], variables: dict[str, str], file: str, where: str) -> dict[str, Any]:
    """`{model_family}` (and `{id}`) in path keys; an unknown name is an error naming the key."""
    names = {**variables, "id": str(entry.get("id", ""))}
    out = dict(entry)
    for key in TEMPLATE_KEYS:
        value = out.get(key)
        if not isinstance(value, str) or "{" not in value:
            continue
        for name in TEMPLATE.findall(value):
            if name not in names:
                known = ", ".join("{" + n + "}" for n in sorted(names))
                raise ConfigError(f"unknown template '{{{name}}}' (known: {known})", file=file,
                                  key=f"{where}{key}", value=value)
        out[key] = TEMPLATE.sub(lambda m: names[m.group(1)], value)
    return out


def _ids(value: str | list[str] | None) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def link_entries(entries: list["BucketConfig"], file: str) -> None:
    """Check cross-entry references and fill what they imply.

    An image entry's `conditioning_data` names conditioning entries; the first one's folder becomes
    its ControlNet `conditioning_data_dir` unless that is set. `image_embeds` names the entry whose
    `cache_dir` holds its latents (unless `cache_dir_vae` is set); `text_embeds` must name a text cache.
    """
    by_id = {e.id: e for e in entries}
    for index, entry in enumerate(entries):
        where = f"[{index}]."
        linked = _linked(by_id, _ids(entry.conditioning_data), "conditioning", file, where + "conditioning_data")
        if linked and not entry.conditioning_data_dir:
            entry.conditioning_data_dir = linked[0].instance_data_dir
        for embeds in _linked(by_id, _ids(entry.image_embeds), "image_embeds", file, where + "image_embeds"):
            if embeds.cache_dir and not entry.cache_dir_vae:
                entry.cache_dir_vae = embeds.cache_dir
        _linked(by_id, _ids(entry.text_embeds), "text_embeds", file, where + "text_embeds")


def _linked(by_id: dict[str, "BucketConfig"], ids: list[str], kind: str, file: str,
            key: str) -> list["BucketConfig"]:
    out = []
    for ref in ids:
        target = by_id.get(ref)
        if target is None:
            raise ConfigError(f"no entry with id '{ref}'", file=file, key=key, value=ref)
        if target.dataset_type != kind:
            raise ConfigError(f"entry '{ref}' is a {target.dataset_type} entry, not {kind}", file=file,
                              key=key, value=ref)
        out.append(target)
    return out


def text_cache_dir(entries: list["BucketConfig"]) -> str | None:
    """The default text_embeds entry's cache_dir (where caption embeddings go), if one is set."""
    for entry in entries:
        if entry.dataset_type == "text_embeds" and not entry.disabled and entry.cache_dir and \
                (entry.default or sum(e.dataset_type == "text_embeds" for e in entries) == 1):
            return entry.cache_dir
    return None
