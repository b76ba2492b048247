"""The LyCORIS config (SimpleTuner's `lycoris_config.json`) as pydantic models (SPEC §5).

The train config is pydantic; so is this, so one style validates every file. Each key is declared
once, with its help text, what a valid value is (`expected`, used in the message), and whether it is
accepted but ignored (`ignored`, the reason, used in the warning) or refused (`unsupported`).

Checks are plain validators on purpose: pydantic's own coercion would accept "4" for a dimension
and word its errors differently, and a preset must be accepted or refused exactly as SimpleTuner's
file is read by LyCORIS, with the messages the app's editor shows (key, value, what is expected).
`problems_of` turns a ValidationError into LycorisProblem lines in the order of the file's keys.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, NoReturn

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainValidator, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from sliderstudio.kernel.suggest import did_you_mean

ALGORITHMS = ("lokr", "locon", "loha", "full")
ERROR_TYPE = "lycoris"  # the pydantic error type of every message written here
TOP_LEVEL = "(top level)"
TEXT_ENCODER_REASON = "a slider never trains text encoders or norm layers"


@dataclass(frozen=True)
class LycorisProblem:
    """One thing wrong with a preset: which key, what was found, what is expected."""

    key: str
    message: str
    value: Any = None

    def __str__(self) -> str:
        return f"{self.key}: {self.message}"


def _fail(message: str) -> NoReturn:
    raise PydanticCustomError(ERROR_TYPE, "{message}", {"message": message})


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _checked(kind: type, expected: str, ok: Callable[[Any], bool]) -> Any:
    """A type whose value is kept exactly as given when `ok`, else refused as 'expected …(got …)'."""
    def check(value: Any) -> Any:
        if not ok(value):
            _fail(f"expected {expected} (got {value!r})")
        return value
    return Annotated[kind, PlainValidator(check), Field(json_schema_extra={"expected": expected})]


Number = _checked(float, "a number", _is_number)
Positive = _checked(float, "a number > 0", lambda v: _is_number(v) and v > 0)
Dropout = _checked(float, "a number in [0, 1)", lambda v: _is_number(v) and 0 <= v < 1)
NonNegative = _checked(float, "a number ≥ 0", lambda v: _is_number(v) and v >= 0)
Dim = _checked(int, "a whole number ≥ 1", lambda v: _is_whole(v) and v >= 1)
DimOrZero = _checked(int, "a whole number ≥ 0", lambda v: _is_whole(v) and v >= 0)
Factor = _checked(int, "-1 (automatic) or a whole number ≥ 1", lambda v: _is_whole(v) and (v == -1 or v >= 1))
Flag = _checked(bool, "true or false", lambda v: isinstance(v, bool))


def _check_algo(algo: Any) -> str:
    if algo is None:
        _fail("missing; the algorithm is required")
    if algo in ALGORITHMS:
        return algo
    if isinstance(algo, str) and algo.lower() in ALGORITHMS:
        _fail(f"algorithm names are lower case: '{algo.lower()}' (expected one of {', '.join(ALGORITHMS)})")
    _fail(f"unsupported algorithm {algo!r}{did_you_mean(algo, ALGORITHMS)} (supported: {', '.join(ALGORITHMS)})")


def _check_dora(value: Any) -> bool:
    if not isinstance(value, bool):
        _fail(f"expected true or false (got {value!r})")
    if value:
        _fail("weight decomposition (DoRA) is not supported for sliders: LyCORIS rescales the adapted weight "
              "even at multiplier 0, so strength 0 would not be the base model")
    return value


def _check_targets(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        _fail("expected a list of module paths or class names")
    return value


def _check_prefix(value: Any) -> str:
    if value != "lycoris":
        _fail("only 'lycoris' is supported (ComfyUI and diffusers read it)")
    return value


def _refused(what: str) -> Any:
    def refuse(value: Any) -> NoReturn:
        _fail(f"{what} are not supported; use one algo")
    return Annotated[Any, PlainValidator(refuse), Field(json_schema_extra={"unsupported": what})]


def _must_be_object(example: str) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if not isinstance(value, dict):
            _fail(f"expected {example}")
        return value
    return check


Targets = Annotated[list[str], PlainValidator(_check_targets)]
PerModuleAlgos = _refused("per-module algorithms")
PerNameAlgos = _refused("per-name algorithms")


def _ignored(reason: str) -> Any:
    return Field(None, json_schema_extra={"ignored": reason})


class _Keys(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @classmethod
    def known_keys(cls) -> list[str]:
        """Keys worth suggesting for a misspelling: neither ignored nor refused."""
        return [name for name, f in cls.model_fields.items()
                if not ({"ignored", "unsupported"} & set(f.json_schema_extra or {}))]

    @classmethod
    def ignored_keys(cls) -> dict[str, str]:
        """key → why it is accepted but ignored."""
        return {name: (f.json_schema_extra or {})["ignored"] for name, f in cls.model_fields.items()
                if "ignored" in (f.json_schema_extra or {})}


class LycorisPresetModel(_Keys):
    """`apply_preset`: what the adapter wraps. target_module: module paths by dotted suffix, or class names;
    target_name / exclude_name: LyCORIS's regular expressions (fnmatch with use_fnmatch)."""

    target_module: Targets = Field(None, description="Module paths (by dotted suffix) or class names to wrap")
    target_name: Targets = Field(None, description="Regular expressions matched from the start of module paths")
    exclude_name: Targets = Field(None, description="Module paths (patterns) never wrapped")
    use_fnmatch: Flag = Field(None, description="target_name / exclude_name are fnmatch patterns")
    enable_conv: Flag = Field(None, description="Wrap convolutions too")
    lora_prefix: Annotated[str, PlainValidator(_check_prefix)] = Field(None, description="Key prefix ('lycoris')")
    unet_target_module: Targets = Field(None, description="As target_module (the UNet's own list)")
    unet_target_name: Targets = Field(None, description="As target_name (the UNet's own list)")
    module_algo_map: PerModuleAlgos = None
    name_algo_map: PerNameAlgos = None
    text_encoder_target_module: Any = _ignored("text encoders are never trained")
    text_encoder_target_name: Any = _ignored("text encoders are never trained")


