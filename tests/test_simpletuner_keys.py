"""SimpleTuner's key registry as data: every key classified, aliases, choices, types, bucket-key API."""
import json
from pathlib import Path

import pytest

from sliderstudio.config import simpletuner_keys as st
from sliderstudio.config.config import TrainConfig, parse_train_config, parse_train_config_report
from sliderstudio.kernel.errors import ConfigError

SHARED = Path(__file__).resolve().parents[2] / "shared" / "simpletuner"


@pytest.mark.skipif(not (SHARED / "fields.json").exists(), reason="the shared facts folder is not beside the repo")
def test_shipped_data_equals_the_shared_copy():
    assert st.registry() == json.loads((SHARED / "fields.json").read_text())
    shared_keys = {line.strip() for line in (SHARED / "dataloader-keys.txt").read_text().splitlines() if line.strip()}
    assert st.dataloader_keys() == shared_keys


def test_every_registry_key_is_classified_with_a_reason():
    counts = {"implemented": 0, "mapped": 0, "ignored": 0}
    mapped = set()
    for key in st.registry():
        status = st.classify_train_key(key)
        assert status is not None, key
        counts[status.status] += 1
        if status.status == "mapped":
            mapped.add(key)
        if status.status == "ignored":
            assert status.reason and status.target is None, key
        else:
            assert status.target in TrainConfig.model_fields, key
    assert sum(counts.values()) == len(st.registry()) == 529
    assert counts["implemented"] >= 60
    assert mapped == {"checkpoint_step_interval", "validation_step_interval", "validation_lycoris_strength",
                      "enable_group_offload", "group_offload_blocks_per_group", "musubi_blocks_to_swap", "ramtorch"}
    # the canonical fields are the legacy names SimpleTuner still reads
    assert st.classify_train_key("checkpoint_step_interval").target == "checkpointing_steps"
    assert st.classify_train_key("validation_step_interval").target == "validation_steps"


@pytest.mark.parametrize("key,fragment", [
    ("push_to_hub", "nothing is uploaded"),
    ("report_to", "no tracking"),
    ("musubi_block_swap_device", "CPU memory (offload_blocks)"),
    ("group_offload_use_stream", "synchronously"),
    ("ramtorch_vae", "caches are complete"),
    ("use_ema", "no EMA"),
    ("fsdp_state_dict_type", "replicated"),
    ("text_encoder_3_precision", "training precision"),
    ("fuse_qkv_projections", "unfused"),
    ("flux_lora_target", "applies it to flux only"),
])
def test_ignored_keys_say_what_ignoring_means(key, fragment):
    status = st.classify_train_key(key)
    assert status.status == "ignored" and fragment in status.reason


def test_only_unknown_keys_fail_with_did_you_mean():
    with pytest.raises(ConfigError) as err:
        parse_train_config({"checkpoint_step_intervall": 5}, "c.json")
    assert err.value.key == "checkpoint_step_intervall"
    assert "did you mean 'checkpoint_step_interval'?" in str(err.value)
    assert st.classify_train_key("definitely_not_a_key") is None


def test_both_spellings_load_and_a_contradiction_is_refused():
    for data in ({"checkpoint_step_interval": 7}, {"--checkpointing_steps": 7}):
        cfg, _ = parse_train_config(data, "c.json")
        assert cfg.checkpointing_steps == 7
    cfg, notes = parse_train_config_report({"validation_step_interval": 3, "checkpointing_steps": 4}, "c.json")
    assert (cfg.validation_steps, cfg.checkpointing_steps) == (3, 4)
    assert [str(n) for n in notes] == ["c.json: mapped: validation_step_interval → validation_steps"]
    cfg, _ = parse_train_config({"checkpoint_step_interval": 5, "checkpointing_steps": 5}, "c.json")
    assert cfg.checkpointing_steps == 5
    with pytest.raises(ConfigError) as err:
        parse_train_config({"checkpoint_step_interval": 5, "checkpointing_steps": 6}, "c.json")
    assert err.value.key == "checkpointing_steps" and "same setting" in str(err.value)


def test_soft_alias_only_when_our_key_is_absent():
    cfg, notes = parse_train_config_report({"validation_lycoris_strength": 0.7}, "c.json")
    assert cfg.validation_adapter_strength == 0.7 and notes[0].kind == "mapped"
    cfg, notes = parse_train_config_report({"validation_lycoris_strength": 0.7,
                                            "validation_adapter_strength": 0.4}, "c.json")
    assert cfg.validation_adapter_strength == 0.4 and notes[0].kind == "ignored"


