"""Dataloader entry forms (local, huggingface, text_embeds / image_embeds / conditioning links), unsupported
backends, cache-path templates, and bad images that are reported per file without stopping the run."""
import io
import json
import time

import pytest
from PIL import Image

from conftest import draw, make_project
from sliderstudio.cli import main
from sliderstudio.engine.buckets import scan_project
from sliderstudio.config.config import parse_buckets
from sliderstudio.kernel.errors import ConfigError, DatasetError
from sliderstudio.engine.project import load_project


def write_buckets(root, entries):
    (root / "multidatabackend.json").write_text(json.dumps(entries))


def base_entries():
    return [{"id": "pos", "type": "local", "instance_data_dir": "data/pos", "slider_strength": 0.5},
            {"id": "neg", "type": "local", "instance_data_dir": "data/neg", "slider_strength": -0.5},
            {"id": "neu", "type": "local", "instance_data_dir": "data/neu"}]


@pytest.mark.parametrize("backend,advice", [("memory", "use a local cache folder")])  # csv, aws, webshart:
# test_remote_backends, test_webshart
def test_unsupported_backends_exit_2_saying_what_to_do(tmp_path, capsys, backend, advice):
    root = make_project(tmp_path, "/no/model")
    write_buckets(root, base_entries()[:2] + [{"id": "remote", "type": backend, "aws_bucket_name": "b"}])
    assert main(["plan", "--config", str(root)]) == 2
    err = capsys.readouterr().err
    assert "multidatabackend.json" in err and "[2].type" in err and f"type '{backend}' is not supported" in err
    assert advice in err and "\"type\": \"local\"" in err


def test_templates_expand_in_cache_paths_and_unknown_names_fail(tmp_path, capsys):
    entries = [{"id": "a", "instance_data_dir": "data/{id}", "cache_dir_vae": "cache/vae/{model_family}/{id}"},
               {"id": "text", "dataset_type": "text_embeds", "default": True, "cache_dir": "cache/text/{model_family}"}]
    buckets, _ = parse_buckets(entries, "m.json", {"model_family": "sdxl"})
    assert (buckets[0].instance_data_dir, buckets[0].cache_dir_vae) == ("data/a", "cache/vae/sdxl/a")
    assert buckets[1].cache_dir == "cache/text/sdxl"
    with pytest.raises(ConfigError) as err:
        parse_buckets([{"id": "a", "instance_data_dir": "x", "cache_dir_vae": "cache/{model_name}"}], "m.json",
                      {"model_family": "sdxl"})
    assert err.value.key == "[0].cache_dir_vae" and "{model_name}" in str(err.value)
    assert "{model_family}" in str(err.value)  # the message lists the known names
    root = make_project(tmp_path, "/no/model")
    write_buckets(root, base_entries()[:2] + [{"id": "neu", "instance_data_dir": "data/neu",
                                               "cache_dir_vae": "cache/{family}"}])
    assert main(["plan", "--config", str(root)]) == 2
    assert "[2].cache_dir_vae" in capsys.readouterr().err


def test_a_local_entry_reads_its_folder_tree_and_pairs_by_relative_path(tmp_path):
    root = make_project(tmp_path, "/no/model", pairs=2)
    for bucket, size in (("pos", 0.8), ("neg", 0.3)):
        draw(root / "data" / bucket / "close-ups" / "img0.png", size, seed=5)   # same name as a top-level file
        (root / "data" / bucket / "close-ups" / "img0.txt").write_text(f"a close-up, {bucket}")
        (root / "data" / bucket / "close-ups" / "notes.json").write_text("{}")  # not reported inside subfolders
        draw(root / "data" / bucket / ".hidden" / "x.png", size)
    project = load_project(root)
    scanned = {s.bucket.id: s for s in scan_project(project)}
    assert scanned["pos"].stems == ["close-ups/img0", "img0", "img1"]
    assert scanned["pos"].images[0].caption == "a close-up, pos"
    assert scanned["pos"].problems == []
    from sliderstudio.engine.buckets import balance

    assert balance(project, list(scanned.values())).pair_map == {"pos": "neg"}


