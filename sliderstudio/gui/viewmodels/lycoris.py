"""Checks for a LyCORIS preset JSON typed into the editor, before it is saved (SPEC §5).

Errors block saving; warnings (e.g. an empty target list) do not. Only keys whose meaning is
fixed are checked; LyCORIS has many optional keys and unknown ones pass through untouched.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

ALGORITHMS = ("lokr", "locon", "loha", "full", "lora", "ia3", "dylora", "glora", "diag-oft", "boft")
NUMBER_KEYS = ("multiplier", "linear_alpha", "conv_alpha", "dropout", "rank_dropout", "module_dropout")
POSITIVE_INT_KEYS = ("linear_dim", "conv_dim")


@dataclass
class LycorisCheck:
    data: dict[str, Any] | None = None
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


def template(algo: str = "lokr", targets: list[str] | None = None) -> dict[str, Any]:
    """A starting point for the editor: the chosen algorithm on the family's slider targets."""
    data: dict[str, Any] = {"algo": algo, "multiplier": 1.0, "linear_dim": 4, "linear_alpha": 1}
    if algo == "lokr":
        data["factor"] = 4
    if algo == "full":
        data = {"algo": "full", "multiplier": 1.0}
    data["apply_preset"] = {"target_module": list(targets or [])}
    return data


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_preset(preset: Any, check: LycorisCheck) -> None:
    if not isinstance(preset, dict):
        check.errors.append("apply_preset: expected an object like {\"target_module\": [...]}")
        return
    for key in ("target_module", "target_name", "exclude_name", "lora_prefix"):
        if key not in preset:
            continue
        value = preset[key]
        if key == "lora_prefix":
            continue
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            check.errors.append(f"apply_preset.{key}: expected a list of module names or class names")
    if not preset.get("target_module") and not preset.get("target_name"):
        check.warnings.append("apply_preset names no targets: the family's slider preset will be used")


def validate_lycoris(text: str) -> LycorisCheck:
    """Parse and check; messages name the key (or line/column) and what is expected."""
    check = LycorisCheck()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        check.errors.append(f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}")
        return check
    if not isinstance(data, dict):
        check.errors.append("the top level must be a JSON object")
        return check
    check.data = data
    algo = data.get("algo")
    if algo not in ALGORITHMS:
        check.errors.append(f"algo: expected one of {', '.join(ALGORITHMS)} (got {algo!r})")
    for key in NUMBER_KEYS:
        if key in data and not _is_number(data[key]):
            check.errors.append(f"{key}: expected a number (got {data[key]!r})")
    for key in POSITIVE_INT_KEYS:
        if key in data and not (isinstance(data[key], int) and not isinstance(data[key], bool) and data[key] >= 1):
            check.errors.append(f"{key}: expected a whole number ≥ 1 (got {data[key]!r})")
    factor = data.get("factor")
    if factor is not None and not (isinstance(factor, int) and not isinstance(factor, bool)
                                   and (factor == -1 or factor >= 1)):
        check.errors.append(f"factor: expected -1 (automatic) or a whole number ≥ 1 (got {factor!r})")
    if "apply_preset" in data:
        _check_preset(data["apply_preset"], check)
    else:
        check.warnings.append("no apply_preset: the family's slider preset will be used")
    return check


def target_modules(data: dict[str, Any] | None) -> list[str]:
    """The targets a checked preset names (module paths and class names), for the match table."""
    if not data or not isinstance(data.get("apply_preset"), dict):
        return []
    preset = data["apply_preset"]
    return list(preset.get("target_module") or []) + list(preset.get("target_name") or [])
