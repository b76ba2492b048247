"""What a form row needs to know about one config key, read from its pydantic `Field` (no Qt here).

Why: labels, ranges, help text and choices are declared once, on the Field in `config/config.py`
(`title` is the short label, `description` the help, `ge`/`gt`/`le`/`lt` the range, a `Literal`
type the choices, `json_schema_extra={"decimals": …, "step": …}` how a number is edited). A form
generated from this spec cannot drift from what the config accepts: change the Field and the
widget follows.
"""
from __future__ import annotations

import types
import typing
from dataclasses import dataclass
from typing import Any, Literal

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo

# Qt's spin boxes hold 32-bit ints; a float field without a bound gets this much room.
INT_MIN, INT_MAX = -2**31, 2**31 - 1
FLOAT_LIMIT = 1e6
DEFAULT_DECIMALS = 2


@dataclass(frozen=True)
class FieldSpec:
    """One editable key: its widget kind, label, help and the values the config accepts."""

    key: str
    kind: str                       # "int", "float", "bool", "choice" or "text"
    label: str
    help: str
    minimum: float | None = None
    maximum: float | None = None
    decimals: int = 0
    step: float = 1
    choices: tuple[Any, ...] = ()
    optional: bool = False          # None is a valid value (an empty text, say)


def _unwrap_optional(annotation: Any) -> tuple[Any, bool]:
    """`X | None` → (X, True); anything else → (annotation, False)."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0], len(args) < len(typing.get_args(annotation))
    return annotation, False


def _kind(annotation: Any) -> str:
    if typing.get_origin(annotation) is Literal:
        return "choice"
    if annotation is bool:
        return "bool"
    if annotation is int:
        return "int"
    if annotation is float:
        return "float"
    if annotation is str:
        return "text"
    raise TypeError(f"no form widget for a field of type {annotation!r}")


def _bounds(info: FieldInfo, kind: str, decimals: int) -> tuple[float | None, float | None]:
    """The inclusive range a widget can offer: exclusive bounds move in by the smallest step."""
    if kind not in ("int", "float"):
        return None, None
    tick = 1 if kind == "int" else 10 ** -decimals
    low: float = INT_MIN if kind == "int" else -FLOAT_LIMIT
    high: float = INT_MAX if kind == "int" else FLOAT_LIMIT
    for rule in info.metadata:
        if isinstance(rule, annotated_types.Ge):
            low = rule.ge
        elif isinstance(rule, annotated_types.Gt):
            low = rule.gt + tick
        elif isinstance(rule, annotated_types.Le):
            high = rule.le
        elif isinstance(rule, annotated_types.Lt):
            high = rule.lt - tick
    return low, high


def _extra(info: FieldInfo) -> dict[str, Any]:
    extra = info.json_schema_extra
    return dict(extra) if isinstance(extra, dict) else {}


def field_spec(model: type[BaseModel], key: str) -> FieldSpec:
    """The spec of `model.key`; KeyError names a key the model does not have."""
    info = model.model_fields.get(key)
    if info is None:
        raise KeyError(f"{model.__name__} has no field {key!r}")
    annotation, optional = _unwrap_optional(info.annotation)
    kind = _kind(annotation)
    extra = _extra(info)
    decimals = int(extra.get("decimals", DEFAULT_DECIMALS if kind == "float" else 0))
    low, high = _bounds(info, kind, decimals)
    step = extra.get("step", 1 if kind == "int" else 0.1)
    choices = tuple(typing.get_args(annotation)) if kind == "choice" else ()
    return FieldSpec(key=key, kind=kind, label=info.title or key, help=info.description or "",
                     minimum=low, maximum=high, decimals=decimals, step=step, choices=choices, optional=optional)


def field_specs(model: type[BaseModel], keys: tuple[str, ...]) -> list[FieldSpec]:
    return [field_spec(model, key) for key in keys]
