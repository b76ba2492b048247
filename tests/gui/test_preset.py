"""Architecture picker: target table counts for a tiny model, preset mapping, LyCORIS editor."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from sliderstudio.config.config import TrainConfig
from sliderstudio.gui.preset_pane import PresetPane
from sliderstudio.gui.viewmodels.architecture import ArchitectureViewModel
from sliderstudio.gui.viewmodels.lycoris import validate_lycoris
from sliderstudio.gui.viewmodels.project import ProjectViewModel
from sliderstudio.gui.workers.tasks import TaskRunner


@pytest.fixture
def tiny_sd(tiny_models) -> Path:
    """The session's tiny SD 1.x folder (built once by tests/conftest.py)."""
    return tiny_models["sd1x"]


@pytest.fixture
def pane(qtbot, small_project, tiny_sd):
    tasks = TaskRunner()
    pvm = ProjectViewModel()
    small_project.config = small_project.config.model_copy(
        update={"pretrained_model_name_or_path": str(tiny_sd), "model_family": "sd1x"})
    vm = ArchitectureViewModel(pvm, tasks, debounce_ms=20)
    widget = PresetPane(vm)
    qtbot.addWidget(widget)
    with qtbot.waitSignal(vm.familiesLoaded, timeout=60000):
        vm.load_families()
    pvm.set_project(small_project)
    qtbot.waitUntil(lambda: vm.result is not None and not vm.resolving, timeout=30000)
    yield widget
    tasks.wait()


def table(pane) -> dict[str, int]:
    assert pane.table.rowCount() or pane.vm.result is None, f"no rows: {pane.total_label.text()!r} {pane.vm.result}"
    return {pane.table.item(r, 0).text(): int(pane.table.item(r, 1).text()) for r in range(pane.table.rowCount())}


def resolve(pane, qtbot, action) -> None:
    with qtbot.waitSignal(pane.vm.targetsResolved, timeout=30000):
        action()


def test_slider_preset_counts_on_tiny_unet(pane):
    # tiny UNet: 4 transformer blocks (down 1, mid 1, up 2), each with one attn1 and proj_in/out.
    assert table(pane) == {"attn1.to_q": 4, "attn1.to_k": 4, "attn1.to_v": 4, "attn1.to_out.0": 4,
                           "proj_in": 4, "proj_out": 4, "conv_in": 1,
                           "time_embedding.linear_1": 1, "time_embedding.linear_2": 1}
    assert pane.total_label.text() == "27 modules will carry the slider"   # conv_out is not a slider target
    assert pane.choice_buttons["slider"].isChecked()
    assert "sd1x" in [pane.family.itemData(i) for i in range(pane.family.count())]
    assert "Linear × 4" in pane.table.item(0, 2).text()


def test_reference_preset_shows_zero_rows(pane, qtbot):
    resolve(pane, qtbot, pane.choice_buttons["reference"].click)
    counts = table(pane)
    assert counts["to_qkv"] == 0 and counts["attn1.to_qkv"] == 0   # exists only after QKV fusion
    assert counts["attn1.to_q"] == 4
    assert pane.vm.config.slider_target_preset == "reference"


def test_default_and_custom_map_onto_config_keys(pane, qtbot):
    resolve(pane, qtbot, pane.choice_buttons["default"].click)
    assert pane.vm.config.slider_lora_target is False
    assert table(pane)["to_q"] == 8                     # attn1 and attn2 in 4 blocks
    resolve(pane, qtbot, pane.choice_buttons["custom"].click)
    assert not pane.custom.isHidden()
    pane.custom.setPlainText("attn1.to_q\nnothing.here")
    resolve(pane, qtbot, pane.apply_custom.click)
    assert pane.vm.config.peft_lora_target_modules == ["attn1.to_q", "nothing.here"]
    assert table(pane) == {"attn1.to_q": 4, "nothing.here": 0}
    resolve(pane, qtbot, lambda: pane.vm.set_custom_targets("nothing.here"))
    assert pane.total_label.text().startswith("✗ ") and "zero modules" in pane.total_label.text()


