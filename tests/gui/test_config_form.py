"""Config forms generated from the pydantic Field metadata: label, range, step and help declared once."""
from __future__ import annotations

import copy

import pytest
from PySide6.QtWidgets import QCheckBox, QComboBox, QDoubleSpinBox, QGridLayout, QLabel, QLineEdit, QSpinBox, QWidget

from sliderstudio.config.config import BucketConfig, TrainConfig
from sliderstudio.config.text_pairs import TextPair
from sliderstudio.gui.config_form import add_rows
from sliderstudio.gui.field_specs import INT_MAX, INT_MIN, field_spec
from sliderstudio.gui.training_pane import ADVANCED_KEYS, SCHEDULE_KEYS, TrainingPane
from sliderstudio.gui.viewmodels.config_fields import config_fields
from sliderstudio.gui.viewmodels.project import ProjectViewModel
from sliderstudio.gui.viewmodels.training import TrainingViewModel
from sliderstudio.gui.workers.tasks import TaskRunner


def test_field_spec_reads_range_label_help_and_choices():
    steps = field_spec(TrainConfig, "max_train_steps")
    assert (steps.kind, steps.label, steps.minimum, steps.maximum) == ("int", "steps", 0, INT_MAX)
    assert steps.help == "Optimizer steps (0: use num_train_epochs)"
    assert (field_spec(TrainConfig, "lora_rank").minimum, field_spec(TrainConfig, "lora_rank").maximum) == (1, 1024)
    assert (field_spec(TrainConfig, "seed").minimum, field_spec(TrainConfig, "seed").maximum) == (INT_MIN, INT_MAX)
    lr = field_spec(TrainConfig, "learning_rate")           # gt=0: the smallest value the 6 decimals can show
    assert (lr.label, lr.decimals, lr.step, lr.minimum) == ("learning rate", 6, 1e-4, pytest.approx(1e-6))
    dropout = field_spec(TrainConfig, "lora_dropout")        # lt=1: one step below
    assert dropout.maximum == pytest.approx(0.99)
    assert field_spec(TrainConfig, "lr_scheduler").choices[:3] == ("constant", "constant_with_warmup", "cosine")
    assert field_spec(TrainConfig, "gradient_checkpointing").kind == "bool"
    flavour = field_spec(TrainConfig, "model_flavour")
    assert (flavour.kind, flavour.optional, flavour.label) == ("text", True, "model_flavour")   # no title: the key
    strength = field_spec(BucketConfig, "slider_strength")
    assert (strength.minimum, strength.maximum) == (-10, 10)
    assert field_spec(TextPair, "guidance").maximum == 50


def test_field_spec_bad_input():
    with pytest.raises(KeyError, match="TrainConfig has no field 'max_steps'"):
        field_spec(TrainConfig, "max_steps")
    with pytest.raises(TypeError, match="no form widget"):
        field_spec(TrainConfig, "slider_calibration_strengths")    # a list: no single widget for it


@pytest.fixture
def training_pane(qtbot, small_project):
    tasks = TaskRunner()
    pvm = ProjectViewModel()
    widget = TrainingPane(TrainingViewModel(pvm, tasks), pvm)
    qtbot.addWidget(widget)
    pvm.set_project(small_project)
    qtbot.waitUntil(lambda: not tasks.busy, timeout=60000)
    yield widget
    tasks.wait()


def row_label(pane: TrainingPane, key: str) -> str:
    return next(label.text() for label in pane.findChildren(QLabel) if label.buddy() is pane.fields[key])


def test_every_training_row_is_its_field(training_pane):
    """Range, step, decimals, label and help of each generated row equal the Field's, for every row."""
    assert tuple(training_pane.fields) == SCHEDULE_KEYS + ADVANCED_KEYS
    for key in SCHEDULE_KEYS:
        widget = training_pane.fields[key]
        spec = field_spec(TrainConfig, key)
        assert (widget.minimum(), widget.maximum()) == (pytest.approx(spec.minimum), pytest.approx(spec.maximum)), key
        assert widget.singleStep() == pytest.approx(spec.step)
        assert row_label(training_pane, key) == TrainConfig.model_fields[key].title
        assert TrainConfig.model_fields[key].description in widget.toolTip()
        assert widget.value() == pytest.approx(getattr(training_pane.pvm.config, key))
    assert isinstance(training_pane.fields["learning_rate"], QDoubleSpinBox)
    assert training_pane.fields["learning_rate"].decimals() == 6
    assert isinstance(training_pane.fields["resolution"], QSpinBox)


