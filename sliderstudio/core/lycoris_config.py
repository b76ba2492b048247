"""The LyCORIS preset JSON (`lycoris_config`): validation, the shipped presets, the parsed spec (SPEC §5).

Validation happens here, in the config layer, before any model loads, and the app's preset editor
calls the same `validate_lycoris_config`, so both faces show the same messages. Only algorithms
Slider Studio trains, saves, reloads and previews (and tests) are accepted; every problem names the
key, the value and what is expected, with a did-you-mean where a close spelling exists.

`apply_preset.target_module` entries keep their SPEC §5 meaning (module paths by dotted suffix, or
class names); `target_name` / `exclude_name` keep LyCORIS's own (regular expressions matched from
the start of the module path, or fnmatch with `use_fnmatch`). Without `apply_preset` the family's
slider preset is used.
"""
from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sliderstudio.core.errors import ConfigError
from sliderstudio.core.resources import has_preset, read_preset

ALGORITHMS = ("lokr", "locon", "loha", "full")
UNET_FAMILIES = ("sd1x", "sd2x", "sdxl")

# key → (type check name, what is expected); the LyCORIS keyword each one becomes is the same name
# unless listed in NETWORK_NAMES.
NUMBER_KEYS = {"multiplier": "a number", "linear_alpha": "a number > 0", "conv_alpha": "a number > 0",
               "dropout": "a number in [0, 1)", "rank_dropout": "a number in [0, 1)",
               "module_dropout": "a number in [0, 1)", "constraint": "a number ≥ 0"}
INT_KEYS = {"linear_dim": "a whole number ≥ 1", "conv_dim": "a whole number ≥ 0",
            "factor": "-1 (automatic) or a whole number ≥ 1", "block_size": "a whole number ≥ 1"}
BOOL_KEYS = ("use_tucker", "use_scalar", "decompose_both", "full_matrix", "rescaled", "dora_wd",
             "wd_on_output", "unbalanced_factorization", "rank_dropout_scale", "bypass_mode")
TOP_KEYS = ("algo", "apply_preset", *NUMBER_KEYS, *INT_KEYS, *BOOL_KEYS)
# LyCORIS keys that mean nothing for a slider (never a text encoder, never norms): accepted, ignored.
IGNORED_KEYS = ("train_norm", "text_encoder_dim", "text_encoder_alpha", "preset", "lora_prefix_unet")
PRESET_KEYS = ("target_module", "target_name", "exclude_name", "use_fnmatch", "enable_conv", "lora_prefix",
               "unet_target_module", "unet_target_name")
PRESET_IGNORED = ("text_encoder_target_module", "text_encoder_target_name")
PRESET_UNSUPPORTED = {"module_algo_map": "per-module algorithms", "name_algo_map": "per-name algorithms"}


@dataclass(frozen=True)
class LycorisProblem:
    """One thing wrong with a preset: which key, what was found, what is expected."""

    key: str
    message: str
    value: Any = None

    def __str__(self) -> str:
        return f"{self.key}: {self.message}"


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


def preset_group(family: str) -> str:
    """Shipped presets are per UNet family; every other family uses the generic transformer ones."""
    return family if family in UNET_FAMILIES else "transformer"


def lycoris_presets(family: str) -> dict[str, str]:
    """algorithm → shipped preset name for this family (`presets/lycoris/<family>-<algo>.json`)."""
    group = preset_group(family)
    found = {algo: f"{group}-{algo}" for algo in ALGORITHMS}
    return {algo: name for algo, name in found.items() if has_preset("lycoris", name)}


def lycoris_preset(family: str, algo: str) -> dict[str, Any]:
    """The shipped preset as a dict (a fresh copy the caller may edit)."""
    presets = lycoris_presets(family)
    if algo not in presets:
        raise ConfigError(f"no shipped LyCORIS preset for algorithm '{algo}'", key="algo", value=algo,
                          expected="one of " + ", ".join(presets))
    return read_preset("lycoris", presets[algo])


def validate_lycoris_config(data: Any) -> list[LycorisProblem]:
    """Every problem in a preset dict (empty list: valid). Warnings are not problems."""
    problems: list[LycorisProblem] = []
    if not isinstance(data, dict):
        return [LycorisProblem("(top level)", "expected a JSON object like {\"algo\": \"lokr\", …}", data)]
    problems += _check_algo(data.get("algo"))
    for key, value in data.items():
        if key in ("algo", "apply_preset") or key in IGNORED_KEYS:
            continue
        if key in NUMBER_KEYS:
            problems += _check_number(key, value)
        elif key in INT_KEYS:
            problems += _check_int(key, value)
        elif key in BOOL_KEYS:
            if not isinstance(value, bool):
                problems.append(LycorisProblem(key, f"expected true or false (got {value!r})", value))
            elif key == "dora_wd" and value:
                problems.append(LycorisProblem(key, "weight decomposition (DoRA) is not supported for sliders: "
                                               "LyCORIS rescales the adapted weight even at multiplier 0, so "
                                               "strength 0 would not be the base model", value))
        else:
            problems.append(LycorisProblem(key, "unknown key" + _did_you_mean(key, TOP_KEYS), value))
    if "apply_preset" in data:
        problems += _check_preset(data["apply_preset"])
    return problems