@pytest.mark.parametrize("kind", ["parquet", "jsonl"])
def test_parquet_caption_strategy_reads_captions_from_a_table(tmp_path, kind):
    root = make_project(tmp_path, "/no/model", pairs=3)
    rows = [{"id": "img0", "cogvlm": "a big red square, close", "tags": "red, square"},
            {"id": "img1", "cogvlm": "", "tags": "red square tags"},          # empty: the fallback column
            {"id": "other", "cogvlm": "not in the folder", "tags": ""}]
    table = root / f"captions.{kind}"
    if kind == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), table)
    else:
        table.write_text("\n".join(json.dumps(r) for r in rows))
    entries = base_entries()
    entries[0].update(caption_strategy="parquet", metadata_backend="parquet",
                      parquet={"path": table.name, "filename_column": "id", "caption_column": "cogvlm",
                               "fallback_caption_column": "tags", "width_column": "w", "height_column": "h"})
    write_buckets(root, entries)
    pos = scan_project(load_project(root))[0]
    assert [r.caption for r in pos.images] == ["a big red square, close", "red square tags", "img2"]
    assert {p.path.name: p.reason for p in pos.problems}["img2.png"] == "not in the caption table; using 'img2'"
    entries[0]["parquet"]["path"] = "missing.parquet"
    write_buckets(root, entries)
    with pytest.raises(DatasetError) as err:
        scan_project(load_project(root))
    assert "caption table not found" in str(err.value) and err.value.key == "pos.parquet.path"
    entries[0].pop("parquet")
    write_buckets(root, entries)
    with pytest.raises(ConfigError, match="needs a parquet block with path"):
        load_project(root)


def test_instance_prompt_prepended_or_alone(tmp_path):
    root = make_project(tmp_path, "/no/model", pairs=1)
    entries = base_entries()
    entries[0].update(instance_prompt="sks", prepend_instance_prompt=True)
    entries[1].update(instance_prompt="sks", only_instance_prompt=True)
    write_buckets(root, entries)
    scanned = {s.bucket.id: s for s in scan_project(load_project(root))}
    assert scanned["pos"].images[0].caption == "sks a photo of a big red square"
    assert scanned["neg"].images[0].caption == "sks"


def test_simpletuners_disable_spelling_skips_the_entry():
    buckets, warnings = parse_buckets([{"id": "a", "instance_data_dir": "x", "disable": True},
                                       {"id": "b", "instance_data_dir": "y", "disable": False}], "m.json")
    assert [b.disabled for b in buckets] == [True, False] and warnings == []
    with pytest.raises(ConfigError, match="'disable' and 'disabled' disagree"):
        parse_buckets([{"id": "a", "instance_data_dir": "x", "disable": True, "disabled": False}], "m.json")


def test_conditioning_and_embeds_entries_link_by_id():
    entries = [{"id": "img", "instance_data_dir": "data/pos", "slider_strength": 1, "conditioning_data": "edges",
                "image_embeds": "vae", "text_embeds": "text"},
               {"id": "edges", "dataset_type": "conditioning", "conditioning_type": "contronet",
                "instance_data_dir": "data/edges"},
               {"id": "vae", "type": "local", "dataset_type": "image_embeds", "cache_dir": "cache/vae-store"},
               {"id": "text", "dataset_type": "text_embeds", "default": True, "cache_dir": "cache/text"}]
    buckets, warnings = parse_buckets(entries, "m.json", {"model_family": "sd1x"})
    img = buckets[0]
    assert img.conditioning_data_dir == "data/edges" and img.cache_dir_vae == "cache/vae-store"
    assert warnings == []
    for bad, fragment in ((dict(entries[0], conditioning_data="nope"), "no entry with id 'nope'"),
                          (dict(entries[0], conditioning_data=["edges", "vae"]), "'vae' is a image_embeds entry")):
        with pytest.raises(ConfigError) as err:
            parse_buckets([bad] + entries[1:], "m.json")
        assert fragment in str(err.value) and err.value.key == "[0].conditioning_data"
    with pytest.raises(ConfigError, match="needs instance_data_dir"):
        parse_buckets([{"id": "edges", "dataset_type": "conditioning"}], "m.json")
    with pytest.raises(ConfigError, match="dataset_type 'video' is not supported"):
        parse_buckets([{"id": "v", "dataset_type": "video", "instance_data_dir": "x"}], "m.json")


