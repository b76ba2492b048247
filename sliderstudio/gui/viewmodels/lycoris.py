"""Checks for a LyCORIS preset JSON typed into the editor, before it is saved (SPEC §5).

Errors block saving; warnings (e.g. an empty target list) do not. The rules are the engine's
(`config.lycoris_config`): what the editor accepts is exactly what training accepts.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sliderstudio.kernel.config_files import parse_json
from sliderstudio.kernel.errors import FileSyntaxError
from sliderstudio.config.lycoris_config import lycoris_algorithms, lycoris_warnings, validate_lycoris_config

ALGORITHMS = tuple(lycoris_algorithms())


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


def validate_lycoris(text: str) -> LycorisCheck:
    """Parse and check with the engine's own rules, so the editor and `sliderstudio train` agree."""
    check = LycorisCheck()
    try:
        data = parse_json(text)
    except FileSyntaxError as exc:
        check.errors.append(exc.message)
        return check
    check.errors = [str(p) for p in validate_lycoris_config(data)]
    if not isinstance(data, dict):
        return check
    check.data = data
    check.warnings = lycoris_warnings(data)
    preset = data.get("apply_preset")
    if not isinstance(preset, dict) or not (preset.get("target_module") or preset.get("target_name")):
        check.warnings.append("apply_preset names no targets: the family's slider preset will be used")
    return check


def target_modules(data: dict[str, Any] | None) -> list[str]:
    """The targets a checked preset names (module paths and class names), for the match table."""
    if not data or not isinstance(data.get("apply_preset"), dict):
        return []
    preset = data["apply_preset"]
    return list(preset.get("target_module") or []) + list(preset.get("target_name") or [])
