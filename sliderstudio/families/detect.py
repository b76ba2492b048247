"""Which model family a model or an adapter is, read from the files rather than guessed.

A wrong family fails late and cryptically (an SDXL folder loaded as SD 1.x dies inside diffusers
after half a minute with a bare TypeError), while the files say what they are up front:

- an adapter we wrote records `sliderstudio.family` in its safetensors header;
- a diffusers folder's `model_index.json` names its pipeline class, and each family declares its
  pipeline class (`Family.pipeline_class_name`, plus the few related classes listed here);
- a single `.safetensors` checkpoint's key layout tells the architecture (diffusers' own
  `infer_diffusers_model_type`, fed from the header only: no tensor is read);
- a hub id is only readable when its `model_index.json` is already in the local cache.

Every reader is cheap (JSON and safetensors headers) and never raises for an unreadable source: it
returns "cannot tell" with the reason, so the caller decides whether a missing answer is an error.
"""
from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from sliderstudio.kernel.errors import InputError

MAX_HEADER_BYTES = 100 * 1024 * 1024  # a safetensors header this large is not a header
MISSING = "model path"  # the `how` of a model path that names nothing at all

# Pipeline classes (besides each family's own) whose folders hold a model of that family.
RELATED_PIPELINES: dict[str, tuple[str, ...]] = {
    "sd1x": ("StableDiffusionControlNetPipeline", "StableDiffusionImg2ImgPipeline"),
    "sdxl": ("StableDiffusionXLControlNetPipeline", "StableDiffusionXLImg2ImgPipeline"),
    "flux2": ("Flux2KleinPipeline",),
    "lumina2": ("Lumina2Text2ImgPipeline",),
    "stable_cascade": ("StableCascadePriorPipeline",),
}

# Families that share one pipeline class and differ in weights only: any of them may be asked for.
SAME_PIPELINE = {"StableDiffusionPipeline": ("sd1x", "sd2x"),
                 "StableDiffusionControlNetPipeline": ("sd1x", "sd2x")}

# diffusers' single-file model types → (family, flavour).
SINGLE_FILE_TYPES: dict[str, tuple[str, str | None]] = {
    "v1": ("sd1x", None), "inpainting": ("sd1x", None), "v2": ("sd2x", None), "inpainting_v2": ("sd2x", None),
    "xl_base": ("sdxl", None), "xl_inpaint": ("sdxl", None), "playground-v2-5": ("sdxl", None),
    "sd3": ("sd3", "medium"), "sd35_medium": ("sd3", "medium"), "sd35_large": ("sd3", "large"),
    "flux-dev": ("flux", "dev"), "flux-schnell": ("flux", "schnell"), "flux-2-dev": ("flux2", "dev"),
    "chroma": ("chroma", None), "auraflow": ("auraflow", None), "lumina2": ("lumina2", None),
    "z-image-turbo": ("z_image", "turbo"), "hidream": ("hidream", None),
    "wan-t2v-1.3B": ("wan", "t2v-480p-1.3b"), "wan-t2v-14B": ("wan", "t2v-480p-14b"),
    "cosmos-2.0-t2i-2B": ("cosmos", "2b"), "cosmos-2.0-t2i-14B": ("cosmos", "14b"),
    "ltx-video": ("ltxvideo", "0.9.0"), "ltx-video-0.9.1": ("ltxvideo", "0.9.1"),
    "ltx-video-0.9.5": ("ltxvideo", "0.9.5"),
    "stable_cascade_stage_c": ("stable_cascade", None), "stable_cascade_stage_c_lite": ("stable_cascade", None),
}
SD1_KEY = "model.diffusion_model.output_blocks.11.0.skip_connection.weight"  # "v1" is diffusers' fallback too


@dataclass(frozen=True)
class Detection:
    """What one source says. `family` None means it cannot tell (`reason` says why)."""

    family: str | None
    source: str  # the file that said it (or the path that could not be read)
    how: str  # "adapter metadata", "model_index.json", "checkpoint keys", …
    flavour: str | None = None
    also: tuple[str, ...] = ()  # other families the same files fit equally (SD 1.x / 2.x share a pipeline)
    reason: str = ""

    @property
    def known(self) -> bool:
        return self.family is not None

    def accepts(self, family_id: str) -> bool:
        """Whether asking for `family_id` agrees with what the files say."""
        return self.family is None or family_id == self.family or family_id in self.also

    def describe(self) -> str:
        if self.family is None:
            return f"{self.source}: cannot tell the model family ({self.reason})"
        return f"'{self.family}' ({self.how} of {self.source})"


def _unknown(source: str | Path, how: str, reason: str) -> Detection:
    return Detection(None, str(source), how, reason=reason)


