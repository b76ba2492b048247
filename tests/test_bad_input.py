"""The bad-input catalogue: each case asserts the exact outcome (exit status, message, nothing half-written)."""
import json
import shutil

import pytest
from PIL import Image

from conftest import draw, make_project
from sliderstudio.cli import main

ADAPTER = "pytorch_lora_weights.safetensors"


def train(root, capsys, *extra):
    code = main(["train", "--config", str(root), *extra])
    return code, capsys.readouterr().err


def assert_nothing_written(root):
    out = root / "output"
    assert not (out / ADAPTER).exists() and not (out / "metrics.jsonl").exists()
    assert not (out / "checkpoints").exists()


def set_buckets(root, buckets):
    (root / "multidatabackend.json").write_text(json.dumps(buckets))


def test_missing_folder(tmp_path, capsys):
    root = make_project(tmp_path, "/no/model")
    shutil.rmtree(root / "data" / "neg")
    code, err = train(root, capsys)
    assert code == 2 and "bucket 'neg' has no usable images: folder does not exist" in err
    assert "data/neg" in err
    assert_nothing_written(root)


def test_empty_bucket(tmp_path, capsys):
    root = make_project(tmp_path, "/no/model")
    (root / "data" / "empty").mkdir()
    set_buckets(root, [{"id": "pos", "instance_data_dir": "data/pos", "slider_strength": 1},
                       {"id": "empty", "instance_data_dir": "data/empty", "slider_strength": -1}])
    code, err = train(root, capsys)
    assert code == 2 and "bucket 'empty' has no usable images: no usable images in this folder" in err
    assert_nothing_written(root)


def test_folder_of_non_images(tmp_path, capsys):
    root = make_project(tmp_path, "/no/model")
    docs = root / "data" / "docs"
    docs.mkdir()
    (docs / "a.pdf").write_bytes(b"%PDF-1.4")
    (docs / "b.doc").write_bytes(b"x")
    set_buckets(root, [{"id": "pos", "instance_data_dir": "data/pos", "slider_strength": 1},
                       {"id": "docs", "instance_data_dir": "data/docs", "slider_strength": -1}])
    code, err = train(root, capsys)
    assert code == 2 and "bucket 'docs' has no usable images: a.pdf: not an image file" not in err
    assert "bucket 'docs' has no usable images" in err and "not an image file" in err
    assert_nothing_written(root)


