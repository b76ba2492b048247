"""All model families by id, with SimpleTuner's spellings accepted as aliases."""
from __future__ import annotations

from sliderstudio.core.errors import ConfigError
from sliderstudio.families.base import Family
from sliderstudio.families.sd import SD1X, SD2X, SDXL

FAMILIES: dict[str, Family] = {f.id: f for f in (SD1X, SD2X, SDXL)}


def _normalise(name: str) -> str:
    return name.strip().lower().replace("-", "_")


def get_family(name: str, file: str | None = None) -> Family:
    """Look a family up by id or alias; a ConfigError lists the known ids otherwise."""
    key = _normalise(name)
    for family in FAMILIES.values():
        if key == family.id or key in (_normalise(a) for a in family.aliases):
            return family
    known = ", ".join(sorted(FAMILIES))
    raise ConfigError(f"unknown model family '{name}'", file=file, key="model_family", expected=f"one of {known}")