def lycoris_warnings(data: dict[str, Any]) -> list[str]:
    """Keys that are accepted but ignored, worth a warning line."""
    notes = [f"{k}: ignored (a slider never trains text encoders or norm layers)" for k in data if k in IGNORED_KEYS]
    multiplier = data.get("multiplier", 1.0)
    if _is_number(multiplier) and multiplier != 1.0:
        notes.append(f"multiplier: the slider strength sets the multiplier of every batch; {multiplier} is not used")
    preset = data.get("apply_preset")
    if isinstance(preset, dict):
        notes += [f"apply_preset.{k}: ignored (text encoders are never trained)" for k in preset if k in PRESET_IGNORED]
    return notes


# --- parsing ------------------------------------------------------------------------------------------
def parse_lycoris_config(data: Any, file: str | Path) -> LycorisSpec:
    """Validate and build the spec; the first problem becomes a ConfigError naming file and key."""
    problems = validate_lycoris_config(data)
    if problems:
        first = problems[0]
        raise ConfigError(first.message, file=file, key=first.key,
                          expected=_expected(first.key)) from None
    options = {k: v for k, v in data.items() if k not in ("algo", "apply_preset", "multiplier", "linear_dim",
                                                          "linear_alpha") and k not in IGNORED_KEYS}
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
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("LyCORIS config file not found", file=path, key="lycoris_config") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read LyCORIS config: {exc}", file=path, key="lycoris_config") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}", file=path) from None
    return parse_lycoris_config(data, path)


# --- checks ---------------------------------------------------------------------------------------------
def _did_you_mean(value: str, choices: tuple[str, ...] | list[str]) -> str:
    close = difflib.get_close_matches(str(value), list(choices), n=1, cutoff=0.5)
    return f"; did you mean '{close[0]}'?" if close else ""


def _expected(key: str) -> str | None:
    return NUMBER_KEYS.get(key) or INT_KEYS.get(key)


def _check_algo(algo: Any) -> list[LycorisProblem]:
    if algo is None:
        return [LycorisProblem("algo", "missing; the algorithm is required", None)]
    if algo in ALGORITHMS:
        return []
    known = "one of " + ", ".join(ALGORITHMS)
    if isinstance(algo, str) and algo.lower() in ALGORITHMS:
        return [LycorisProblem("algo", f"algorithm names are lower case: '{algo.lower()}' (expected {known})", algo)]
    hint = _did_you_mean(str(algo), ALGORITHMS)
    return [LycorisProblem("algo", f"unsupported algorithm {algo!r}{hint} (supported: {', '.join(ALGORITHMS)})",
                           algo)]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_number(key: str, value: Any) -> list[LycorisProblem]:
    ok = _is_number(value)
    if ok and key in ("linear_alpha", "conv_alpha"):
        ok = value > 0
    elif ok and key.endswith("dropout"):
        ok = 0 <= value < 1
    elif ok and key == "constraint":
        ok = value >= 0
    return [] if ok else [LycorisProblem(key, f"expected {NUMBER_KEYS[key]} (got {value!r})", value)]


def _check_int(key: str, value: Any) -> list[LycorisProblem]:
    ok = isinstance(value, int) and not isinstance(value, bool)
    if ok and key == "factor":
        ok = value == -1 or value >= 1
    elif ok and key == "conv_dim":
        ok = value >= 0
    elif ok:
        ok = value >= 1
    return [] if ok else [LycorisProblem(key, f"expected {INT_KEYS[key]} (got {value!r})", value)]


def _targets_of(preset: dict[str, Any]) -> tuple[list[str], list[str]]:
    modules = list(preset.get("target_module") or []) + list(preset.get("unet_target_module") or [])
    names = list(preset.get("target_name") or []) + list(preset.get("unet_target_name") or [])
    return modules, names


def _check_preset(preset: Any) -> list[LycorisProblem]:
    if not isinstance(preset, dict):
        return [LycorisProblem("apply_preset", "expected an object like {\"target_module\": [...]}", preset)]
    problems = []
    for key, value in preset.items():
        where = f"apply_preset.{key}"
        if key in PRESET_UNSUPPORTED:
            problems.append(LycorisProblem(where, f"{PRESET_UNSUPPORTED[key]} are not supported; use one algo", value))
        elif key in ("use_fnmatch", "enable_conv"):
            if not isinstance(value, bool):
                problems.append(LycorisProblem(where, f"expected true or false (got {value!r})", value))
        elif key == "lora_prefix":
            if value != "lycoris":
                problems.append(LycorisProblem(where, "only 'lycoris' is supported (ComfyUI and diffusers read it)",
                                               value))
        elif key in PRESET_KEYS:
            if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
                problems.append(LycorisProblem(where, "expected a list of module paths or class names", value))
        elif key not in PRESET_IGNORED:
            problems.append(LycorisProblem(where, "unknown key" + _did_you_mean(key, PRESET_KEYS), value))
    return problems