def test_corrupt_and_truncated_images_are_skipped_by_name(tmp_path, capsys, tiny_models):
    root = make_project(tmp_path, tiny_models["sd1x"], config={"max_train_steps": 1, "slider_pairing": "off"})
    (root / "data" / "pos" / "garbage.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    draw(root / "data" / "pos" / "cut.jpg", 0.5)
    whole = (root / "data" / "pos" / "cut.jpg").read_bytes()
    (root / "data" / "pos" / "cut.jpg").write_bytes(whole[: len(whole) // 2])
    code, err = train(root, capsys)
    assert code == 0
    assert "bucket 'pos': garbage.png:" in err and "bucket 'pos': cut.jpg:" in err and "(skipped)" in err
    assert (root / "output" / ADAPTER).exists()


def test_all_images_corrupt(tmp_path, capsys):
    root = make_project(tmp_path, "/no/model")
    for p in (root / "data" / "neg").glob("*.png"):
        p.write_bytes(p.read_bytes()[:30])
    code, err = train(root, capsys)
    assert code == 2 and "bucket 'neg' has no usable images" in err
    assert_nothing_written(root)


def test_giant_image_is_skipped_with_its_name(tmp_path, capsys):
    root = make_project(tmp_path, "/no/model")
    Image.new("1", (20000, 20000)).save(root / "data" / "pos" / "giant.png")
    assert main(["plan", "--config", str(root), "--batches", "1"]) == 0
    from sliderstudio.engine.buckets import scan_project
    from sliderstudio.engine.project import load_project

    pos = scan_project(load_project(root))[0]
    assert "giant" not in pos.stems
    assert any(p.path.name == "giant.png" and "too large" in p.reason and "megapixels" in p.reason for p in pos.problems)


def test_unbalanced_counts_warn_but_train(tmp_path, capsys, tiny_models):
    root = make_project(tmp_path, tiny_models["sd1x"], config={"max_train_steps": 1})
    (root / "data" / "neg" / "img2.png").unlink()
    code, err = train(root, capsys)
    assert code == 0
    assert "warning: positive buckets hold 3 images and negative buckets hold 2" in err
    assert "pairing: unpaired sampling" in err


def test_all_buckets_neutral(tmp_path, capsys):
    root = make_project(tmp_path, "/no/model")
    set_buckets(root, [{"id": "neu", "instance_data_dir": "data/neu", "slider_strength": 0}])
    code, err = train(root, capsys)
    assert code == 2 and "every bucket is neutral" in err and "multidatabackend.json" in err


@pytest.mark.parametrize("text,fragment", [
    ('{"lora_rank": 4,}', "invalid JSON at line 1, column 17"),
    ('{"lora_rank": 4, "lerning_rate": 1}', "key 'lerning_rate': unknown key; did you mean 'learning_rate'?"),
    ('{"lora_rank": [4]}', "key 'lora_rank': Input should be a valid integer"),
    ('{"model_family": "sd5"}', "unknown model family 'sd5' (expected one of "),
])
def test_config_file_errors(tmp_path, capsys, text, fragment):
    root = make_project(tmp_path, "/no/model")
    (root / "config.json").write_text(text)
    code, err = train(root, capsys)
    assert code == 2 and fragment in err and "config.json" in err


def test_model_folder_missing_component(tmp_path, capsys, tiny_models):
    broken = tmp_path / "model"
    shutil.copytree(tiny_models["sd1x"], broken)
    shutil.rmtree(broken / "vae")
    root = make_project(tmp_path / "p", broken)
    code, err = train(root, capsys)
    assert code == 2 and "model folder is missing its 'vae' component" in err


def test_zero_match_preset(tmp_path, capsys, tiny_models):
    root = make_project(tmp_path, tiny_models["sd1x"], config={"peft_lora_target_modules": ["attn7.to_q"]})
    code, err = train(root, capsys)
    assert code == 2 and "target preset 'custom' selects zero modules" in err and "attn7.to_q" in err
    assert_nothing_written(root)


def test_output_folder_not_writable(tmp_path, capsys, tiny_models):
    root = make_project(tmp_path, tiny_models["sd1x"], config={"output_dir": "blocker/out"})
    (root / "blocker").write_text("a file where a folder should be")
    code, err = train(root, capsys)
    assert code == 2 and "the output folder is not writable" in err and "blocker/out" in err


def test_disk_full_while_saving_keeps_the_previous_adapter(tmp_path, capsys, tiny_models, monkeypatch):
    from sliderstudio.adapters import adapter_io

    root = make_project(tmp_path, tiny_models["sd1x"], config={"max_train_steps": 1})
    assert train(root, capsys)[0] == 0
    before = (root / "output" / ADAPTER).read_bytes()

    def full_disk(tensors, filename, metadata=None):
        with open(filename, "wb") as fh:
            fh.write(b"\x00" * 10)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(adapter_io, "save_file", full_disk)
    code, err = train(root, capsys)
    assert code == 2 and "no space left on the device while writing; the previous file is kept" in err
    assert (root / "output" / ADAPTER).read_bytes() == before
    assert not list((root / "output").glob(".*.tmp"))


def test_non_ascii_and_spaces_in_paths(tmp_path, capsys, tiny_models):
    root = make_project(tmp_path / "Mein Projekt ü" / "slider ä", tiny_models["sd1x"], config={"max_train_steps": 1})
    (root / "data" / "pos" / "img0.png").rename(root / "data" / "pos" / "bild ä 0.png")
    (root / "data" / "neg" / "img0.png").rename(root / "data" / "neg" / "bild ä 0.png")
    code, err = train(root, capsys)
    assert code == 0, err
    assert (root / "output" / ADAPTER).exists()


@pytest.mark.parametrize("suffix", [".ckpt", ".pt", ".bin"])
def test_pickles_are_refused_as_models(tmp_path, capsys, suffix):
    pickle = tmp_path / f"model{suffix}"
    pickle.write_bytes(b"\x80\x04K\x01.")
    root = make_project(tmp_path / "p", pickle)
    code, err = train(root, capsys)
    assert code == 2 and "pickle checkpoints are refused" in err


def test_pickles_are_refused_as_adapters(tmp_path, capsys, tiny_models):
    pickle = tmp_path / "slider.pt"
    pickle.write_bytes(b"\x80\x04K\x01.")
    code = main(["preview", "--model", str(tiny_models["sd1x"]), "--lora", str(pickle), "--prompt", "x",
                 "--out", str(tmp_path / "g.png")])
    assert code == 2 and "only .safetensors adapters are loaded" in capsys.readouterr().err
    root = make_project(tmp_path / "p", tiny_models["sd1x"], config={"assistant_lora_path": str(pickle)})
    code, err = train(root, capsys)
    assert code == 2 and "only .safetensors adapters are loaded" in err


def test_prompt_library_with_a_non_numeric_strength(tmp_path, capsys):
    root = make_project(tmp_path, "/no/model", config={"user_prompt_library": "prompts.json"},
                        prompts={"ok": "a cat", "bad": {"prompt": "a dog", "adapter_strength": "max"}})
    code, err = train(root, capsys)
    assert code == 2 and "prompts.json, key 'bad.adapter_strength': adapter_strength must be a number" in err


def test_out_of_memory_is_explained(tmp_path, tiny_models, monkeypatch):
    import torch

    from sliderstudio.kernel.errors import OutOfMemory
    from sliderstudio.kernel.events import Failed
    from sliderstudio.engine.project import load_project
    from sliderstudio.engine.slider_step import SliderStep
    from sliderstudio.engine.trainer import Trainer

    def oom(self, mb):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(SliderStep, "loss", oom)
    root = make_project(tmp_path, tiny_models["sd1x"], config={"resolution": 64, "train_batch_size": 2})
    events = []
    with pytest.raises(OutOfMemory) as err:
        Trainer(load_project(root), events.append).run()
    message = str(err.value)
    assert "ran out of memory at step 0" in message and "gradient_checkpointing" in message
    assert "lower train_batch_size (now 2" in message and "lower resolution (now 64)" in message
    assert isinstance(events[-1], Failed) and "Tried to allocate" in events[-1].details


# --- inputs that parse but make no sense for the run (issue #18, item 7) ---------------------------

def plan(root, capsys):
    code = main(["plan", "--config", str(root), "--batches", "2"])
    return code, capsys.readouterr().err


@pytest.mark.parametrize("config,fragments", [
    ({"train_batch_size": 1_000_000_000}, ["key 'train_batch_size'", "1000000000 is out of range: no machine "
                                            "holds a micro-batch that large", "(expected at most 4096)"]),
    ({"lora_alpha": 1e9}, ["key 'lora_alpha'", "(expected at most 4096)"]),
    ({"noise_offset": 50}, ["key 'noise_offset'", "drown the images in noise"]),
    ({"seed": 10**30}, ["key 'seed'", "seeds are 32-bit", "(expected at most 4294967295)"]),
    ({"max_train_steps": 1_000_000_000}, ["key 'max_train_steps'", "(expected at most 10000000)"]),
    ({"max_train_steps": 0, "num_train_epochs": 10_000_000}, ["key 'num_train_epochs'", "(expected at most 100000)"]),
    ({"resolution": 1_000_000}, ["key 'resolution'", "(expected at most 16384)"]),
    ({"gradient_accumulation_steps": 50_000}, ["key 'gradient_accumulation_steps'", "(expected at most 10000)"]),
    ({"learning_rate": 1e9}, ["key 'learning_rate'", "(expected at most 10)"]),
    ({"train_batch_size": 4}, ["key 'train_batch_size'", "train_batch_size 4 is larger than every bucket",
                               "'pos' 3, 'neg' 3, 'neu' 2", "(expected at most 3)"]),
    ({"max_train_steps": 0, "num_train_epochs": 1, "gradient_accumulation_steps": 100},
     ["key 'gradient_accumulation_steps'", "num_train_epochs 1 × 8 micro-batches per epoch = 8, fewer than "
      "gradient_accumulation_steps 100: not one optimizer step would complete"]),
])
def test_run_that_makes_no_sense_exits_2(tmp_path, capsys, config, fragments):
    root = make_project(tmp_path, "/no/model", config=config)
    code, err = train(root, capsys)
    assert code == 2, err
    assert "config.json" in err and all(f in err for f in fragments), err
    assert_nothing_written(root)


@pytest.mark.parametrize("extra,fragments", [
    ({"repeats": 1_000_000_000}, ["key 'pos.repeats'", "(expected at most 10000)"]),
    ({"resolution": 1_000_000_000}, ["key 'pos.resolution'", "(expected at most 16384 px on a side)"]),
    ({"resolution": 500, "resolution_type": "area"}, ["key 'pos.resolution'", "22361 px on a side"]),
])
def test_bucket_magnitudes_no_run_survives(tmp_path, capsys, extra, fragments):
    root = make_project(tmp_path, "/no/model")
    set_buckets(root, [{"id": "pos", "instance_data_dir": "data/pos", "slider_strength": 0.5, **extra},
                       {"id": "neg", "instance_data_dir": "data/neg", "slider_strength": -0.5}])
    code, err = train(root, capsys)
    assert code == 2 and "multidatabackend.json" in err and all(f in err for f in fragments), err
    assert_nothing_written(root)


def test_batch_larger_than_some_buckets_is_a_warning(tmp_path, capsys):
    root = make_project(tmp_path, "/no/model", config={"train_batch_size": 3})
    code, err = plan(root, capsys)
    assert code == 0
    assert "warning: train_batch_size is 3 but bucket(s) 'neu' (2) hold fewer images" in err


def test_no_signed_bucket_is_ever_drawn(tmp_path, capsys):
    root = make_project(tmp_path, "/no/model")
    set_buckets(root, [{"id": "pos", "instance_data_dir": "data/pos", "slider_strength": 0.5, "probability": 0},
                       {"id": "neg", "instance_data_dir": "data/neg", "slider_strength": -0.5, "probability": 0},
                       {"id": "neu", "instance_data_dir": "data/neu", "slider_strength": 0}])
    code, err = train(root, capsys)
    assert code == 2 and "key 'probability'" in err and "no positive or negative bucket takes part" in err
    assert_nothing_written(root)


@pytest.mark.parametrize("config,fragment", [
    ({"learning_rate": 5}, "key 'learning_rate' is 5.0: an Adam-like optimizer on an adapter at this rate diverges"),
    ({"learning_rate": 1.0, "optimizer": "prodigy"}, None),
    ({"lr_warmup_steps": 10}, "key 'lr_warmup_steps' is 10 but lr_scheduler 'constant' has no warm-up"),
    ({"lycoris_config": "lycoris.json"}, "key 'lycoris_config' is set but lora_type is 'standard'"),
    ({"controlnet_model_name_or_path": "cn"}, "key 'controlnet_model_name_or_path' is set but controlnet is false"),
    ({"lr_scheduler": "cosine", "lr_warmup_steps": 50},
     "lr_warmup_steps 50 ≥ the run's 6 optimizer steps: the learning rate never reaches learning_rate"),
])
def test_values_that_still_run_are_warned_about(tmp_path, capsys, config, fragment):
    root = make_project(tmp_path, "/no/model", config=config)
    code, err = plan(root, capsys)
    assert code == 0, err
    if fragment is None:
        assert "learning_rate" not in err  # step-size-free optimizers expect 1.0
    else:
        assert "warning: " in err and fragment in err


@pytest.mark.parametrize("config,key,path", [
    ({"data_backend_config": "buckets/missing.json"}, "data_backend_config", "buckets/missing.json"),
    ({"user_prompt_library": "no_prompts.json"}, "user_prompt_library", "no_prompts.json"),
    ({"lora_type": "lycoris", "lycoris_config": "no_lycoris.json"}, "lycoris_config", "no_lycoris.json"),
    ({"assistant_lora_path": "adapters/assistant.safetensors"}, "assistant_lora_path",
     "adapters/assistant.safetensors"),
    ({"controlnet": True, "controlnet_model_name_or_path": "cn/missing"}, "controlnet_model_name_or_path",
     "cn/missing"),
    ({"resume_from_checkpoint": "output/checkpoints/checkpoint-000099"}, "resume_from_checkpoint",
     "checkpoint-000099"),
])
def test_a_missing_file_names_its_key_and_path(tmp_path, capsys, config, key, path):
    root = make_project(tmp_path, "/no/model", config=config)
    code, err = train(root, capsys)
    assert code == 2 and f"key '{key}'" in err and path in err, err
    assert_nothing_written(root)


def test_a_missing_bucket_folder_names_its_key(tmp_path, capsys):
    root = make_project(tmp_path, "/no/model")
    shutil.rmtree(root / "data" / "pos")
    code, err = train(root, capsys)
    assert code == 2 and "key 'pos.instance_data_dir'" in err and "data/pos" in err
