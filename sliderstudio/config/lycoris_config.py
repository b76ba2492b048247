"""The LyCORIS preset JSON (`lycoris_config`): validation, the shipped presets, the parsed spec (SPEC §5).

Validation happens here, in the config layer, before any model loads, and the app's preset editor
calls the same `validate_lycoris_config`, so both faces show the same messages. The keys and their
rules are the pydantic models in config/lycoris_model.py. Only algorithms Slider Studio trains, saves,
reloads and previews (and tests) are accepted; every problem names the key, the value and what is
expected, with a did-you-mean (kernel/suggest.py) where a close spelling exists.

`apply_preset.target_module` entries keep their SPEC §5 meaning (module paths by dotted suffix, or
class names); `target_name` / `exclude_name` keep LyCORIS's own (regular expressions matched from
the start of the module path, or fnmatch with `use_fnmatch`). Without `apply_preset` the family's
slider preset is used.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from sliderstudio.kernel.config_files import read_json_file
from sliderstudio.kernel.errors import ConfigError
from sliderstudio.config.lycoris_model import (
    ALGORITHMS, LycorisConfigModel, LycorisPresetModel, LycorisProblem, expected_of, problems_of,
)
from sliderstudio.kernel.resources import has_preset, read_preset
from sliderstudio.kernel.suggest import did_you_mean

# The spec's named fields; every other key given goes into LycorisSpec.options as given.
SPEC_KEYS = ("algo", "apply_preset", "multiplier", "linear_dim", "linear_alpha")

@dataclass
class LycorisSpec:
    """A validated preset: the algorithm, the LyCORIS keyword arguments, and the target entries."""

    algo: str
    multiplier: float = 1.0
    linear_dim: int = 4
    linear_alpha: float = 1.0
    options: dict[str, Any] = field(default_factory=dict)   # conv_dim, factor, use_tucker, …
    target_module: list[str] | None = None                  # None: the family's slider preset
    target_name: list[str] = field(default_factory=list)
    exclude_name: list[str] = field(default_factory=list)
    use_fnmatch: bool = False
    enable_conv: bool = True
    raw: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def network_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for `LycorisNetwork` (its own names)."""
        kwargs: dict[str, Any] = {"multiplier": self.multiplier, "lora_dim": self.linear_dim,
                                  "alpha": self.linear_alpha,
                                  "conv_lora_dim": self.options.get("conv_dim", self.linear_dim),
                                  "conv_alpha": self.options.get("conv_alpha", self.linear_alpha),
                                  "network_module": self.algo}
        for key in ("dropout", "rank_dropout", "module_dropout", "use_tucker", "use_scalar", "decompose_both",
                    "full_matrix", "rescaled", "constraint", "block_size", "unbalanced_factorization",
                    "rank_dropout_scale", "bypass_mode"):
            if key in self.options:
                kwargs[key] = self.options[key]
        if "factor" in self.options:
            kwargs["factor"] = self.options["factor"]
        if "dora_wd" in self.options:
            kwargs["weight_decompose"] = self.options["dora_wd"]
        if "wd_on_output" in self.options:
            kwargs["wd_on_out"] = self.options["wd_on_output"]
        return kwargs

    @property
    def linear_in_strength(self) -> bool:
        """DoRA-style weight decomposition is not linear in the multiplier: no batched strengths."""
        return not self.options.get("dora_wd", False)

    def summary(self) -> dict[str, Any]:
        """What the adapter file's metadata records about the algorithm and its dimensions."""
        return {"algo": self.algo, "linear_dim": self.linear_dim, "linear_alpha": self.linear_alpha,
                **{k: v for k, v in self.options.items() if k in ("conv_dim", "conv_alpha", "factor")}}


# --- public helpers the app uses ------------------------------------------------------------------
def lycoris_algorithms() -> list[str]:
    """The algorithms Slider Studio trains with LyCORIS (each one tested end to end)."""
    return list(ALGORITHMS)


