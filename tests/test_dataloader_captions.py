"""Per-dataset sample caps (max_num_samples), caption files with one caption per line, crop_style values, and
the dataloader keys' classification (implemented fields vs ignored-with-a-reason lists cannot disagree)."""
import json
from types import SimpleNamespace

import pytest
import torch

from conftest import draw, make_project
from sliderstudio.cli import main
from sliderstudio.engine.buckets import balance, scan_project
from sliderstudio.config.config import UNIMPLEMENTED_BUCKET_KEYS, BucketConfig, parse_buckets
from sliderstudio.kernel.errors import ConfigError
from sliderstudio.engine.project import load_project
from sliderstudio.config.simpletuner_keys import BUCKET_REASONS, classify_bucket_key, dataloader_keys


def capped_project(tmp_path, cap, seed=0):
    root = make_project(tmp_path, "/no/model", pairs=8, neutral=2, config={"seed": seed})
    entries = [{"id": "pos", "instance_data_dir": "data/pos", "slider_strength": 1, "max_num_samples": cap},
               {"id": "neg", "instance_data_dir": "data/neg", "slider_strength": -1, "max_num_samples": cap},
               {"id": "neu", "instance_data_dir": "data/neu"}]
    (root / "multidatabackend.json").write_text(json.dumps(entries))
    return root


def test_max_num_samples_caps_each_data_set_alike_and_by_seed(tmp_path):
    root = capped_project(tmp_path / "a", 3)
    project = load_project(root)
    scanned = {s.bucket.id: s for s in scan_project(project)}
    chosen = scanned["pos"].stems
    assert len(chosen) == 3 and scanned["neg"].stems == chosen          # a pair keeps both of its images
    assert len(scanned["neu"].stems) == 2                                # no cap: every image
    assert balance(project, list(scanned.values())).pair_map == {"pos": "neg"}
    assert [s.stems for s in scan_project(load_project(root))][0] == chosen  # the same on every scan
    picks = {tuple(scan_project(load_project(capped_project(tmp_path / f"s{seed}", 3, seed)))[0].stems)
             for seed in range(6)}
    assert len(picks) > 1                                                # the seed decides which images
    assert all(len(p) == 3 for p in picks)
    with pytest.raises(ConfigError) as err:
        parse_buckets([{"id": "a", "instance_data_dir": "x", "max_num_samples": 0}], "m.json")
    assert err.value.key == "[0].max_num_samples"


def test_caption_file_lines_are_separate_captions_chosen_per_micro_batch(tmp_path):
    root = make_project(tmp_path, "/no/model", pairs=2)
    (root / "data" / "pos" / "img0.txt").write_text("a big red square\n\n  a large red block \nred square, big\n")
    entries = json.loads((root / "multidatabackend.json").read_text())
    entries[0]["instance_prompt"], entries[0]["prepend_instance_prompt"] = "photo,", True
    (root / "multidatabackend.json").write_text(json.dumps(entries))
    record = scan_project(load_project(root))[0].images[0]
    assert record.variants == ("photo, a big red square", "photo, a large red block", "photo, red square, big")
    assert record.caption == "photo, a big red square"
    entries[0]["disable_multiline_split"] = True
    (root / "multidatabackend.json").write_text(json.dumps(entries))
    whole = scan_project(load_project(root))[0].images[0]
    assert whole.variants == ("photo, a big red square a large red block red square, big",)

    from sliderstudio.engine.sampler import MicroBatch
    from sliderstudio.engine.slider_step import SliderStep, StepData

    data = StepData({}, {("pos", 0): record.variants, ("pos", 1): "one caption"}, {}, {})

    def drawn(seed):
        step = SliderStep(None, torch.nn.Identity(), None, data, seed, torch.device("cpu"), torch.float32,
                          adapter=SimpleNamespace())
        return [step.caption(MicroBatch(i, 0, "pos", "positive", 1.0, (0, 1), ("img0", "img1")), 0)
                for i in range(60)]

    first = drawn(7)
    assert set(first) == set(record.variants)          # every line is used
    assert drawn(7) == first                           # a resumed run draws the same line at each micro-batch
    assert drawn(8) != first
    step = SliderStep(None, torch.nn.Identity(), None, data, 7, torch.device("cpu"), torch.float32,
                      adapter=SimpleNamespace())
    assert step.caption(MicroBatch(3, 0, "pos", "positive", 1.0, (0, 1), ("img0", "img1")), 1) == "one caption"