def test_a_field_change_reaches_the_form_without_gui_code(qtbot, small_project, monkeypatch):
    """Edit only the Field (title and le) and build the pane again: the row follows."""
    info = copy.copy(TrainConfig.model_fields["resolution"])
    info.title = "image size"
    info.metadata = [m for m in info.metadata] + [__import__("annotated_types").Le(2048)]
    monkeypatch.setitem(TrainConfig.model_fields, "resolution", info)
    tasks = TaskRunner()
    pvm = ProjectViewModel()
    pane = TrainingPane(TrainingViewModel(pvm, tasks), pvm)
    qtbot.addWidget(pane)
    pvm.set_project(small_project)
    assert (pane.fields["resolution"].minimum(), pane.fields["resolution"].maximum()) == (8, 2048)
    assert row_label(pane, "resolution") == "image size"
    qtbot.waitUntil(lambda: not tasks.busy, timeout=60000)
    tasks.wait()


def test_form_edits_follow_the_config_both_ways(training_pane):
    steps = training_pane.fields["max_train_steps"]
    steps.setValue(17)
    assert training_pane.pvm.config.max_train_steps == 17 and training_pane.pvm.dirty
    training_pane.pvm.update_config(seed=99, learning_rate=3e-4)      # another face edits the document
    assert training_pane.fields["seed"].value() == 99
    assert training_pane.fields["learning_rate"].value() == pytest.approx(3e-4)
    assert training_pane.progress.maximum() == 17


def test_a_refused_edit_is_shown_and_the_field_goes_back(training_pane):
    """update_config's message used to be dropped; now the pane says it and keeps the stored value."""
    pvm = training_pane.pvm
    assert pvm.update_config(num_train_epochs=0) is None               # steps alone decide the length now
    training_pane.fields["max_train_steps"].setValue(0)                 # 0 steps and 0 epochs: nothing to train
    assert pvm.config.max_train_steps == 4
    assert training_pane.fields["max_train_steps"].value() == 4
    assert not training_pane.form_notice.isHidden()
    assert training_pane.form_notice.text() == "max_train_steps and num_train_epochs are both 0: nothing to train"
    training_pane.fields["max_train_steps"].setValue(6)                 # an accepted edit clears it
    assert training_pane.form_notice.isHidden() and pvm.config.max_train_steps == 6


def test_generated_rows_for_each_widget_kind(qtbot, small_project):
    """Literal → combo with the choices, bool → check box, optional text → line edit (empty ↔ None)."""
    pvm = ProjectViewModel()
    pvm.set_project(small_project)
    keys = ("lr_scheduler", "gradient_checkpointing", "model_flavour", "lora_dropout")
    fields = config_fields(pvm, keys)
    host = QWidget()
    qtbot.addWidget(host)
    grid = QGridLayout(host)
    editors = add_rows(grid, fields, TrainConfig, keys)
    combo, check, flavour, dropout = (editors[k] for k in keys)
    assert isinstance(combo, QComboBox) and isinstance(check, QCheckBox) and isinstance(flavour, QLineEdit)
    assert [combo.itemData(i) for i in range(combo.count())] == list(field_spec(TrainConfig, "lr_scheduler").choices)
    combo.setCurrentIndex(combo.findData("cosine"))     # what a user's pick does: select, then `activated`
    combo.activated.emit(combo.currentIndex())
    check.setChecked(True)
    flavour.setText("turbo")
    flavour.editingFinished.emit()
    assert (pvm.config.lr_scheduler, pvm.config.gradient_checkpointing, pvm.config.model_flavour) == \
        ("cosine", True, "turbo")
    flavour.setText("  ")
    flavour.editingFinished.emit()
    assert pvm.config.model_flavour is None
    assert dropout.maximum() == pytest.approx(0.99)
    pvm.update_config(lr_scheduler="linear")
    assert combo.currentData() == "linear"
    refused = []
    fields.refused.connect(lambda key, message: refused.append((key, message)))
    assert fields.set("lr_scheduler", "sideways") is not None        # the Literal refuses it; the combo keeps "linear"
    assert refused and refused[0][0] == "lr_scheduler" and combo.currentData() == "linear"


