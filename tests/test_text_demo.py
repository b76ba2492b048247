"""The demo's text-pair size slider ("large" ↔ "small") on the bundled toy model: direction (fast), quality (slow)."""
import json

import pytest
from PIL import Image

from sliderstudio.adapters.adapter_io import read_metadata
from sliderstudio.toy.metrics import measure_image
from sliderstudio.toy.text_demo import EVAL_SUBJECTS, TRAIN_SUBJECTS, TextSliderSettings, eval_prompts, run_text_demo

pytestmark = pytest.mark.filterwarnings("ignore")


def test_evaluation_prompts_are_not_training_prompts():
    assert len(EVAL_SUBJECTS) >= 8 and not set(EVAL_SUBJECTS) & set(TRAIN_SUBJECTS)
    assert all("large" not in p and "small" not in p for p in eval_prompts())


def test_text_project_has_validation_prompts_so_its_adapter_is_calibrated(tmp_path):
    from sliderstudio.engine.calibration_run import settings_for
    from sliderstudio.engine.project import load_project
    from sliderstudio.toy.text_demo import write_text_project

    project = load_project(write_text_project(tmp_path / "text"))
    prompts = [p.prompt for p in project.validation_prompts()]
    assert prompts == ["a red circle on a blue background", "a green square on a white background"]
    assert not set(prompts) & set(eval_prompts())           # the evaluation stays held out
    assert settings_for(project).prompts == prompts and project.config.slider_calibration
    # the measured defaults (docs/TRAINING.md, "...and cross-attention for text pairs"): η 2.75 towards "large",
    # 1.75 towards "small", on the family's ordinary LoRA targets (cross-attention included)
    assert {(p.guidance, p.negative_guidance) for p in project.config.slider_text_pairs} == {(2.75, 1.75)}
    assert project.config.target_preset == "default"


@pytest.mark.slow
def test_short_text_slider_grows_the_shape_with_strength(tmp_path):
    metrics = run_text_demo(tmp_path / "text", TextSliderSettings(steps=60), prompts=2, seeds=1)
    assert metrics["base_identical"] is True            # strength 0 reproduces the base model exactly
    sweeps = metrics["sweeps"]
    assert len(sweeps) == 2
    for sweep in sweeps:   # area at +1 above area at -1, by a visible margin, on prompts never trained
        assert sweep["spearman"] > 0.5 and sweep["range"] > 0.05, sweep
    meta = read_metadata(tmp_path / "text" / "output" / "pytorch_lora_weights.safetensors")
    assert len(meta["text_pairs"]) == len(TRAIN_SUBJECTS) and meta["text_pairs"][0]["positive"].startswith("a large")
    assert meta["polarity"] == "positive" and meta["calibration"]["evidence"]["loss"]["kind"] == "text pairs"
    lo, hi = meta["recommended_range"]
    assert lo < 0 < hi
    written = json.loads((tmp_path / "text" / "config.json").read_text())
    assert json.loads((tmp_path / "text" / "multidatabackend.json").read_text()) == []   # no images at all
    assert written["max_train_steps"] == 60


@pytest.mark.slow
def test_full_text_slider_meets_the_quality_bar(tmp_path):
    """8 held-out prompts × 3 seeds, the demo's settings; the bar is the measured one (docs/TOY-WORLD.md)."""
    metrics = run_text_demo(tmp_path / "text")
    avg = metrics["average"]
    print(json.dumps(avg, indent=1))
    assert metrics["base_identical"] is True and avg["n"] == 24
    assert avg["spearman"] >= 0.98 and avg["min_spearman"] >= 0.9       # issue #16 targets (measured 1.0 / 1.0)
    # the shipped (world-6) toy model, η 2.75 / 1.75 on the ordinary LoRA targets, measured (docs/TOY-WORLD.md):
    # range 0.356 on this 5-strength sweep (0.379 on the 9-strength held-out check over six seeds; target 0.35)
    assert avg["range"] >= 0.35
    drift = avg["preservation"]
    assert drift["background_name_changes"] == 0 and drift["background"] < 0.05   # measured 0 / 0.027
    assert drift["colour_name_changes"] == 0                             # measured 0 of 96 (target: never)
    # This 5-strength sweep's smoothness is 0.24 (the 9-strength held-out check: 0.270, target 0.3); centroid
    # drift 0.031 (target 0.05)
    assert avg["smoothness"] <= 0.3 and drift["centroid"] <= 0.05
    report = tmp_path / "text" / "report"
    shapes = [measure_image(Image.open(report / e["image"])) for e in json.loads((report / "sweep.json").read_text())]
    assert all(m.kind != "none" for m in shapes)           # no collapsed image at any strength in [-1, 1]


def test_text_demo_subjects_keep_clear_of_the_slider_checks_held_out_subjects():
    """The text slider's training subjects are neither the world's evaluation subjects nor its own, so
    both benchmarks/slider_variants.py --text and the demo sweep prompts the slider never trained on."""
    from sliderstudio.toy.text_demo import EVAL_SUBJECTS as TEXT_EVAL, TRAIN_SUBJECTS
    from sliderstudio.toy.world import EVAL_SUBJECTS

    assert not set(TRAIN_SUBJECTS) & set(EVAL_SUBJECTS)
    assert not set(TRAIN_SUBJECTS) & set(TEXT_EVAL)
