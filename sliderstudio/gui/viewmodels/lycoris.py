"""Checks for a LyCORIS preset JSON typed into the editor, before it is saved (SPEC §5).

Errors block saving; warnings (e.g. an empty target list) do not. The rules are the engine's
(`config.lycoris_config`): what the editor accepts is exactly what training accepts.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sliderstudio.kernel.config_files import parse_json
from sliderstudio.kernel.errors import FileSyntaxError
from sliderstudio.config.lycoris_config import (
    LycorisSpec, lycoris_algorithms, lycoris_warnings, parse_lycoris_config, validate_lycoris_config,
)

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
    if not check.errors and falls_back(parse_lycoris_config(data, "lycoris_config")):
        check.warnings.append("apply_preset names no targets: the config's target preset will be used")
    return check


def falls_back(spec: LycorisSpec) -> bool:
    """Training's rule (lycoris_adapter.resolve_lycoris_targets): no module and no name entries → the
    config's preset. unet_target_module / unet_target_name count as entries."""
    return spec.target_module is None and not spec.target_name
