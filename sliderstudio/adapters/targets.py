"""Target resolution (SPEC §4): which modules a preset's names match, counted per entry.

Matching is by dotted-name suffix: module `a.b.attn1.to_q` matches `attn1.to_q` and `to_q`; a `*` segment
matches any one segment, so `layers.*.attention.to_q` selects the main blocks but not `context_refiner.0.attention.to_q`
(models that reuse one block class for the image and the caption path need this). It runs on
a `meta`-device skeleton built from the model config, so no weights are needed. A preset that
matches nothing, or only layer types an adapter cannot wrap, is an error before training starts.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path

import torch
from torch import nn

from sliderstudio.config.config import TrainConfig
from sliderstudio.kernel.errors import TargetError
from sliderstudio.families.base import Family
from sliderstudio.families.loading import resolve_model_path

ADAPTER_INTERNALS = re.compile(r"\.(base_layer|lora_[A-Za-z_]+|lokr_[\w]+)(\.|$)")
SUPPORTED_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


@dataclass
class TargetEntry:
    pattern: str
    count: int = 0
    layer_types: dict[str, int] = field(default_factory=dict)
    unsupported: dict[str, int] = field(default_factory=dict)


@dataclass
class TargetReport:
    preset: str
    entries: list[TargetEntry]
    module_names: list[str]

    @property
    def total(self) -> int:
        return len(self.module_names)

    def table(self) -> str:
        """The human-readable table `sliderstudio targets` prints."""
        width = max([len(e.pattern) for e in self.entries] + [7])
        lines = [f"{'pattern':<{width}}  matches  layer types"]
        for e in self.entries:
            types = ", ".join(f"{k}×{v}" for k, v in sorted(e.layer_types.items())) or "-"
            if e.unsupported:
                types += "  (unsupported: " + ", ".join(f"{k}×{v}" for k, v in e.unsupported.items()) + ")"
            lines.append(f"{e.pattern:<{width}}  {e.count:>7}  {types}")
        lines.append(f"{'total':<{width}}  {self.total:>7}  modules (preset: {self.preset})")
        return "\n".join(lines)


def matches(name: str, pattern: str) -> bool:
    """Dotted-suffix match; a `*` segment stands for any one segment of the module path."""
    if "*" not in pattern:
        return name == pattern or name.endswith("." + pattern)
    parts, wanted = name.split("."), pattern.split(".")
    return len(parts) >= len(wanted) and all(fnmatchcase(p, w) for p, w in zip(parts[-len(wanted):], wanted))


def resolve_on_module(model: nn.Module, patterns: list[str], preset: str = "custom") -> TargetReport:
    entries = [TargetEntry(p) for p in patterns]
    chosen: list[str] = []
    for name, module in model.named_modules():
        if ADAPTER_INTERNALS.search(name):
            continue
        module = getattr(module, "base_layer", module)  # look through an adapter already attached
        for entry in entries:
            if name and matches(name, entry.pattern):
                _count(entry, name, module, chosen)
    return TargetReport(preset, entries, chosen)


def is_class_entry(model: nn.Module, entry: str) -> bool:
    """A bare word that names no module (by dotted suffix) but is some module's class name (SPEC §5)."""
    if "." in entry or "*" in entry:
        return False
    names = [name for name, _ in model.named_modules() if name and not ADAPTER_INTERNALS.search(name)]
    if any(matches(name, entry) for name in names):
        return False
    return any(type(m).__name__ == entry for m in model.modules())


def pattern_match(name: str, pattern: str, use_fnmatch: bool = False) -> bool:
    """LyCORIS's `target_name` / `exclude_name` rule: fnmatch, or a regular expression from the start."""
    if use_fnmatch:
        return fnmatchcase(name, pattern)
    try:
        return re.match(pattern, name) is not None
    except re.error:
        return name == pattern


def _count(entry: TargetEntry, name: str, module: nn.Module, chosen: list[str]) -> None:
    kind = type(module).__name__
    if isinstance(module, SUPPORTED_TYPES):
        entry.count += 1
        entry.layer_types[kind] = entry.layer_types.get(kind, 0) + 1
        if name not in chosen:
            chosen.append(name)
    else:
        entry.unsupported[kind] = entry.unsupported.get(kind, 0) + 1


