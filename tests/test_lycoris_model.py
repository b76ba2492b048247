"""The LyCORIS config as pydantic models (config/lycoris_model.py): the same inputs accepted and refused as
the hand-written checker did, messages in the file's order, each key's rule and reason declared once."""
import json

import pytest

from sliderstudio.kernel.errors import ConfigError
from sliderstudio.config.lycoris_config import (
    lycoris_warnings, parse_lycoris_config, read_lycoris_config, validate_lycoris_config,
)
from sliderstudio.config.lycoris_model import LycorisConfigModel, LycorisPresetModel, expected_of


def keys(data):
    return [p.key for p in validate_lycoris_config(data)]


def test_problems_come_in_the_file_s_order_algo_first_preset_last():
    data = {"apply_preset": {"use_fnmatch": 1, "target_modul": []}, "linear_alpha": "x", "linear_dim": 0,
            "algo": "lokrr"}
    assert keys(data) == ["algo", "linear_alpha", "linear_dim", "apply_preset.use_fnmatch",
                          "apply_preset.target_modul"]
    problems = validate_lycoris_config(data)
    assert [(p.message, p.value) for p in problems[1:3]] == [("expected a number > 0 (got 'x')", "x"),
                                                             ("expected a whole number ≥ 1 (got 0)", 0)]


@pytest.mark.parametrize("data,key,message", [
    ({}, "algo", "missing; the algorithm is required"),
    ({"algo": "LoKr"}, "algo", "algorithm names are lower case: 'lokr' (expected one of lokr, locon, loha, full)"),
    ({"algo": "lokr", "multiplier": True}, "multiplier", "expected a number (got True)"),
    ({"algo": "lokr", "linear_dim": 4.0}, "linear_dim", "expected a whole number ≥ 1 (got 4.0)"),
    ({"algo": "lokr", "linear_dim": "4"}, "linear_dim", "expected a whole number ≥ 1 (got '4')"),
    ({"algo": "lokr", "factor": -2}, "factor", "expected -1 (automatic) or a whole number ≥ 1 (got -2)"),
    ({"algo": "lokr", "dropout": 1}, "dropout", "expected a number in [0, 1) (got 1)"),
    ({"algo": "lokr", "conv_dim": None}, "conv_dim", "expected a whole number ≥ 0 (got None)"),
    ({"algo": "lokr", "use_tucker": "yes"}, "use_tucker", "expected true or false (got 'yes')"),
    ({"algo": "locon", "dora_wd": True}, "dora_wd", "weight decomposition (DoRA) is not supported for sliders"),
    ({"algo": "lokr", "apply_preset": None}, "apply_preset", 'expected an object like {"target_module": [...]}'),
    ({"algo": "lokr", "apply_preset": {"module_algo_map": {}}}, "apply_preset.module_algo_map",
     "per-module algorithms are not supported; use one algo"),
    ({"algo": "lokr", "apply_preset": {"lora_prefix": "lora_unet"}}, "apply_preset.lora_prefix",
     "only 'lycoris' is supported"),
    ({"algo": "lokr", "apply_preset": {"target_name": ["ok", " "]}}, "apply_preset.target_name",
     "expected a list of module paths or class names"),
    ("lokr", "(top level)", 'expected a JSON object like {"algo": "lokr", …}'),
])
def test_refused_inputs_name_key_and_expectation(data, key, message):
    problems = validate_lycoris_config(data)
    assert len(problems) == 1 and problems[0].key == key and problems[0].message.startswith(message)


def test_accepted_values_are_kept_exactly_as_given():
    data = {"algo": "lokr", "dropout": 0, "factor": -1, "conv_alpha": 2, "use_tucker": False, "train_norm": True,
            "apply_preset": {"target_module": ["attn1"], "unet_target_name": ["down.*"], "use_fnmatch": False,
                             "text_encoder_target_module": ["x"], "lora_prefix": "lycoris"}}
    spec = parse_lycoris_config(data, "l.json")
    assert spec.options == {"dropout": 0, "factor": -1, "conv_alpha": 2, "use_tucker": False}
    assert type(spec.options["dropout"]) is int and "train_norm" not in spec.options
    assert (spec.target_module, spec.target_name, spec.use_fnmatch) == (["attn1"], ["down.*"], False)
    assert spec.network_kwargs()["conv_alpha"] == 2 and spec.network_kwargs()["factor"] == -1
    assert spec.warnings == ["train_norm: ignored (a slider never trains text encoders or norm layers)",
                             "apply_preset.text_encoder_target_module: ignored (text encoders are never trained)"]


def test_suggestions_offer_only_keys_that_do_something():
    # 'preset' is accepted but ignored: suggesting it for 'presett' would send the user to a dead key
    assert "did you mean 'apply_preset'" in str(validate_lycoris_config({"algo": "lokr", "presett": 1})[0])
    assert "preset" not in LycorisConfigModel.known_keys() and "linear_dim" in LycorisConfigModel.known_keys()
    assert "module_algo_map" not in LycorisPresetModel.known_keys()
    assert "did you mean 'exclude_name'" in str(validate_lycoris_config(
        {"algo": "lokr", "apply_preset": {"exclude_nam": []}})[0])


def test_each_key_is_declared_once_with_its_help_or_reason():
    ignored = LycorisConfigModel.ignored_keys()
    assert set(ignored) == {"train_norm", "text_encoder_dim", "text_encoder_alpha", "preset", "lora_prefix_unet"}
    for name, field in LycorisConfigModel.model_fields.items():
        assert field.description or name in ignored, name
    assert lycoris_warnings({"algo": "lokr", "preset": "full", "multiplier": 2}) == [
        "preset: ignored (a slider never trains text encoders or norm layers)",
        "multiplier: the slider strength sets the multiplier of every batch; 2 is not used"]
    assert expected_of("linear_dim") == "a whole number ≥ 1" and expected_of("algo") is None


def test_the_file_error_names_file_key_value_and_expectation(tmp_path):
    path = tmp_path / "lycoris.json"
    path.write_text(json.dumps({"algo": "loha", "linear_dim": 0}))
    with pytest.raises(ConfigError) as err:
        read_lycoris_config(path)
    assert (err.value.file, err.value.key, err.value.value, err.value.expected) == (
        str(path), "linear_dim", 0, "a whole number ≥ 1")
    with pytest.raises(ConfigError) as err:
        read_lycoris_config(tmp_path / "nope.json")
    assert err.value.key == "lycoris_config" and "LyCORIS config file not found" in str(err.value)
