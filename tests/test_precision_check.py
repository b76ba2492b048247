"""A mixed precision the device runs slowly is warned about, with the measured alternative."""
from __future__ import annotations

import time

import pytest
import torch

from sliderstudio.engine import precision_check
from sliderstudio.engine.precision_check import bf16_autocast_ratio, cpu_flags, precision_warning

CPU = torch.device("cpu")


def test_the_measurement_is_cheap_and_restores_the_thread_count():
    threads = torch.get_num_threads()
    bf16_autocast_ratio()  # the first call pays for oneDNN's kernel set-up
    start = time.perf_counter()
    ratio, fp32_s, bf16_s = bf16_autocast_ratio()
    elapsed = time.perf_counter() - start
    assert ratio > 0 and fp32_s > 0 and bf16_s > 0 and abs(ratio - bf16_s / fp32_s) < 1e-9
    assert elapsed < 0.5, f"the check took {elapsed * 1e3:.0f} ms"
    assert torch.get_num_threads() == threads


@pytest.mark.skipif("amx_bf16" in cpu_flags(), reason="AMX runs bf16 natively: no warning expected")
def test_bf16_on_this_cpu_is_warned_about_with_the_measured_ratio():
    text = precision_warning("bf16", CPU)
    assert text is not None and "mixed_precision 'bf16' is slow on this CPU" in text
    assert "mixed_precision 'no' ran" in text and "× faster here" in text


def test_the_warning_carries_the_measured_numbers(monkeypatch):
    monkeypatch.setattr(precision_check, "cpu_flags", lambda: {"avx2", "avx512_bf16"})
    text = precision_warning("bf16", CPU, measure=lambda: (3.0, 0.001, 0.003))
    assert "took 3.00 ms under bf16 against 1.00 ms in fp32" in text and "'no' ran 3.0× faster" in text
    assert precision_warning("bf16", CPU, measure=lambda: (0.8, 0.002, 0.0016)) is None  # bf16 wins: silent
    monkeypatch.setattr(precision_check, "cpu_flags", lambda: {"amx_bf16"})
    assert precision_warning("bf16", CPU, measure=lambda: pytest.fail("AMX is not measured")) is None


def test_fp16_on_the_cpu_and_no_mixed_precision():
    assert "not used on the CPU: training runs in fp32" in precision_warning("fp16", CPU)
    assert precision_warning("no", CPU, measure=lambda: pytest.fail("nothing to measure")) is None


def test_training_logs_the_warning(tmp_path, tiny_models):
    from conftest import make_project
    from sliderstudio.kernel.events import Log
    from sliderstudio.engine.project import load_project
    from sliderstudio.engine.trainer import Trainer

    # fp16: one process holds one accelerate state, so this test cannot switch it to bf16 (the
    # bf16 text itself is checked above); the trainer must log what precision_warning says
    root = make_project(tmp_path, tiny_models["sd1x"], config={"mixed_precision": "fp16", "max_train_steps": 1})
    events = []
    Trainer(load_project(root), events.append).run()
    warnings = [e.message for e in events if isinstance(e, Log) and e.level == "warning"]
    assert any("mixed_precision 'fp16' is not used on the CPU" in w for w in warnings)
