"""Attribute meters: a way to read named attributes (area, brightness…) back from a render.

Why a registry: the engine calibrates any slider with generic distances, but a world whose images
can be measured exactly (the bundled toy world: one flat shape on a flat background) gives a much
better answer — which attribute the slider moves, how far, whether a render collapsed. That
knowledge belongs to the world, not to the engine, so the world registers a meter for its models
when it is imported (`sliderstudio.toy` does), and the engine asks `meter_for(model)`.
"""
from __future__ import annotations

from typing import Any, Callable, Protocol, Sequence


class Measure(Protocol):
    """What a meter reads from one image; `collapsed` names why it broke down, or is None."""

    collapsed: str | None


class AttributeMeter(Protocol):
    """Reads attributes back from images of one world."""

    attributes: Sequence[str]

    def measure(self, image: Any) -> Measure:
        """Measure one rendered image."""

    def value(self, measure: Measure, attribute: str) -> float:
        """One attribute of a measured image, on the meter's own scale (hue in degrees)."""


_METERS: list[tuple[Callable[[str], bool], AttributeMeter]] = []


def register_meter(applies_to: Callable[[str], bool], meter: AttributeMeter) -> None:
    """Use `meter` for every model (id or folder) for which `applies_to` is true; the newest wins."""
    _METERS.insert(0, (applies_to, meter))


def meter_for(model: str) -> AttributeMeter | None:
    """The meter registered for this model, or None: then calibration uses generic distances."""
    for applies_to, meter in _METERS:
        if applies_to(str(model)):
            return meter
    return None