def test_every_caption_line_is_encoded_and_a_change_to_one_line_reencodes(tmp_path, tiny_models):
    from sliderstudio.engine.training_setup import prepare_session

    root = make_project(tmp_path, tiny_models["sd1x"], pairs=2)
    (root / "data" / "pos" / "img0.txt").write_text("a big red square\na large red block")
    logs = []
    session = prepare_session(load_project(root), lambda msg, level: logs.append(msg))
    assert {"a big red square", "a large red block"} <= set(session.step.data.conditioning)
    assert session.step.data.captions[("pos", 0)] == ("a big red square", "a large red block")
    logs.clear()
    prepare_session(load_project(root), lambda msg, level: logs.append(msg))
    assert any(m.startswith("every latent and caption is cached") for m in logs)
    (root / "data" / "pos" / "img0.txt").write_text("a big red square\na line not encoded yet")
    logs.clear()
    session = prepare_session(load_project(root), lambda msg, level: logs.append(msg))
    assert not any(m.startswith("every latent and caption is cached") for m in logs)  # the second line counts
    assert "a line not encoded yet" in session.step.data.conditioning


def test_crop_style_face_loads_and_a_wrong_style_names_the_choices(tmp_path, capsys):
    root = make_project(tmp_path, "/no/model")
    entries = json.loads((root / "multidatabackend.json").read_text())
    entries[1]["crop_style"] = "face"
    entries[1]["crop"] = True
    (root / "multidatabackend.json").write_text(json.dumps(entries))
    assert main(["plan", "--config", str(root)]) == 0      # face crops: tests/test_face_crops.py
    assert load_project(root).buckets[1].crop_style == "face"
    entries[1]["crop_style"] = "middle"
    (root / "multidatabackend.json").write_text(json.dumps(entries))
    assert main(["plan", "--config", str(root)]) == 2
    err = capsys.readouterr().err
    assert "key '[1].crop_style'" in err and "unknown crop_style 'middle'" in err and "face" in err
    with pytest.raises(ConfigError, match="unknown crop_style 'middle'"):
        parse_buckets([{"id": "a", "instance_data_dir": "x", "crop_style": "middle"}], "m.json")


def test_ignored_bucket_keys_are_never_fields_and_every_warning_gives_its_reason():
    fields = set(BucketConfig.model_fields)
    assert not UNIMPLEMENTED_BUCKET_KEYS & fields
    assert all(classify_bucket_key(k)[0] == "ignored" for k in UNIMPLEMENTED_BUCKET_KEYS)
    assert not set(BUCKET_REASONS) & fields
    for key in ("csv_file", "aws_bucket_name", "max_num_samples", "disable_multiline_split", "metadata_backend"):
        assert classify_bucket_key(key) == ("implemented", "")
    entry = {"id": "a", "instance_data_dir": "x", "hash_filenames": True, "caption_filter_list": ["x"],
             "shorten_filenames": True}
    _, warnings = parse_buckets([entry], "m.json")
    assert warnings == [
        f"m.json: [0].{k} is a SimpleTuner option Slider Studio does not implement; ignored — "
        f"{classify_bucket_key(k)[1]}" for k in ("hash_filenames", "caption_filter_list", "shorten_filenames")]
    assert "cache entries are named by content hash" in warnings[0]
    assert all(classify_bucket_key(k)[0] in ("implemented", "ignored") for k in dataloader_keys())
    with pytest.raises(ConfigError) as err:
        parse_buckets([{"id": "a", "instance_data_dir": "x", "csv_urlcolumn": "u"}], "m.json")
    assert err.value.key == "[0].csv_urlcolumn" and "did you mean 'csv_url_column'" in str(err.value)