def family_for_pipeline(class_name: str) -> list[str]:
    """Family ids whose declared pipeline class (or a related one) is `class_name`."""
    from sliderstudio.families.registry import FAMILIES

    return [f.id for f in FAMILIES.values()
            if class_name == f.pipeline_class_name or class_name in RELATED_PIPELINES.get(f.id, ())]


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _sd_version(folder: Path) -> tuple[str, str]:
    """SD 1.x or 2.x in one StableDiffusionPipeline folder: the text width, else the prediction type."""
    unet = _read_json(folder / "unet" / "config.json") or {}
    width = unet.get("cross_attention_dim")
    if width == 1024:
        return "sd2x", "cross_attention_dim 1024"
    if width == 768:
        return "sd1x", "cross_attention_dim 768"
    scheduler = _read_json(folder / "scheduler" / "scheduler_config.json") or {}
    if scheduler.get("prediction_type") == "v_prediction":
        return "sd2x", "v-prediction"
    return "sd1x", "ε-prediction"


def _flavour(family: str, folder: Path) -> str | None:
    """The flavour where the folder's configs tell it (Flux: a guidance embedding means dev)."""
    if family == "flux":
        transformer = _read_json(folder / "transformer" / "config.json") or {}
        if "guidance_embeds" in transformer:
            return "dev" if transformer["guidance_embeds"] else "schnell"
    if family == "sd2x":
        scheduler = _read_json(folder / "scheduler" / "scheduler_config.json") or {}
        return "v-prediction" if scheduler.get("prediction_type") == "v_prediction" else "epsilon"
    return None


def detect_folder(folder: Path) -> Detection:
    """A diffusers folder: `model_index.json`'s `_class_name`, or Stable Cascade's prior/ + decoder/."""
    index_path = folder / "model_index.json"
    if not index_path.exists():
        if (folder / "prior" / "model_index.json").exists() and (folder / "decoder").is_dir():
            return Detection("stable_cascade", str(folder / "prior" / "model_index.json"), "model_index.json")
        return _unknown(folder, "model_index.json", "no model_index.json in the folder")
    index = _read_json(index_path)
    if index is None:
        return _unknown(index_path, "model_index.json", "not a readable JSON object")
    class_name = str(index.get("_class_name") or "")
    found = family_for_pipeline(class_name)
    if not found:
        return _unknown(index_path, "model_index.json", f"pipeline class '{class_name}' is not a family here")
    family, also = found[0], tuple(found[1:])
    if class_name in SAME_PIPELINE:
        family, _why = _sd_version(folder)
        also = tuple(f for f in SAME_PIPELINE[class_name] if f != family)
    return Detection(family, str(index_path), f"model_index.json ({class_name})", _flavour(family, folder), also)


def read_safetensors_header(path: Path) -> dict[str, Any]:
    """The JSON header of a safetensors file (tensor names, shapes, metadata) without reading tensors."""
    with open(path, "rb") as fh:
        raw = fh.read(8)
        if len(raw) != 8:
            raise ValueError("file too short for a safetensors header")
        (length,) = struct.unpack("<Q", raw)
        if length > MAX_HEADER_BYTES:
            raise ValueError(f"header length {length} is not plausible")
        header = json.loads(fh.read(length).decode("utf-8"))
    if not isinstance(header, dict):
        raise ValueError("header is not a JSON object")
    return header


class _Shape:
    """Stands in for a tensor where diffusers only asks for `.shape`."""

    def __init__(self, shape: Iterable[int]):
        import torch

        self.shape = torch.Size(list(shape))


def detect_checkpoint(path: Path) -> Detection:
    """A single-file checkpoint: diffusers' key-layout rules, applied to the header's names and shapes."""
    how = "checkpoint keys"
    try:
        header = read_safetensors_header(path)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        return _unknown(path, how, f"not a readable safetensors file ({exc})")
    meta = header.pop("__metadata__", None) or {}
    if "sliderstudio.family" in meta:  # one of our own adapters given as a model
        return _unknown(path, how, "this is a Slider Studio adapter, not a base model")
    keys = {k: _Shape(v.get("shape", ())) for k, v in header.items() if isinstance(v, dict)}
    try:
        from diffusers.loaders.single_file_utils import infer_diffusers_model_type

        model_type = infer_diffusers_model_type(keys)
    except Exception as exc:  # diffusers indexes keys it assumes exist; a partial layout is "cannot tell"
        return _unknown(path, how, f"unrecognised key layout ({type(exc).__name__}: {exc})")
    if model_type == "v1" and SD1_KEY not in keys:
        return _unknown(path, how, "no key layout of a known family")
    if model_type not in SINGLE_FILE_TYPES:
        return _unknown(path, how, f"diffusers reads it as '{model_type}', which no family here trains")
    family, flavour = SINGLE_FILE_TYPES[model_type]
    return Detection(family, str(path), f"{how} ({model_type})", flavour)


