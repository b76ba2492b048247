"""engine.dial_range: the one rule every dial uses (issue #16 item 4), readable without torch."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import save_file

from sliderstudio.engine import calibration, dial_range


def adapter(path, value) -> str:
    meta = {} if value is None else {dial_range.RANGE_META: value}
    save_file({"t": torch.zeros(2)}, str(path), metadata=meta)
    return str(path)


@pytest.mark.parametrize("value, expected", [
    (json.dumps([-0.5, 1.5]), (-0.5, 1.5)), (json.dumps([0, 2]), (0.0, 2.0)),
    (json.dumps([0.5, 1.0]), None), (json.dumps([0, 0]), None), (json.dumps([1, "x"]), None),
    (json.dumps([True, 1]), None), ("[1, NaN]", None), ("not json", None), (None, None),
])
def test_range_and_span_from_the_header(tmp_path, value, expected):
    path = adapter(tmp_path / "a.safetensors", value)
    assert dial_range.recommended_range(path) == expected
    assert calibration.recommended_range(path) == expected   # the calibration's reader is the same rule
    lo, hi, calibrated = dial_range.dial_span(path)
    assert (lo, hi) == (expected or (-1.0, 1.0)) and calibrated is (expected is not None)


def test_not_an_adapter_gives_the_default(tmp_path):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\xff" * 8 + b"{}")            # a header length far past the file
    pickle = tmp_path / "a.pt"
    pickle.write_bytes(b"x")
    for path in (junk, pickle, tmp_path / "missing.safetensors"):
        assert dial_range.recommended_range(path) is None
    assert dial_range.dial_span(None) == (-1.0, 1.0, False)


def test_reading_the_range_imports_no_torch(tmp_path):
    """The app's UI thread calls this while the preview worker may be importing torch."""
    path = adapter(tmp_path / "a.safetensors", json.dumps([-1.0, 2.0]))
    code = ("import sys; from sliderstudio.engine.dial_range import recommended_range; "
            f"print(recommended_range({path!r}), 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["(-1.0,", "2.0)", "False"]
