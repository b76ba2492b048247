"""All model families by id, with SimpleTuner's spellings accepted as aliases.

Each family module in this package exports `FAMILIES: tuple[Family, ...]`; the registry collects
them, so adding a family touches its own module and its preset file only.
"""
from __future__ import annotations

import importlib
import pkgutil

import sliderstudio.families as package
from sliderstudio.kernel.errors import ConfigError
from sliderstudio.families.base import Family

NOT_FAMILIES = frozenset({"base", "registry", "loading", "tiny", "selfcheck", "flow", "compat"})


def _discover() -> dict[str, Family]:
    found: dict[str, Family] = {}
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
        if info.name in NOT_FAMILIES or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        for family in getattr(module, "FAMILIES", ()):
            found[family.id] = family
    return found


FAMILIES: dict[str, Family] = _discover()


def _normalise(name: str) -> str:
    return name.strip().lower().replace("-", "_").replace(".", "")


def get_family(name: str, file: str | None = None) -> Family:
    """Look a family up by id or alias; a ConfigError lists the known ids otherwise."""
    key = _normalise(name)
    for family in FAMILIES.values():
        if key == family.id or key in (_normalise(a) for a in family.aliases):
            return family
    known = ", ".join(sorted(FAMILIES))
    raise ConfigError(f"unknown model family '{name}'", file=file, key="model_family", expected=f"one of {known}")
