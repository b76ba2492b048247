"""Attribute meters: a world registers one for its models, calibration uses it without importing the world."""
from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass

import numpy as np

from sliderstudio.engine import attribute_meters
from sliderstudio.engine.calibration import Sweep, measure

STRENGTHS = [-1.0, -0.5, 0.0, 0.5, 1.0]


@dataclass
class Reading:
    grey: float
    collapsed: str | None = None


class GreyMeter:
    """A one-attribute world: the mean grey level of the image."""

    attributes = ("grey",)

    def measure(self, image) -> Reading:
        return Reading(float(np.asarray(image, float).mean()))

    def value(self, measure: Reading, attribute: str) -> float:
        assert attribute == "grey"
        return measure.grey


def _sweep() -> Sweep:
    images = [np.full((8, 8, 3), 100 + 40 * s, np.uint8) for s in STRENGTHS]
    return Sweep("p", 0, list(STRENGTHS), images)


def test_a_registered_meter_applies_to_its_models_only(monkeypatch):
    monkeypatch.setattr(attribute_meters, "_METERS", [])
    meter = GreyMeter()
    attribute_meters.register_meter(lambda model: model == "grey-world", meter)
    assert attribute_meters.meter_for("grey-world") is meter
    assert attribute_meters.meter_for("some/other/model") is None


def test_the_newest_registration_wins(monkeypatch):
    monkeypatch.setattr(attribute_meters, "_METERS", [])
    first, second = GreyMeter(), GreyMeter()
    attribute_meters.register_meter(lambda m: True, first)
    attribute_meters.register_meter(lambda m: True, second)
    assert attribute_meters.meter_for("x") is second


def test_calibration_measures_the_meters_attribute_and_polarity():
    cal = measure([_sweep()], meter=GreyMeter(), expected={"grey": 10.0})
    assert cal.measure == "attribute:grey" and cal.polarity == "positive"
    assert cal.recommended == (-1.0, 1.0)


def test_without_a_meter_calibration_falls_back_to_distances():
    cal = measure([_sweep()])
    assert cal.measure == "pixel distance" and cal.polarity == "unknown"


def test_importing_the_toy_registers_its_meter_and_the_engine_alone_does_not():
    code = ("import sliderstudio.engine.calibration_run as c, sliderstudio.engine.attribute_meters as m;"
            "print(m.meter_for('sliderstudio:toy'));"
            "import sliderstudio.toy, sliderstudio.kernel.resources as r;"
            "print(type(m.meter_for('sliderstudio:toy')).__name__,"
            " type(m.meter_for(str(r.toy_model_dir()))).__name__, m.meter_for('/elsewhere'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["None", "ToyMeter", "ToyMeter", "None"]