def test_conditioning_entries_are_not_trained_but_are_scanned_through_their_image_entry(tmp_path):
    from sliderstudio.adapters.controlnet import conditioning_files

    root = make_project(tmp_path, "/no/model")
    for i in range(3):
        draw(root / "data" / "edges" / f"img{i}.png", 0.5)
    entries = base_entries()
    entries[0]["conditioning_data"] = "edges"
    entries[1]["conditioning_data"] = ["edges"]
    write_buckets(root, entries + [{"id": "edges", "dataset_type": "conditioning", "instance_data_dir": "data/edges"}])
    project = load_project(root)
    scanned = scan_project(project)
    assert [s.bucket.id for s in scanned] == ["pos", "neg", "neu"]
    files = conditioning_files(project, [s for s in scanned if s.bucket.id != "neu"])
    assert files[("pos", 0)] == root / "data" / "edges" / "img0.png"


def save_hf_dataset(path, sizes, captions, corrupt_row=None):
    import datasets

    images = [Image.new("RGB", size, (40 * i, 90, 200 - 40 * i)) for i, size in enumerate(sizes)]
    ds = datasets.Dataset.from_dict({"image": images, "text": captions}).cast_column("image", datasets.Image())
    if corrupt_row is not None:
        rows = ds.cast_column("image", datasets.Image(decode=False)).to_list()
        rows[corrupt_row]["image"] = {"bytes": b"\x89PNG\r\n\x1a\n broken", "path": None}
        features = datasets.Features({"image": datasets.Image(decode=False), "text": datasets.Value("string")})
        ds = datasets.Dataset.from_list(rows, features=features)
    ds.save_to_disk(str(path))


def test_huggingface_entries_load_a_saved_data_set_and_pair_by_row(tmp_path, capsys):
    root = make_project(tmp_path, "/no/model", pairs=0)
    save_hf_dataset(root / "hf" / "big", [(64, 96), (64, 96), (80, 80)], ["a big square", "", "a big one"],
                    corrupt_row=2)
    save_hf_dataset(root / "hf" / "small", [(64, 96), (64, 96), (80, 80)], ["small", "small", "small"])
    hf = {"type": "huggingface", "caption_strategy": "huggingface", "metadata_backend": "huggingface",
          "caption_column": "text"}
    write_buckets(root, [{"id": "pos", "dataset_name": "hf/big", "slider_strength": 0.5, **hf,
                          "fallback_caption_column": "text"},
                         {"id": "neg", "dataset_name": "hf/small", "slider_strength": -0.5, **hf},
                         {"id": "neu", "instance_data_dir": "data/neu"}])
    project = load_project(root)
    scanned = {s.bucket.id: s for s in scan_project(project)}
    pos, neg = scanned["pos"], scanned["neg"]
    assert neg.stems == ["0", "1", "2"] and [r.caption for r in neg.images] == ["small"] * 3
    assert pos.stems == ["0", "1"] and pos.images[0].caption == "a big square"
    assert pos.images[0].size == (64, 96)
    reasons = {p.path.name: p.reason for p in pos.problems}
    assert "skipped" in reasons["2.png"]                       # the corrupt row, reported by its file
    assert "no 1.txt" in reasons["1.png"]                      # an empty caption falls back, with a note
    exported = root / "cache" / "huggingface" / "neg"
    stamp = (exported / "0.png").stat().st_mtime_ns
    scan_project(project)
    assert (exported / "0.png").stat().st_mtime_ns == stamp     # an identical export is not redone
    assert main(["plan", "--config", str(root), "--batches", "2"]) == 0
    out = capsys.readouterr()
    assert "bucket 'pos': 2.png:" in out.err and "64x96" in out.out