def test_rank_alpha_and_tooltips(pane):
    pane.rank.setValue(8)
    pane.alpha.setValue(4.0)
    assert (pane.vm.config.lora_rank, pane.vm.config.lora_alpha) == (8, 4.0)
    pane.alpha.setValue(0.0)
    assert pane.vm.config.lora_alpha is None and pane.alpha.text() == "= rank"
    rank = TrainConfig.model_fields["lora_rank"].metadata           # the spin box offers the Field's ge/le
    assert (pane.rank.minimum(), pane.rank.maximum()) == (rank[0].ge, rank[1].le) == (1, 1024)
    pane.vm.project_vm.update_config(lora_rank=32, lora_alpha=16.0)  # the document changes: the widgets follow
    assert (pane.rank.value(), pane.alpha.value()) == (32, 16.0)
    pane.model.setText("  ")
    pane.model.editingFinished.emit()                               # an empty model field means the Field default
    assert pane.vm.config.pretrained_model_name_or_path == TrainConfig.model_fields[
        "pretrained_model_name_or_path"].default
    for widget, key in ((pane.family, "model_family"), (pane.model, "pretrained_model_name_or_path"),
                        (pane.rank, "lora_rank"), (pane.alpha, "lora_alpha"), (pane.adapter, "lora_type")):
        assert f"<code>{key}</code>" in widget.toolTip()


def test_lycoris_editor_validates_and_saves(pane, qtbot):
    pane.adapter.setCurrentIndex(1)
    pane.adapter.activated.emit(1)
    config = pane.vm.config
    assert config.lora_type == "lycoris" and config.lycoris_config == "lycoris_config.json"
    assert pane.vm.project_vm.flush()             # the starter preset is written on the writer thread
    saved = json.loads((pane.vm.project_vm.project.root / "lycoris_config.json").read_text())
    assert saved["algo"] == "lokr"
    assert not pane.lycoris.isHidden()
    pane.lycoris.text.setPlainText('{"algo": "lokr", "linear_dim": 0,')
    assert "invalid JSON at line 1" in pane.lycoris.status.text()
    assert not pane.lycoris.save_button.isEnabled()
    pane.lycoris.text.setPlainText('{"algo": "lokx", "linear_dim": 0}')
    assert "algo: unsupported algorithm 'lokx'; did you mean 'lokr'?" in pane.lycoris.status.text()
    assert "linear_dim: expected a whole number" in pane.lycoris.status.text()
    good = {"algo": "loha", "linear_dim": 8, "linear_alpha": 4,
            "apply_preset": {"target_module": ["attn1.to_q", "attn1.to_v"]}}
    pane.lycoris.text.setPlainText(json.dumps(good))
    assert pane.lycoris.algo.currentText() == "loha"
    resolve(pane, qtbot, pane.lycoris.save_button.click)
    assert json.loads((pane.vm.project_vm.project.root / "lycoris_config.json").read_text()) == good
    assert table(pane) == {"attn1.to_q": 4, "attn1.to_v": 4}


def test_lycoris_check_rules():
    assert validate_lycoris('{"algo": "full"}').warnings == [
        "apply_preset names no targets: the config's target preset will be used"]
    check = validate_lycoris('{"algo": "lokr", "factor": 0, "multiplier": "1", '
                             '"apply_preset": {"target_module": "attn1"}}')
    assert sorted(check.errors) == sorted(["multiplier: expected a number (got '1')",
                                           "factor: expected -1 (automatic) or a whole number ≥ 1 (got 0)",
                                           "apply_preset.target_module: expected a list of module paths or class names"])
    assert validate_lycoris('{"algo": "ia3"}').errors == [
        "algo: unsupported algorithm 'ia3' (supported: lokr, locon, loha, full)"]
    assert validate_lycoris("[1]").errors == ['(top level): expected a JSON object like {"algo": "lokr", …}']
    assert validate_lycoris('{"algo": "lokr",}').errors[0].startswith("invalid JSON at line 1, column 17")