def test_slider_training_keys_hide_behind_a_toggle_and_follow_the_strategy(training_pane):
    """Anchor weight, step mode and timestep bias: generated rows, shown on demand, bias keys greyed out
    where the chosen strategy does not read them, and SimpleTuner's range rule refused with its message."""
    pane, pvm = training_pane, training_pane.pvm
    assert pane.advanced.isHidden()
    pane.advanced_toggle.setChecked(True)
    assert not pane.advanced.isHidden() and pane.advanced_toggle.text() == "Slider training ▾"
    strategy = pane.fields["timestep_bias_strategy"]
    assert [strategy.itemData(i) for i in range(strategy.count())] == ["none", "later", "earlier", "range"]
    assert strategy.currentData() == "none" and row_label(pane, "slider_preserve_weight") == "anchor weight"
    enabled = lambda: {k for k in ADVANCED_KEYS if pane.fields[k].isEnabled()}   # noqa: E731
    assert enabled() == {"slider_preserve_weight", "slider_step_mode", "timestep_bias_strategy", "snr_gamma"}
    strategy.setCurrentIndex(strategy.findData("later"))
    strategy.activated.emit(strategy.currentIndex())
    pane.fields["timestep_bias_multiplier"].setValue(3)
    assert (pvm.config.timestep_bias_strategy, pvm.config.timestep_bias_multiplier) == ("later", 3.0)
    assert enabled() >= {"timestep_bias_multiplier", "timestep_bias_portion"}
    assert not {"timestep_bias_begin", "timestep_bias_end"} & enabled()
    pvm.update_config(timestep_bias_strategy="range", timestep_bias_begin=100, timestep_bias_end=300)
    assert {"timestep_bias_begin", "timestep_bias_end"} <= enabled() and "timestep_bias_portion" not in enabled()
    pane.fields["timestep_bias_end"].setValue(50)                       # below begin: nothing would be biased
    assert pvm.config.timestep_bias_end == 300 and pane.fields["timestep_bias_end"].value() == 300
    assert "timestep_bias_begin < timestep_bias_end" in pane.form_notice.text()
    pane.fields["slider_preserve_weight"].setValue(3)
    assert pvm.config.slider_preserve_weight == 3


def test_an_optional_number_shows_none_as_off(training_pane):
    """snr_gamma (None: no weighting) is a spin box whose lowest value reads "off" and writes None back."""
    pane, pvm = training_pane, training_pane.pvm
    gamma = pane.fields["snr_gamma"]
    assert row_label(pane, "snr_gamma") == "min-SNR γ" and pvm.config.snr_gamma is None
    assert gamma.value() == gamma.minimum() and gamma.text() == "off"
    gamma.setValue(5)
    assert pvm.config.snr_gamma == 5.0
    gamma.setValue(gamma.minimum())
    assert pvm.config.snr_gamma is None and gamma.text() == "off"
    pvm.update_config(snr_gamma=2.5)
    assert gamma.value() == 2.5
    assert field_spec(TrainConfig, "snr_gamma").minimum > gamma.minimum()   # "off" is below every valid value


def test_soft_min_snr_keys_follow_snr_gamma_and_need_sigma_data(training_pane):
    """SimpleTuner's soft min-SNR: greyed out until snr_gamma turns weighting on; ticking it before σ_data
    is set is refused with the rule's message, and σ_data first then the tick is taken."""
    pane, pvm = training_pane, training_pane.pvm
    soft, sigma = pane.fields["use_soft_min_snr"], pane.fields["soft_min_snr_sigma_data"]
    assert not soft.isEnabled() and not sigma.isEnabled() and sigma.text() == "off"
    pane.fields["snr_gamma"].setValue(5)
    assert soft.isEnabled() and sigma.isEnabled()
    soft.setChecked(True)                                               # no σ_data yet: refused
    assert pvm.config.use_soft_min_snr is False and not soft.isChecked()
    assert "soft_min_snr_sigma_data" in pane.form_notice.text()
    sigma.setValue(1.0)
    soft.setChecked(True)
    assert (pvm.config.use_soft_min_snr, pvm.config.soft_min_snr_sigma_data) == (True, 1.0)
    assert row_label(pane, "use_soft_min_snr") == "soft min-SNR"
    assert row_label(pane, "soft_min_snr_sigma_data") == "σ data"
    pane.fields["snr_gamma"].setValue(pane.fields["snr_gamma"].minimum())   # weighting off: the soft keys grey out
    assert pvm.config.snr_gamma is None and not soft.isEnabled() and not sigma.isEnabled()
    assert pvm.config.use_soft_min_snr is True                          # greyed, not reset