def test_huggingface_entry_reads_a_local_imagefolder(tmp_path):
    """A local path that is not a saved data set goes through `load_dataset` (here: imagefolder + metadata)."""
    root = make_project(tmp_path, "/no/model", pairs=0)
    folder = root / "hf" / "folder"
    folder.mkdir(parents=True)
    lines = []
    for i, size in enumerate([(48, 96), (96, 48)]):
        Image.new("RGB", size, (200, 40, 40)).save(folder / f"shot{i}.png")
        lines.append(json.dumps({"file_name": f"shot{i}.png", "text": f"shot number {i}"}))
    (folder / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    write_buckets(root, [{"id": "pos", "type": "huggingface", "dataset_name": "hf/folder", "slider_strength": 1,
                          "caption_strategy": "huggingface", "huggingface": {"caption_column": "text"}},
                         {"id": "neu", "instance_data_dir": "data/neu"}])
    pos = scan_project(load_project(root))[0]
    assert sorted((r.stem, r.size, r.caption) for r in pos.images) == [("0", (48, 96), "shot number 0"),
                                                                      ("1", (96, 48), "shot number 1")]
    assert (root / "cache" / "huggingface" / ".datasets-cache").is_dir()  # its Arrow cache stays in the project


def test_huggingface_hub_id_offline_fails_at_once_with_exit_2(tmp_path, capsys, monkeypatch):
    root = make_project(tmp_path, "/no/model")
    write_buckets(root, base_entries()[:2] + [{"id": "web", "type": "huggingface",
                                               "dataset_name": "someone/photo-concept-bucket",
                                               "caption_strategy": "huggingface", "caption_column": "caption"}])
    for env in ({"HF_HUB_OFFLINE": "1"}, {"HF_HUB_OFFLINE": "", "HF_ENDPOINT": "http://127.0.0.1:9"}):
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        start = time.monotonic()
        assert main(["plan", "--config", str(root)]) == 2
        elapsed = time.monotonic() - start
        err = capsys.readouterr().err
        assert "someone/photo-concept-bucket" in err and "not available offline" in err
        assert "[web].dataset_name" in err or "web.dataset_name" in err
        assert "save_to_disk" in err and "instance_data_dir" in err
        assert elapsed < 20


def test_huggingface_entry_needs_a_data_set_name():
    with pytest.raises(ConfigError, match="needs dataset_name"):
        parse_buckets([{"id": "h", "type": "huggingface"}], "m.json")
    with pytest.raises(ConfigError, match="needs \"type\": \"huggingface\""):
        parse_buckets([{"id": "h", "instance_data_dir": "x", "caption_strategy": "huggingface"}], "m.json")


def truncated_png(path):
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (10, 200, 10)).save(buf, format="PNG")
    path.write_bytes(buf.getvalue()[:-40])


def truncated_jpeg(path):
    import numpy as np

    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, "JPEG")
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])


def test_corrupt_truncated_and_bomb_images_are_reported_and_the_run_trains(tmp_path, tiny_models):
    from sliderstudio.kernel.events import Finished, Log
    from sliderstudio.engine.trainer import Trainer

    root = make_project(tmp_path, tiny_models["sd1x"], config={"max_train_steps": 2})
    pos, neu = root / "data" / "pos", root / "data" / "neu"
    (pos / "garbage.png").write_bytes(b"this is not an image at all")
    truncated_png(pos / "cut.png")
    truncated_jpeg(neu / "cut.jpg")
    Image.new("1", (20000, 20000)).save(neu / "bomb.png")  # 400 MP: over PIL's decompression-bomb limit
    entries = base_entries()
    entries[0]["image_embeds"] = "vae-store"
    entries[2]["cache_dir_vae"] = "cache/vae/{model_family}/{id}"
    write_buckets(root, entries + [
        {"id": "vae-store", "type": "local", "dataset_type": "image_embeds", "cache_dir": "cache/vae-store"},
        {"id": "text", "dataset_type": "text_embeds", "default": True, "cache_dir": "cache/text/{model_family}"}])
    events = []
    Trainer(load_project(root), events.append).run()
    assert (root / "output" / "pytorch_lora_weights.safetensors").exists()
    assert any(isinstance(e, Finished) for e in events)
    warnings = [e.message for e in events if isinstance(e, Log) and e.level == "warning"]
    for bucket, name in (("pos", "garbage.png"), ("pos", "cut.png"), ("neu", "cut.jpg"), ("neu", "bomb.png")):
        assert any(m.startswith(f"bucket '{bucket}': {name}:") and "skipped" in m for m in warnings), name
    assert any("bomb.png" in m and "too large" in m for m in warnings)
    # the linked caches and the expanded templates are where latents and caption embeddings went
    assert len(list((root / "cache" / "vae-store").glob("*/vae/*.safetensors"))) == 3      # pos: 3 good images
    assert len(list((root / "cache" / "vae" / "sd1x" / "neu").glob("*/vae/*.safetensors"))) == 2
    assert len(list((root / "cache" / "text" / "sd1x").glob("*/text/*.safetensors"))) == 4  # 3 captions + ""