def resolve_mixed(model: nn.Module, entries: list[str], preset: str = "custom", regexes: list[str] = (),
                  exclude: list[str] = (), use_fnmatch: bool = False) -> TargetReport:
    """Module paths (dotted suffix), class names (every supported layer inside) and LyCORIS regexes.

    Module-path entries behave exactly as in `resolve_on_module`; a class entry is listed as
    `Attention (class)`, a regex entry as `re:PATTERN`. `exclude` removes modules from every entry.
    """
    classes = {e for e in entries if is_class_entry(model, e)}
    paths = [e for e in entries if e not in classes]
    report = resolve_on_module(model, paths, preset)
    by_label = {e.pattern: e for e in report.entries}
    chosen = list(report.module_names)
    extra = [TargetEntry(f"{c} (class)") for c in entries if c in classes]
    extra += [TargetEntry(f"re:{r}") for r in regexes]
    for name, module in model.named_modules():
        if not name or ADAPTER_INTERNALS.search(name):
            continue
        for entry in extra:
            if entry.pattern.startswith("re:") and pattern_match(name, entry.pattern[3:], use_fnmatch):
                _count(entry, name, getattr(module, "base_layer", module), chosen)
            elif entry.pattern.endswith(" (class)") and type(module).__name__ == entry.pattern[:-8]:
                for sub, leaf in module.named_modules():
                    full = f"{name}.{sub}" if sub else name
                    if not ADAPTER_INTERNALS.search(full) and isinstance(getattr(leaf, "base_layer", leaf),
                                                                         SUPPORTED_TYPES):
                        _count(entry, full, getattr(leaf, "base_layer", leaf), chosen)
    ordered = [by_label.get(e) or next(x for x in extra if x.pattern == f"{e} (class)") for e in entries]
    ordered += [x for x in extra if x.pattern.startswith("re:")]
    if exclude:
        chosen = [n for n in chosen if not any(n == p or pattern_match(n, p, use_fnmatch) for p in exclude)]
    return TargetReport(preset, ordered, chosen)


def require_matches(report: TargetReport, key: str = "peft_lora_target_modules") -> TargetReport:
    if report.total > 0:
        return report
    unsupported = Counter()
    for e in report.entries:
        unsupported.update(e.unsupported)
    why = "no module matches any entry"
    if unsupported:
        why = "entries match only module types an adapter cannot wrap (" + ", ".join(unsupported) + ")"
    raise TargetError(f"target preset '{report.preset}' selects zero modules: {why}; entries: "
                      + ", ".join(e.pattern for e in report.entries), key=key)


def text_path_modules(names: list[str], family: Family) -> list[str]:
    """The names on the family's text path (its `text_path_markers`), which a slider must not touch (SPEC §1)."""
    return [n for n in names if family.on_text_path(n)]


def preset_patterns(family: Family, config: TrainConfig) -> tuple[str, list[str]]:
    """The preset a config selects: an explicit list beats slider_target_preset beats slider_lora_target."""
    name = config.target_preset
    if name == "custom":
        return name, list(config.peft_lora_target_modules)
    return name, family.presets[name]


def patterns_for(family: Family, preset: str | list[str]) -> tuple[str, list[str]]:
    if isinstance(preset, list):
        return "custom", preset
    if preset not in family.presets:
        raise TargetError(f"unknown preset '{preset}'", key="preset", expected="reference, slider or default")
    return preset, family.presets[preset]


def resolve_targets(family: Family, model_path: str, preset: str | list[str] = "slider",
                    strict: bool = True) -> TargetReport:
    """Resolve a preset against the model's module tree, built on the meta device.

    The caller passes the Family itself: names resolve to families in the app layer, not here."""
    name, patterns = patterns_for(family, preset)
    report = resolve_on_module(model_skeleton(family, model_path), patterns, name)
    return require_matches(report) if strict else report


def model_skeleton(fam: Family, model_path: str) -> nn.Module:
    """The denoiser's module tree on the meta device; an uncached hub id: from the published config."""
    from sliderstudio.families.full_size import full_size_skeleton, uncached_hub_id

    if uncached_hub_id(model_path):
        return full_size_skeleton(fam.id)
    return fam.skeleton(Path(resolve_model_path(model_path)))


def on_meta(module: nn.Module) -> bool:
    return any(p.device == torch.device("meta") for p in module.parameters())
