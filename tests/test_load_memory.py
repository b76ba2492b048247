"""Loading into bf16 makes no full-precision copy: peak allocated RAM stays near the bf16 weight bytes."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import load_memory  # noqa: E402


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc accounting")
def test_bf16_load_peak_stays_near_the_bf16_weight_bytes(tmp_path):
    folder = load_memory.build(tmp_path / "model", width=64)
    fp32_mb = load_memory.file_mb(folder)
    (row,) = load_memory.run_all(folder, ("bf16",))
    assert abs(row["weight_mb"] - fp32_mb / 2) < 0.05 * fp32_mb  # every weight really is bf16 now
    # a full-precision copy first would allocate fp32 bytes (2x the bf16 weights) on top
    assert row["anon_peak_delta_mb"] < 1.5 * row["weight_mb"]
    assert row["anon_peak_delta_mb"] > 0.5 * row["weight_mb"]  # the measurement sees the load at all
