"""`sliderstudio report --lora F`: calibration from the metadata, quality figures, and bad input."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from sliderstudio.toy.metrics import TOY_METER
from sliderstudio.cli import main
from sliderstudio.engine.calibration import Sweep, measure, to_metadata
from sliderstudio.toy.world import ShapeSpec, render

STRENGTHS = [-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0]
TENSORS = {"unet.conv_in.lora_A.weight": torch.zeros(2, 4), "unet.conv_in.lora_B.weight": torch.zeros(4, 2)}


def _calibration():
    """A size slider drawn exactly: area grows to +1, then stops (saturates at +2)."""
    images = [render(ShapeSpec("circle", "red", "blue", 0.5 + 0.15 * min(s, 1.0)), 32) for s in STRENGTHS]
    return measure([Sweep("a red circle", 0, STRENGTHS, images)], meter=TOY_METER, expected={"area": 0.3})


def _write(path: Path, metadata: dict, tensors: dict | None = None) -> Path:
    header = {f"sliderstudio.{k}": json.dumps(v) for k, v in metadata.items()}
    save_file(tensors if tensors is not None else TENSORS, str(path), metadata=header)
    return path


def _run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["report", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_text_report_shows_range_polarity_and_curve(tmp_path, capsys):
    cal = _calibration()
    path = _write(tmp_path / "slider.safetensors", {"family": "sd1x", "base_model": "some/model", **to_metadata(cal)})
    code, out, err = _run(capsys, "--lora", str(path), "--no-quality")
    assert code == 0, err
    lo, hi = cal.recommended
    assert (lo, hi) == (-2.0, 1.0)
    assert f"recommended range: {lo:+g} … {hi:+g}" in out
    assert "positive side: saturates (or turns back) at +2" in out and "negative side: still responding" in out
    assert "polarity: positive (+1 adds what the positive buckets show)" in out
    rows = [line.split() for line in out.splitlines() if line.strip().startswith(("+", "-")) and "…" not in line]
    assert [float(r[0]) for r in rows] == STRENGTHS  # one curve row per strength, in order


def test_json_report_values(tmp_path, capsys):
    cal = _calibration()
    path = _write(tmp_path / "slider.safetensors", {"family": "sd1x", "step": 300, **to_metadata(cal)})
    code, out, _ = _run(capsys, "--lora", str(path), "--no-quality", "--json")
    data = json.loads(out)
    assert code == 0
    assert data["recommended_range"] == [-2.0, 1.0] and data["polarity"] == "positive" and data["step"] == 300
    assert data["calibration"]["measure"] == "attribute:area"
    assert [p["strength"] for p in data["calibration"]["curve"]] == STRENGTHS
    assert data["quality"] is None


def test_adapter_without_calibration_says_so(tmp_path, capsys):
    path = _write(tmp_path / "old.safetensors", {"family": "sdxl"})
    code, out, _ = _run(capsys, "--lora", str(path))
    assert code == 0
    assert "no calibration in this adapter's metadata" in out
    assert "give --project P" in out  # and why there are no quality figures


@pytest.mark.parametrize("make, message", [
    (lambda d: d / "missing.safetensors", "no such adapter file"),
    (lambda d: d, "no such adapter file"),  # a folder
    (lambda d: _bytes(d / "weights.bin", b"\x80\x04K\x01."), "only .safetensors adapters"),
    (lambda d: _bytes(d / "junk.safetensors", b"not a safetensors header"), "not a readable safetensors file"),
    (lambda d: _write(d / "model.safetensors", {}, {"conv_in.weight": torch.zeros(4, 4)}), "not a LoRA/LyCORIS"),
])
def test_bad_input_exits_2_naming_the_file(tmp_path, capsys, make, message):
    path = make(tmp_path)
    code, out, err = _run(capsys, "--lora", str(path))
    assert code == 2 and out == ""
    assert message in err and str(path) in err


def test_bad_seeds_exit_2(tmp_path, capsys):
    path = _write(tmp_path / "slider.safetensors", {})
    code, _, err = _run(capsys, "--lora", str(path), "--seeds", "0")
    assert code == 2 and "--seeds" in err


def _bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_toy_adapter_gets_quality_figures(tmp_path, capsys):
    """A short real toy slider: calibrated in training, and the report renders its quality sweep."""
    from sliderstudio.engine.project import load_project
    from sliderstudio.engine.trainer import Trainer
    from sliderstudio.toy.demo_project import write_demo_project

    root = write_demo_project(tmp_path / "demo", max_train_steps=40)
    cfg = json.loads((root / "config.json").read_text())
    cfg.update(checkpointing_steps=0, validation_steps=0, slider_calibration_prompts=1, slider_calibration_steps=5,
               slider_calibration_strengths=[-2, -1, 1, 2])
    (root / "config.json").write_text(json.dumps(cfg))
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # the toy model's tiny matrices: two threads only spin on a busy 2-core machine
    try:
        adapter = Trainer(load_project(root)).run()
        code, out, err = _run(capsys, "--lora", str(adapter), "--seeds", "1", "--json")
    finally:
        torch.set_num_threads(before)
    assert code == 0, err
    data = json.loads(out)
    quality = data["quality"]
    assert quality["kind"] == "toy" and quality["attribute"] == "area"
    assert len(quality["sweeps"]) == 4  # the demo's four prompts, one seed
    avg = quality["average"]
    assert avg["images"] == 36 and 0 <= avg["collapsed"] <= 36 and avg["range"] > 0
    assert {"shape_colour", "background", "centroid"} <= set(avg["preservation"])
    assert all("collapsed" in sw and sw["strengths"][0] == -1.0 for sw in quality["sweeps"])
    assert data["calibration"]["step"] == 40
    code, text, _ = _run(capsys, "--lora", str(adapter), "--no-quality")
    assert code == 0 and "calibrated at step 40" in text
    from sliderstudio.toy.report import format_quality

    text = format_quality(quality)
    assert "quality (area):" in text and "overall (4 sweeps)" in text and "of 36 images" in text


def test_any_model_with_a_project_is_measured_now(tmp_path, tiny_models, capsys):
    """Not the toy model: --project calibrates the adapter on the project's validation prompts."""
    from sliderstudio.engine.project import load_project
    from sliderstudio.engine.trainer import Trainer
    from tests.conftest import make_project

    root = make_project(tmp_path / "proj", tiny_models["sd1x"], prompts={"p": "a red square"},
                        config={"max_train_steps": 2, "user_prompt_library": "prompts.json",
                                "slider_calibration": False, "slider_calibration_strengths": [-2, -1, 1, 2]})
    adapter = Trainer(load_project(root)).run()
    code, out, err = _run(capsys, "--lora", str(adapter))
    assert code == 0 and "no calibration in this adapter's metadata" in out and "give --project P" in out
    code, out, err = _run(capsys, "--lora", str(adapter), "--project", str(root), "--seeds", "2", "--json")
    assert code == 0, err
    quality = json.loads(out)["quality"]
    assert quality["kind"] == "generic" and quality["measure"] == "latent distance"
    assert [p["strength"] for p in quality["calibration"]["curve"]] == [-2, -1, 0, 1, 2]
    assert [(sw["prompt"], sw["seed"]) for sw in quality["sweeps"]] == [("a red square", 0), ("a red square", 1)]
    assert quality["average"]["images"] == 6  # 2 sweeps x the 3 strengths inside [-1, 1]
    code, text, _ = _run(capsys, "--lora", str(adapter), "--project", str(root), "--seeds", "1")
    assert "measured now on the project's validation prompts:" in text and "quality inside [-1, 1]" in text
