"""benchmarks/gpu_check.py --tiny: the GPU check's code paths on the CPU, every model × mode × loop row."""
import importlib.util
import json
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


def load_script():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_tiny_run_writes_every_row_with_positive_numbers_and_planner_columns(tmp_path, capsys):
    gpu_check = load_script()
    out = tmp_path / "check.json"
    assert gpu_check.main(["--tiny", "--steps", "1", "--budget-s", "100000", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["tiny"] and result["device"] == "cpu" and result["matmul_peak_tflops"] > 0
    rows = {(r["model"], r["mode"], r["loop"]): r for r in result["rows"]}
    assert set(rows) == {(m, mode, loop) for m in gpu_check.MODELS for mode in gpu_check.MODES
                         for loop in gpu_check.LOOPS}
    for (model, mode, loop), row in rows.items():
        if loop == "plain" and mode == "offload":
            assert row["status"].startswith("skipped: diffusers' apply_group_offloading moves the PEFT LoRA")
            continue
        assert row["status"] == "ok", (model, mode, loop, row["status"])
        for key in ("ms_per_step", "tflop_per_step", "mfu", "peak_gib", "planner_gib", "measured_over_planner",
                    "build_s"):
            assert row[key] > 0, (model, mode, loop, key)
        assert row["steps_timed"] == 1
    # the planner columns are the full-size estimates of each mode: offloading and checkpointing shrink them
    for model in gpu_check.MODELS:
        plan = {mode: rows[(model, mode, "ours")]["planner_gib"] for mode in gpu_check.MODES}
        assert plan["checkpointing"] < plan["bf16"] and plan["int8"] < plan["bf16"]
    assert rows[("flux", "offload", "ours")]["planner_gib"] < rows[("flux", "checkpointing", "ours")]["planner_gib"]
    printed = capsys.readouterr().out
    assert "| model | mode | loop | ms/step |" in printed and "| flux | offload | ours |" in printed


def test_budget_skips_what_would_not_fit_and_says_so(tmp_path):
    gpu_check = load_script()
    import torch

    setting = gpu_check.Setting(False, torch.device("cpu"), 1024, {m: 8 for m in gpu_check.MODELS}, 1, 1,
                                torch.float32)
    result = gpu_check.run_all(setting, 1.0, ("flux",), ("bf16",), lambda line: None, peak=1.0)
    assert [r["status"][:16] for r in result["rows"]] == ["skipped: budget "] * 2
    assert "s left)" in result["rows"][0]["status"]


@pytest.mark.parametrize("argv", [["--tiny", "--models", "sd9"], ["--tiny", "--modes", "fp4"],
                                  ["--tiny", "--steps", "-1"]])
def test_bad_arguments_exit_2(argv, capsys):
    assert load_script().main(argv) == 2
    assert "unknown model or mode" in capsys.readouterr().err