class LycorisConfigModel(_Keys):
    """The whole file. Absent keys keep LyCORIS's defaults; the ones given are passed on as given."""

    algo: Annotated[str, PlainValidator(_check_algo)] = Field(
        None, validate_default=True, description="Algorithm: " + ", ".join(ALGORITHMS))
    multiplier: Number = Field(1.0, description="Adapter multiplier (the slider strength sets it per batch)")
    linear_dim: Dim = Field(4, description="Rank of the linear layers")
    linear_alpha: Positive = Field(1.0, description="Alpha of the linear layers")
    conv_dim: DimOrZero = Field(None, description="Rank of the convolutions (default: linear_dim)")
    conv_alpha: Positive = Field(None, description="Alpha of the convolutions (default: linear_alpha)")
    factor: Factor = Field(None, description="LoKr factor")
    dropout: Dropout = Field(None, description="Dropout")
    rank_dropout: Dropout = Field(None, description="Rank dropout")
    module_dropout: Dropout = Field(None, description="Module dropout")
    constraint: NonNegative = Field(None, description="Norm constraint")
    block_size: Dim = Field(None, description="Block size (BOFT/DiagOFT)")
    use_tucker: Flag = Field(None, description="Tucker decomposition of convolutions")
    use_scalar: Flag = Field(None, description="Train an extra scalar")
    decompose_both: Flag = Field(None, description="LoKr: decompose both matrices")
    full_matrix: Flag = Field(None, description="LoKr: full matrix")
    rescaled: Flag = Field(None, description="Rescaled")
    dora_wd: Annotated[bool, PlainValidator(_check_dora)] = Field(None, description="Weight decomposition (refused)")
    wd_on_output: Flag = Field(None, description="Weight decomposition on the output dimension")
    unbalanced_factorization: Flag = Field(None, description="LoKr: unbalanced factorization")
    rank_dropout_scale: Flag = Field(None, description="Rescale after rank dropout")
    bypass_mode: Flag = Field(None, description="Bypass mode")
    apply_preset: Annotated[LycorisPresetModel, BeforeValidator(
        _must_be_object('an object like {"target_module": [...]}'))] = Field(None, description="What to wrap")
    train_norm: Any = _ignored(TEXT_ENCODER_REASON)
    text_encoder_dim: Any = _ignored(TEXT_ENCODER_REASON)
    text_encoder_alpha: Any = _ignored(TEXT_ENCODER_REASON)
    preset: Any = _ignored(TEXT_ENCODER_REASON)
    lora_prefix_unet: Any = _ignored(TEXT_ENCODER_REASON)

    @model_validator(mode="before")
    @classmethod
    def _an_object(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            _fail('expected a JSON object like {"algo": "lokr", …}')
        return data


def expected_of(key: str) -> str | None:
    """What a top-level key's value must be (for ConfigError.expected), None where no single phrase says it."""
    field = LycorisConfigModel.model_fields.get(key)
    extra = {} if field is None else (field.json_schema_extra or {})
    return extra.get("expected") if isinstance(extra, dict) else None


def problems_of(exc: ValidationError, data: Any) -> list[LycorisProblem]:
    """Each error as a LycorisProblem, in the file's order: algo first, then each key, apply_preset last."""
    problems = [(_position(err["loc"], data), _problem(err)) for err in exc.errors()]
    return [problem for _, problem in sorted(problems, key=lambda p: p[0])]


def _problem(err: Any) -> LycorisProblem:
    loc = tuple(str(part) for part in err["loc"])
    key = ".".join(loc) or TOP_LEVEL
    if err["type"] == "extra_forbidden":
        model = LycorisPresetModel if len(loc) > 1 else LycorisConfigModel
        return LycorisProblem(key, "unknown key" + did_you_mean(loc[-1], model.known_keys()), err["input"])
    return LycorisProblem(key, err["msg"], err["input"])


def _position(loc: tuple[Any, ...], data: Any) -> tuple[int, int, int]:
    """Today's order of the messages: the algorithm, the other keys as written, then the preset's keys."""
    if not loc or not isinstance(data, dict):
        return (0, 0, 0)
    keys = list(data)
    if loc[0] == "algo":
        return (0, 0, 0)
    if loc[0] != "apply_preset":
        return (1, keys.index(loc[0]) if loc[0] in keys else len(keys), 0)
    preset = data.get("apply_preset")
    inner = list(preset) if isinstance(preset, dict) else []
    return (2, 0, inner.index(loc[1]) if len(loc) > 1 and loc[1] in inner else -1)
