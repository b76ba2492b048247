"""Config model: SimpleTuner keys, did-you-mean, warnings, and errors naming file/key/expectation."""
import json

import pytest

from sliderstudio.config.config import parse_buckets, parse_prompt_library, parse_train_config
from sliderstudio.kernel.errors import ConfigError
from sliderstudio.engine.project import load_project, parse_cli_overrides


def test_dashed_keys_and_string_values_are_accepted():
    cfg, warnings = parse_train_config({"--lora_rank": "8", "--slider_lora_target": "true",
                                        "learning_rate": "2e-4"}, "c.json")
    assert (cfg.lora_rank, cfg.slider_lora_target, cfg.learning_rate) == (8, True, 2e-4)
    assert warnings == []


def test_misspelt_key_suggests_the_right_one():
    with pytest.raises(ConfigError) as err:
        parse_train_config({"lora_rnak": 4}, "/p/config.json")
    assert err.value.file == "/p/config.json" and err.value.key == "lora_rnak"
    assert "did you mean 'lora_rank'" in str(err.value)


def test_known_simpletuner_key_only_warns():
    cfg, warnings = parse_train_config({"report_to": "wandb", "use_ema": True}, "c.json")
    assert len(warnings) == 2 and "report_to" in warnings[0] and "does not implement" in warnings[0]


@pytest.mark.parametrize("data,key,fragment", [
    ({"lora_rank": "abc"}, "lora_rank", "valid integer"),
    ({"lora_rank": 0}, "lora_rank", "greater than or equal to 1"),
    ({"lora_type": "dora"}, "lora_type", "'standard' or 'lycoris'"),
    ({"learning_rate": -1}, "learning_rate", "greater than 0"),
])
def test_wrong_types_name_the_key(data, key, fragment):
    with pytest.raises(ConfigError) as err:
        parse_train_config(data, "c.json")
    assert err.value.key == key and fragment in str(err.value)


def test_lycoris_needs_its_config():
    with pytest.raises(ConfigError, match="lycoris_config"):
        parse_train_config({"lora_type": "lycoris"}, "c.json")


def test_bucket_errors_name_the_entry():
    with pytest.raises(ConfigError) as err:
        parse_buckets([{"id": "a", "instance_data_dir": "x"}, {"id": "b", "instance_data_dir": "y",
                                                                "probability": "often"}], "m.json")
    assert err.value.key == "[1].probability"
    with pytest.raises(ConfigError, match="duplicate bucket id 'a'"):
        parse_buckets([{"id": "a", "instance_data_dir": "x"}, {"id": "a", "instance_data_dir": "y"}], "m.json")
    with pytest.raises(ConfigError, match="did you mean 'slider_strength'"):
        parse_buckets([{"id": "a", "instance_data_dir": "x", "slider_strenght": 1}], "m.json")


def test_prompt_library_forms_and_bad_strength():
    lib = parse_prompt_library({"a": "a cat", "b": {"prompt": "a dog", "adapter_strength": 1.2}}, "lib.json")
    assert [(e.name, e.prompt, e.adapter_strength) for e in lib] == [("a", "a cat", None), ("b", "a dog", 1.2)]
    with pytest.raises(ConfigError) as err:
        parse_prompt_library({"b": {"prompt": "a dog", "adapter_strength": "strong"}}, "lib.json")
    assert err.value.key == "b.adapter_strength" and "must be a number" in str(err.value)


def test_bad_json_reports_line_and_column(tmp_path):
    (tmp_path / "config.json").write_text('{\n  "lora_rank": 4,\n  "seed": ,\n}')
    with pytest.raises(ConfigError) as err:
        load_project(tmp_path)
    assert "line 3, column 11" in str(err.value) and err.value.file.endswith("config.json")


def test_project_resolves_relative_paths_and_overrides(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"data_backend_config": "db.json", "lora_rank": 4}))
    (tmp_path / "db.json").write_text(json.dumps([{"id": "a", "instance_data_dir": "imgs", "slider_strength": 1}]))
    project = load_project(tmp_path / "config.json", parse_cli_overrides(["--lora_rank", "16"]))
    assert project.config.lora_rank == 16
    assert project.bucket_dir(project.buckets[0]) == tmp_path / "imgs"
    with pytest.raises(ConfigError, match="missing value"):
        parse_cli_overrides(["--lora_rank"])


def test_overrides_read_simpletuners_key_equals_value_form():
    assert parse_cli_overrides(["--lora_rank=16", "--validation_prompt", "a b=c", "--seed=", "--x==y"]) == \
        parse_cli_overrides(["--lora_rank", "16", "--validation_prompt", "a b=c", "--seed", "", "--x", "=y"])
    assert parse_cli_overrides(["--lora_rank=16"])["lora_rank"] == 16