def test_a_bucket_left_empty_by_bad_images_is_the_clear_error(tmp_path, capsys):
    root = make_project(tmp_path, "/no/model", neutral=0)
    write_buckets(root, base_entries()[:2] + [{"id": "bad", "instance_data_dir": "data/bad"}])
    (root / "data" / "bad").mkdir()
    truncated_png(root / "data" / "bad" / "cut.png")
    (root / "data" / "bad" / "x.png").write_bytes(b"nope")
    assert main(["train", "--config", str(root)]) == 2
    err = capsys.readouterr().err
    assert "bucket 'bad' has no usable images" in err


def test_the_apps_dataset_pane_scan_reports_the_same_skipped_files(tmp_path, qapp):
    """The pane's scan (gui.viewmodels.dataset.scan_with_thumbnails) is the engine's scan_bucket: the same
    per-file problems, huggingface entries included."""
    from sliderstudio.gui.viewmodels.dataset import scan_with_thumbnails

    root = make_project(tmp_path, "/no/model", pairs=2)
    save_hf_dataset(root / "hf" / "set", [(64, 96), (64, 96)], ["one", "two"], corrupt_row=1)
    draw(root / "data" / "pos" / "small.png", 0.5, px=20)
    (root / "data" / "pos" / "junk.png").write_bytes(b"junk")
    entries = base_entries()
    entries[0]["minimum_image_size"] = 32
    write_buckets(root, entries + [{"id": "web", "type": "huggingface", "dataset_name": "hf/set",
                                    "caption_column": "text"}])
    project = load_project(root)
    engine = {s.bucket.id: [str(p) for p in s.problems] for s in scan_project(project)}
    pane = {b.id: scan_with_thumbnails(project, b) for b in project.active_buckets()}
    assert {k: v.problems for k, v in pane.items()} == engine
    assert any(p.startswith("small.png: smaller than minimum_image_size") for p in engine["pos"])
    assert any(p.startswith("junk.png:") for p in engine["pos"]) and any(p.startswith("1.png:") for p in engine["web"])
    assert len(pane["web"].thumbnails) == 1 and project.bucket_dir(project.buckets[3]) == pane["web"].scanned.folder


def test_huggingface_entry_without_the_datasets_package_is_exit_2_naming_the_entry(tmp_path, capsys, monkeypatch):
    """The desktop bundle leaves `datasets` out: a Hugging Face entry there is bad input, not a crash."""
    import builtins

    real_import = builtins.__import__

    def no_datasets(name, *args, **kwargs):
        if name == "datasets" or name.startswith("datasets."):
            raise ModuleNotFoundError("No module named 'datasets'")
        return real_import(name, *args, **kwargs)

    root = make_project(tmp_path, "/no/model")
    write_buckets(root, base_entries()[:2] + [{"id": "web", "type": "huggingface", "dataset_name": "someone/set"}])
    monkeypatch.setattr(builtins, "__import__", no_datasets)
    assert main(["plan", "--config", str(root)]) == 2
    err = capsys.readouterr().err
    assert "web.type" in err and "'datasets' package is not installed" in err and "instance_data_dir" in err
