"""Denoiser configs of the real, full-size models, one per family, for meta-device checks.

The data ships with the package (presets/full_size/<family>.json, read by
sliderstudio/families/full_size.py through sliderstudio/kernel/resources.py), where the memory planner and `targets --family` use it too.
"""
from __future__ import annotations

from pathlib import Path

from sliderstudio.families.full_size import families, full_size

MODELS = {family: full_size(family).model for family in families()}


def config_of(family_id: str) -> dict:
    """The denoiser config (diffusers keys) of the family's full-size model."""
    return dict(full_size(family_id).config)


def write_model_folder(family_id: str, root: Path) -> Path:
    """A folder with only the denoiser's config.json, where the family's `skeleton` reads it."""
    return full_size(family_id).write_folder(root)
