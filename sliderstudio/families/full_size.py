"""The published configs of each family's real, full-size model, kept as data in the package.

`presets/full_size/<family>.json` restates the denoiser's `config.json` from the Hugging Face
repository named in `model` (restated, not downloaded: the app must answer offline), plus the
parameter counts of the text encoders and the VAE with their sources. The memory planner sizes
the weights from it, and `sliderstudio targets --family F` shows the full-size target table from
it before anything is downloaded.
"""
from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sliderstudio.kernel.errors import InputError
from sliderstudio.kernel.resources import has_preset, preset_names, read_preset

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class Component:
    """A text encoder or VAE the pipeline loads beside the denoiser: only its size matters here."""

    name: str
    params: int
    source: str


@dataclass(frozen=True)
class FullSizeModel:
    """One family's published full-size model: the denoiser config and its companions' sizes."""

    family: str
    model: str           # the hub id the config was restated from
    subfolder: str       # where the denoiser's config.json lives in the diffusers folder
    class_name: str
    config: dict[str, Any]
    text_encoders: tuple[Component, ...]
    vae: Component
    activation: dict[str, Any]   # the planner's activation model: tokens, block kinds × count × width

    def write_folder(self, root: Path) -> Path:
        """A model folder holding only the denoiser's config.json, where the family's `skeleton` reads it."""
        folder = root / self.family / self.subfolder
        folder.mkdir(parents=True, exist_ok=True)
        body = {"_class_name": self.class_name, **self.config}
        (folder / "config.json").write_text(json.dumps(body), encoding="utf-8")
        return root / self.family


def families() -> list[str]:
    """The families that have a built-in full-size config."""
    return preset_names("full_size")


@lru_cache(maxsize=None)
def full_size(family: str) -> FullSizeModel:
    if not has_preset("full_size", family):
        raise InputError("no built-in full-size config for this family", key="--family", value=family)
    data = read_preset("full_size", family)
    return FullSizeModel(family, data["model"], data["subfolder"], data["class_name"], data["config"],
                         tuple(Component(**c) for c in data["text_encoders"]), Component(**data["vae"]),
                         data["activation"])


def full_size_skeleton(family: str) -> "torch.nn.Module":
    """The full-size denoiser on the meta device (no memory, no download), built by the family itself."""
    from sliderstudio.families.registry import get_family

    with tempfile.TemporaryDirectory(prefix="sliderstudio-full-size-") as tmp:
        return get_family(family).skeleton(full_size(family).write_folder(Path(tmp)))


def uncached_hub_id(model: str) -> bool:
    """A hub id whose model_index.json is not in the local Hugging Face cache (a local look-up only):
    its module tree comes from the built-in config instead of a network retry that fails offline."""
    from sliderstudio.families.detect import detect_hub_id

    if Path(model).expanduser().exists() or model.count("/") != 1 or model.startswith((".", "/", "~")):
        return False
    return detect_hub_id(model).family is None
