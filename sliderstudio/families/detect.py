"""Which model family a model or an adapter is, read from the files rather than guessed.

A wrong family fails late and cryptically (an SDXL folder loaded as SD 1.x dies inside diffusers
after half a minute with a bare TypeError), while the files say what they are up front:

- an adapter we wrote records `sliderstudio.family` in its safetensors header;
- a diffusers folder's `model_index.json` names its pipeline class, and each family declares the
  classes whose folders hold its model (`Family.pipeline_class_name`, `related_pipelines`); where
  families share a class (SD 1.x / 2.x) each says from the folder's configs whether it is its own
  (`Family.folder_evidence`), and a family reads its flavour there (`Family.folder_flavour`);
- a single `.safetensors` checkpoint's key layout tells the architecture (diffusers' own
  `infer_diffusers_model_type`, fed from the header only: no tensor is read), and each family
  declares which of diffusers' types are its own (`Family.single_file_types`);
- a hub id is only readable when its `model_index.json` is already in the local cache.

Every reader is cheap (JSON and safetensors headers) and never raises for an unreadable source: it
returns "cannot tell" with the reason, so the caller decides whether a missing answer is an error.
"""
from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from sliderstudio.families.folder_configs import read_json_object
from sliderstudio.kernel.errors import InputError

if TYPE_CHECKING:
    from sliderstudio.families.base import Family

MAX_HEADER_BYTES = 100 * 1024 * 1024  # a safetensors header this large is not a header
MISSING = "model path"  # the `how` of a model path that names nothing at all

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


def families_for_pipeline(class_name: str) -> list[Family]:
    """The families whose folders a pipeline class saves (its own or a related class), registry order."""
    from sliderstudio.families.registry import FAMILIES

    return [f for f in FAMILIES.values() if f.saved_by(class_name)]


def _split_layout(folder: Path) -> Detection | None:
    """A folder without a root model_index.json that some family reads as its own layout."""
    from sliderstudio.families.registry import FAMILIES

    for family in FAMILIES.values():
        index = family.split_layout_index(folder)
        if index is not None:
            return Detection(family.id, str(index), "model_index.json")
    return None


def detect_folder(folder: Path) -> Detection:
    """A diffusers folder: `model_index.json`'s `_class_name`, or a family's own split layout."""
    index_path = folder / "model_index.json"
    if not index_path.exists():
        return _split_layout(folder) or _unknown(folder, "model_index.json", "no model_index.json in the folder")
    index = read_json_object(index_path)
    if index is None:
        return _unknown(index_path, "model_index.json", "not a readable JSON object")
    class_name = str(index.get("_class_name") or "")
    found = families_for_pipeline(class_name)
    if not found:
        return _unknown(index_path, "model_index.json", f"pipeline class '{class_name}' is not a family here")
    family = next((f for f in found if f.folder_evidence(folder)), found[0]) if len(found) > 1 else found[0]
    also = tuple(f.id for f in found if f is not family)
    return Detection(family.id, str(index_path), f"model_index.json ({class_name})",
                     family.folder_flavour(folder), also)


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
    from sliderstudio.families.registry import FAMILIES

    family = next((f for f in FAMILIES.values() if model_type in f.single_file_types), None)
    if family is None:
        return _unknown(path, how, f"diffusers reads it as '{model_type}', which no family here trains")
    return Detection(family.id, str(path), f"{how} ({model_type})", family.single_file_types[model_type])


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