def detect_hub_id(repo: str) -> Detection:
    """A hub id: only a `model_index.json` already in the local cache can be read (no network)."""
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(repo, "model_index.json")
    except Exception as exc:  # a malformed repo id
        return _unknown(repo, "hub cache", f"not a readable hub id ({exc})")
    if not isinstance(cached, str):
        return _unknown(repo, "hub cache", "a hub id whose model_index.json is not in the local cache")
    return detect_folder(Path(cached).parent)


def detect_model(spec: str) -> Detection:
    """The family of a base model given as the config or `--model` spells it."""
    from sliderstudio.kernel.resources import toy_model_dir
    from sliderstudio.families.loading import PICKLE_SUFFIXES, TOY_ALIAS

    if spec.strip() == TOY_ALIAS:
        return detect_folder(toy_model_dir())
    path = Path(spec).expanduser()
    if path.is_dir():
        return detect_folder(path)
    if path.is_file():
        if path.suffix.lower() in PICKLE_SUFFIXES:
            return _unknown(path, "checkpoint keys", "a pickle checkpoint (refused)")
        return detect_checkpoint(path)
    if spec.count("/") == 1 and not spec.startswith((".", "/", "~")):
        return detect_hub_id(spec)
    return _unknown(path, MISSING, "no such folder or file")


def detect_adapter(path: str | Path) -> Detection:
    """The family an adapter was trained for, from its `sliderstudio.family` metadata."""
    path = Path(path)
    how = "adapter metadata"
    try:
        meta = read_safetensors_header(path).get("__metadata__") or {}
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        return _unknown(path, how, f"not a readable safetensors file ({exc})")
    raw = meta.get("sliderstudio.family")
    if raw is None:
        return _unknown(path, how, "the file records no family")
    try:
        family = json.loads(raw)
    except ValueError:
        family = raw
    from sliderstudio.families.registry import get_family

    try:
        return Detection(get_family(str(family)).id, str(path), how)
    except InputError:
        return _unknown(path, how, f"it records an unknown family '{family}'")


def choose_family(requested: str | None, detections: list[Detection], *, key: str = "--family",
                  file: str | None = None) -> tuple[str, list[Detection]]:
    """The family to use: the requested one if every readable source agrees, else what the files say.

    Returns (family id, the detections that told it). Raises InputError (exit 2) when the sources
    disagree with each other or with the request, or when nothing was asked and nothing can tell.
    """
    from sliderstudio.families.registry import get_family

    known = [d for d in detections if d.known]
    try:
        wanted = get_family(requested, file).id if requested else None
    except InputError as exc:  # name the option the user typed, not the config key
        raise InputError(exc.message, file=file, key=key, value=requested, expected=exc.expected) from None
    if wanted is not None:
        against = [d for d in known if not d.accepts(wanted)]
        if against:
            raise InputError(f"{key} is '{wanted}' but the files say {against[0].describe()}; "
                             f"leave {key} out or make it '{against[0].family}'", file=file, key=key, value=wanted)
        return wanted, known
    if not known:
        reasons = "; ".join(d.describe() for d in detections) or "no model given"
        raise InputError(f"the model family cannot be read from the files ({reasons}); pass it explicitly",
                         file=file, key=key)
    common = set.intersection(*({d.family, *d.also} for d in known))
    if not common:
        raise InputError(f"the files disagree about the model family: {known[0].describe()} but "
                         f"{known[1].describe()}", file=file, key=key)
    primaries = [d.family for d in known if d.family in common]
    return (primaries[-1] if primaries else sorted(common)[0]), known


def family_for(model: str | None, adapter: str | Path | None = None, requested: str | None = None,
               key: str = "--family") -> tuple[str, str]:
    """The family for a model (and optionally an adapter on it), with a line saying where it came from."""
    detections = ([detect_model(model)] if model else []) + ([detect_adapter(adapter)] if adapter else [])
    if detections and detections[0].how == MISSING:
        raise InputError("no such model folder or file", file=model, key="--model")
    family, told = choose_family(requested, detections, key=key)
    if requested:
        return family, f"family '{family}' (given by {key})"
    return family, f"family '{family}' read from " + " and ".join(f"{d.how} of {d.source}" for d in told)


def config_family(config: Any, file: str) -> tuple[str, str | None]:
    """A training config's family: `model_family` checked against the model's files, or read from them
    when the config does not set it. Returns (family id, a line for the log when it was read)."""
    from sliderstudio.families.registry import get_family

    detection = detect_model(config.pretrained_model_name_or_path)
    if "model_family" in config.model_fields_set or not detection.known:
        return choose_family(config.model_family, [detection], key="model_family", file=file)[0], None
    family = get_family(detection.family).id
    return family, f"model_family not set: '{family}' read from the {detection.how} of {detection.source}"