def lycoris_presets(group: str) -> dict[str, str]:
    """algorithm → shipped preset name of a preset group (`presets/lycoris/<group>-<algo>.json`).

    The group is a family trait (`Family.lycoris_group`: each UNet family has its own presets, the
    transformer families share the generic ones); the caller passes it, so this config layer never
    needs the families."""
    found = {algo: f"{group}-{algo}" for algo in ALGORITHMS}
    return {algo: name for algo, name in found.items() if has_preset("lycoris", name)}


def lycoris_preset(group: str, algo: str) -> dict[str, Any]:
    """The shipped preset of a group (`Family.lycoris_group`) as a dict (a fresh copy the caller may edit)."""
    presets = lycoris_presets(group)
    if algo not in presets:
        raise ConfigError(f"no shipped LyCORIS preset for algorithm '{algo}'{did_you_mean(algo, presets)}",
                          key="algo", value=algo, expected="one of " + ", ".join(presets))
    return read_preset("lycoris", presets[algo])


def validate_lycoris_config(data: Any) -> list[LycorisProblem]:
    """Every problem in a preset dict (empty list: valid), in the file's key order. Warnings are not problems."""
    try:
        LycorisConfigModel.model_validate(data)
    except ValidationError as exc:
        return problems_of(exc, data)
    return []


def lycoris_warnings(data: dict[str, Any]) -> list[str]:
    """Keys that are accepted but ignored (each with the model's reason), worth a warning line."""
    ignored = LycorisConfigModel.ignored_keys()
    notes = [f"{k}: ignored ({ignored[k]})" for k in data if k in ignored]
    multiplier = data.get("multiplier", 1.0)
    if isinstance(multiplier, (int, float)) and not isinstance(multiplier, bool) and multiplier != 1.0:
        notes.append(f"multiplier: the slider strength sets the multiplier of every batch; {multiplier} is not used")
    preset = data.get("apply_preset")
    if isinstance(preset, dict):
        inner = LycorisPresetModel.ignored_keys()
        notes += [f"apply_preset.{k}: ignored ({inner[k]})" for k in preset if k in inner]
    return notes


# --- parsing ------------------------------------------------------------------------------------------
def parse_lycoris_config(data: Any, file: str | Path) -> LycorisSpec:
    """Validate and build the spec; the first problem becomes a ConfigError naming file, key and value."""
    problems = validate_lycoris_config(data)
    if problems:
        first = problems[0]
        raise ConfigError(first.message, file=file, key=first.key, value=first.value,
                          expected=expected_of(first.key)) from None
    ignored = LycorisConfigModel.ignored_keys()
    options = {k: v for k, v in data.items() if k not in SPEC_KEYS and k not in ignored}
    spec = LycorisSpec(algo=data["algo"], multiplier=float(data.get("multiplier", 1.0)),
                       linear_dim=int(data.get("linear_dim", 4)), linear_alpha=float(data.get("linear_alpha", 1.0)),
                       options=options, raw=dict(data), warnings=lycoris_warnings(data))
    preset = data.get("apply_preset")
    if isinstance(preset, dict):
        modules, names = _targets_of(preset)
        spec.target_module = modules or None
        spec.target_name = names
        spec.exclude_name = list(preset.get("exclude_name") or [])
        spec.use_fnmatch = bool(preset.get("use_fnmatch", False))
        spec.enable_conv = bool(preset.get("enable_conv", True))
        if names and not modules:
            spec.target_module = []
    return spec


def read_lycoris_config(path: Path) -> LycorisSpec:
    """Read the JSON file and parse it; errors name the file (exit status 2 from the CLI)."""
    return parse_lycoris_config(read_json_file(path, "lycoris_config", "LyCORIS config file"), path)


def _targets_of(preset: dict[str, Any]) -> tuple[list[str], list[str]]:
    modules = list(preset.get("target_module") or []) + list(preset.get("unet_target_module") or [])
    names = list(preset.get("target_name") or []) + list(preset.get("unet_target_name") or [])
    return modules, names
