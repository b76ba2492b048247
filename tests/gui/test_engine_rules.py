"""The app shows the engine's rules, not its own copies: preset precedence, LyCORIS targets, strength range.

Each test compares what a view-model or widget says with what the engine does for the same input,
over several inputs, so a GUI that drifts from the engine again fails here.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from sliderstudio.config.config import BucketConfig, TrainConfig
from sliderstudio.gui.viewmodels.architecture import ArchitectureViewModel, preset_choice
from sliderstudio.gui.viewmodels.project import ProjectViewModel
from sliderstudio.gui.workers.tasks import TaskRunner

CONFIGS = [
    {},
    {"slider_lora_target": False},
    {"slider_target_preset": "reference"},
    {"slider_target_preset": "default", "slider_lora_target": True},
    {"slider_target_preset": "slider", "slider_lora_target": False},
    {"peft_lora_target_modules": ["proj_in"], "slider_target_preset": "reference"},
    {"peft_lora_target_modules": ["attn1.to_q", "attn1.to_k"], "slider_lora_target": False},
]


@pytest.mark.parametrize("changes", CONFIGS)
def test_preset_choice_is_the_trainers(changes):
    from sliderstudio.adapters.targets import preset_patterns
    from sliderstudio.families.registry import get_family

    config = TrainConfig(**changes)
    assert preset_choice(config) == preset_patterns(get_family("sd1x"), config)[0]


# (LyCORIS preset, config changes): entries by path, SimpleTuner's unet_* spellings, regexes, class names
# with exclusions, and presets without targets that fall back to the config's own choice.
LYCORIS_CASES = [
    ({"algo": "lokr", "factor": 4, "apply_preset": {"target_module": ["attn1.to_q"],
                                                    "unet_target_module": ["proj_in"]}}, {}),
    ({"algo": "locon", "apply_preset": {"target_name": [r"down_blocks\.0\..*to_k$"]}}, {}),
    ({"algo": "lokr", "apply_preset": {"target_module": ["Attention"], "exclude_name": [".*attn2.*"]}}, {}),
    ({"algo": "loha", "apply_preset": {"unet_target_name": ["up_blocks.*proj_out"], "use_fnmatch": True}}, {}),
    ({"algo": "loha"}, {"slider_target_preset": "default"}),
    ({"algo": "lokr", "apply_preset": {}}, {"peft_lora_target_modules": ["proj_out", "conv_in"]}),
]


@pytest.fixture(scope="module")
def tiny_unet(tiny_models):
    """The real (not meta) UNet of the session's tiny SD 1.x: what training attaches the slider to."""
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel.from_pretrained(tiny_models["sd1x"] / "unet", local_files_only=True)


def training_targets(unet, path: Path, config: TrainConfig) -> list[str]:
    """The modules `training_setup.attach_slider` → `attach_lycoris` selects for this preset and config."""
    from sliderstudio.adapters.lycoris_adapter import resolve_lycoris_targets
    from sliderstudio.config.lycoris_config import read_lycoris_config
    from sliderstudio.adapters.targets import preset_patterns
    from sliderstudio.families.registry import get_family

    spec = read_lycoris_config(path)
    return resolve_lycoris_targets(unet, spec, preset_patterns(get_family("sd1x"), config), strict=False).module_names


def test_lycoris_table_matches_training(qtbot, small_project, tiny_models, tiny_unet):
    tasks = TaskRunner()
    pvm = ProjectViewModel()
    vm = ArchitectureViewModel(pvm, tasks, debounce_ms=10)
    try:
        for index, (preset, changes) in enumerate(LYCORIS_CASES):
            path = small_project.root / f"lycoris-{index}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(preset), encoding="utf-8")
            small_project.config = TrainConfig(**{
                "max_train_steps": 4, "model_family": "sd1x", "pretrained_model_name_or_path": str(tiny_models["sd1x"]),
                "lora_type": "lycoris", "lycoris_config": path.name, **changes})
            with qtbot.waitSignal(vm.targetsResolved, timeout=60000,
                                  check_params_cb=lambda r: r.report is not None or r.error is not None):
                pvm.set_project(small_project)
            qtbot.waitUntil(lambda: not vm.resolving, timeout=60000)
            shown = vm.result.report.module_names
            assert shown, (preset, vm.result.error)
            assert sorted(shown) == sorted(training_targets(tiny_unet, path, small_project.config)), preset
    finally:
        tasks.wait()


def test_lycoris_table_keeps_unet_target_module(qtbot, small_project, tiny_models):
    """The app's old reading dropped `unet_target_module`: its rows were missing from the table."""
    from sliderstudio.gui.viewmodels.architecture import resolve_for_table

    path = small_project.root / "unet-only.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"algo": "lokr", "apply_preset": {"unet_target_module": ["proj_in", "proj_out"]}}),
                    encoding="utf-8")
    result = resolve_for_table("sd1x", str(tiny_models["sd1x"]), "slider", path)
    counts = {e.pattern: e.count for e in result.report.entries}
    assert counts == {"proj_in": 4, "proj_out": 4} and result.error is None
    path.write_text(json.dumps({"algo": "lokr", "apply_preset": {"unet_target_module": "proj_in"}}), encoding="utf-8")
    bad = resolve_for_table("sd1x", str(tiny_models["sd1x"]), "slider", path)
    assert bad.report is None and "apply_preset.unet_target_module" in bad.error and str(path) in bad.error


def test_strength_dial_offers_the_configs_range(qtbot, small_project):
    from sliderstudio.gui.dataset_pane import DatasetPane
    from sliderstudio.gui.viewmodels.dataset import DatasetViewModel

    info = BucketConfig.model_fields["slider_strength"]
    low = next(m.ge for m in info.metadata if hasattr(m, "ge"))
    high = next(m.le for m in info.metadata if hasattr(m, "le"))
    tasks = TaskRunner()
    pvm = ProjectViewModel()
    vm = DatasetViewModel(pvm, tasks)
    pane = DatasetPane(vm)
    qtbot.addWidget(pane)
    pvm.set_project(small_project)
    qtbot.waitUntil(lambda: not vm.scanning, timeout=5000)
    row = pane.rows["more"]
    assert (row.strength.minimum(), row.strength.maximum()) == (low, high)
    for value, stored in ((3.0, 3.0), (-7.26, -7.25), (high + 5, high)):   # the dial used to stop at ±1
        row.strength.setValue(value)
        assert vm.bucket("more").slider_strength == stored
        assert row.strength.value() == pytest.approx(min(stored, high))
    BucketConfig.model_validate(vm.bucket("more").model_dump())           # what the dial stored, the config accepts
    tasks.wait()