@pytest.mark.parametrize("data,key,value", [
    ({"report_to": "mlflow"}, "report_to", "mlflow"),
    ({"report_to": "wandb,mlflow"}, "report_to", "mlflow"),
    ({"dynamo_backend": "fast"}, "dynamo_backend", "fast"),
    ({"aspect_bucket_alignment": 12}, "aspect_bucket_alignment", "12"),
    ({"--huber_schedule": "linear"}, "huber_schedule", "linear"),
])
def test_value_outside_simpletuners_choices_names_key_value_and_choices(data, key, value):
    with pytest.raises(ConfigError) as err:
        parse_train_config(data, "c.json")
    text = str(err.value)
    assert err.value.key == key and value in text
    assert "choices" in text or "Input should be" in text
    choices = st.registry()[key]["choices"]
    assert all(str(c) in text for c in choices)


def test_ignored_keys_are_type_checked_like_simpletuner_would():
    with pytest.raises(ConfigError, match="expected a number"):
        parse_train_config({"musubi_blocks_to_swap": "many"}, "c.json")
    with pytest.raises(ConfigError, match="expected true or false"):
        parse_train_config({"push_to_hub": "maybe"}, "c.json")
    cfg, warnings = parse_train_config({"gradient_checkpointing_offload_pin_memory_max_buckets": "12",
                                        "push_to_hub": "false",
                                        "report_to": "wandb,tensorboard"}, "c.json")
    assert len(warnings) == 3


def test_values_we_cannot_honour_are_changed_with_a_note():
    cfg, notes = parse_train_config_report({"mixed_precision": "fp8", "model_type": "full",
                                            "lr_scheduler": "sine"}, "c.json")
    assert (cfg.mixed_precision, cfg.model_type, cfg.lr_scheduler) == ("bf16", "lora", "cosine")
    assert sorted(n.key for n in notes if n.kind == "changed") == ["lr_scheduler", "mixed_precision", "model_type"]


def test_validation_resolution_forms():
    cfg, _ = parse_train_config({"validation_resolution": "1024x768, 512"}, "c.json")
    assert cfg.validation_sizes == [(1024, 768), (512, 512)]
    assert parse_train_config({"validation_resolution": 96}, "c.json")[0].validation_sizes == [(96, 96)]
    assert parse_train_config({"resolution": 64}, "c.json")[0].validation_sizes == [(64, 64)]
    with pytest.raises(ConfigError) as err:
        parse_train_config({"validation_resolution": "wide"}, "c.json")
    assert err.value.key == "validation_resolution" and "WxH" in str(err.value)


def test_bucket_key_api():
    assert st.classify_bucket_key("slider_strength") == ("implemented", "")
    status, reason = st.classify_bucket_key("vae_cache_clear_each_epoch")
    assert status == "ignored" and "cache" in reason
    assert st.classify_bucket_key("aws_bucket_name")[0] == "implemented"  # the aws backend (engine/s3_objects.py)
    assert st.classify_bucket_key("aws_max_pool_connections")[0] == "ignored"
    assert st.classify_bucket_key("no_such_dataloader_key") == ("unknown", "")


def test_every_dataloader_key_is_known_to_the_bucket_api():
    assert all(st.classify_bucket_key(k)[0] in ("implemented", "ignored") for k in st.dataloader_keys())


@pytest.mark.parametrize("data,expected,note", [
    ({"enable_group_offload": True, "group_offload_blocks_per_group": 3}, (True, 3),
     "mapped: enable_group_offload → offload_blocks"),
    ({"musubi_blocks_to_swap": 20}, (True, 1), "mapped: musubi_blocks_to_swap → offload_blocks"),
    ({"ramtorch": "true"}, (True, 1), "mapped: ramtorch → offload_blocks"),
    ({"musubi_blocks_to_swap": 0, "ramtorch": False}, (False, 1), "0 asks for no offloading"),
    ({"offload_blocks": True, "musubi_blocks_to_swap": 0}, (True, 1), "left as it is"),
])
def test_offloading_keys_of_simpletuner_map_onto_offload_blocks(data, expected, note):
    cfg, notes = parse_train_config_report(data, "c.json")
    assert (cfg.offload_blocks, cfg.offload_blocks_per_group) == expected
    assert any(note in str(n) for n in notes)


def test_contradicting_offloading_keys_and_bad_values_are_refused():
    with pytest.raises(ConfigError) as err:
        parse_train_config({"enable_group_offload": False, "ramtorch": True}, "c.json")
    assert err.value.key == "ramtorch" and "same setting" in str(err.value)
    with pytest.raises(ConfigError) as err:
        parse_train_config({"musubi_blocks_to_swap": "many"}, "c.json")
    assert err.value.key == "musubi_blocks_to_swap" and "expected a number" in str(err.value)
    with pytest.raises(ConfigError) as err:
        parse_train_config({"offload_blocks_per_group": 0}, "c.json")
    assert err.value.key == "offload_blocks_per_group"
