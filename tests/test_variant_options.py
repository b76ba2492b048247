"""benchmarks/slider_variants.py turns its lever flags into the config keys the product reads."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import slider_variants  # noqa: E402

from sliderstudio.config.config import TrainConfig  # noqa: E402


def test_lever_flags_become_config_keys_the_config_accepts():
    a = slider_variants.parse(["--timestep-bias", "later:0.5:3", "--snr-gamma", "5", "--train-seed", "2",
                               "--preserve-weight", "3"])
    cfg = slider_variants.config_for(a)
    assert {k: cfg[k] for k in ("timestep_bias_strategy", "timestep_bias_portion", "timestep_bias_multiplier",
                                "snr_gamma", "seed", "slider_preserve_weight")} == \
        {"timestep_bias_strategy": "later", "timestep_bias_portion": 0.5, "timestep_bias_multiplier": 3.0,
         "snr_gamma": 5.0, "seed": 2, "slider_preserve_weight": 3.0}
    TrainConfig(**{k: v for k, v in cfg.items() if k != "pretrained_model_name_or_path"})   # every key valid


def test_no_flags_change_no_training_key():
    cfg = slider_variants.config_for(slider_variants.parse([]))
    assert not {"timestep_bias_strategy", "snr_gamma", "seed"} & set(cfg)


def test_words_flag_sets_the_text_pairs_size_words():
    """--words huge:tiny trains the text slider between those words (the measured world-4 variant)."""
    from sliderstudio.toy.text_demo import text_pairs

    settings = slider_variants.text_settings_for(slider_variants.parse(["--text", "--words", "huge:tiny",
                                                                         "--guidance", "2"]))
    pair = text_pairs(settings)[0]
    assert pair["positive"].startswith("a huge ") and pair["negative"].startswith("a tiny ")
    assert "huge" not in pair["neutral"] and pair["guidance"] == 2.0
    default = text_pairs(slider_variants.text_settings_for(slider_variants.parse(["--text"])))[0]
    assert default["positive"].startswith("a large ") and default["negative"].startswith("a small ")
    with pytest.raises(SystemExit, match="POSITIVE:NEGATIVE"):
        slider_variants.text_settings_for(slider_variants.parse(["--text", "--words", "huge"]))


def test_set_flag_passes_any_config_key_as_json():
    """--set KEY=JSON reaches the config (the batch-size and schedule rows of docs/TRAINING.md "World 6")."""
    a = slider_variants.parse(["--set", "train_batch_size=2", "--set", "lr_scheduler=cosine",
                               "--set", "lr_warmup_steps=10"])
    cfg = slider_variants.config_for(a)
    assert cfg["train_batch_size"] == 2 and cfg["lr_scheduler"] == "cosine" and cfg["lr_warmup_steps"] == 10
    TrainConfig(**{k: v for k, v in cfg.items() if k != "pretrained_model_name_or_path"})
    with pytest.raises(SystemExit, match="KEY=VALUE"):
        slider_variants.config_for(slider_variants.parse(["--set", "train_batch_size"]))


def test_samples_flag_sets_the_text_pairs_base_renders():
    from sliderstudio.toy.text_demo import text_pairs

    pair = text_pairs(slider_variants.text_settings_for(slider_variants.parse(["--text", "--samples", "8"])))[0]
    assert pair["samples"] == 8
