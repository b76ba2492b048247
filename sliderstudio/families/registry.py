"""All model families by id, with SimpleTuner's spellings accepted as aliases.

The family modules are declared in one place, `FAMILY_MODULES`; each of them exports
`FAMILIES: tuple[Family, ...]`. Only those modules are imported, so the helper modules of this
package (loading, selfcheck, compat, …) need no exclusion list, and the registry never imports a
module that imports the registry back. Adding a family: its module, its preset files, one name here
(tests/families/test_family_suite.py fails while a module that defines FAMILIES is not listed).
"""
from __future__ import annotations

import importlib

import sliderstudio.families as package
from sliderstudio.kernel.errors import ConfigError
from sliderstudio.families.base import Family

FAMILY_MODULES = ("auraflow", "chroma", "cosmos", "flux", "flux2", "hidream", "kandinsky5", "ltxvideo", "lumina2",
                  "qwen_image", "sd", "sd3", "stable_cascade", "wan", "z_image")


def discover(modules: tuple[str, ...] = FAMILY_MODULES, package_name: str = package.__name__) -> dict[str, Family]:
    """The families the named modules export, by id, in module-name order."""
    found: dict[str, Family] = {}
    for name in sorted(modules):
        module = importlib.import_module(f"{package_name}.{name}")
        for family in module.FAMILIES:
            found[family.id] = family
    return found


FAMILIES: dict[str, Family] = discover()


def get_family(name: str, file: str | None = None) -> Family:
    """Look a family up by id or alias; a ConfigError lists the known ids otherwise."""
    for family in FAMILIES.values():
        if family.answers_to(name):
            return family
    known = ", ".join(sorted(FAMILIES))
    raise ConfigError(f"unknown model family '{name}'", file=file, key="model_family", expected=f"one of {known}")
