"""`"type": "webshart"` entries: local WebDataset tar shards read through the `webshart` package (its
.json index, built into the cache when the shards have none), exported once into a folder, paired by
name, captions from the index or the .txt members; bad entries and a Hub source offline exit 2."""
import io
import json
import sys
import tarfile

import pytest
import webshart
from PIL import Image

from conftest import make_project
from sliderstudio.cli import main
from sliderstudio.engine.buckets import balance, scan_project
from sliderstudio.engine.project import load_project


def png(colour, size=(64, 48)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "PNG")
    return buf.getvalue()


def write_shard(path, members):
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def shard_project(tmp_path, pos_entry=None, neg_entry=None):
    root = make_project(tmp_path / "proj", "/no/model", pairs=0, neutral=1)
    shards = root / "shards"
    # positive: two shards, captions as .txt members, no index (as `tar` makes them)
    write_shard(shards / "pos" / "pos-00000.tar", [("img0.png", png((200, 0, 0), (96, 64))), ("img0.txt", b"big red"),
                                                   ("img1.png", png((210, 0, 0))), ("img1.txt", b"big red two")])
    write_shard(shards / "pos" / "pos-00001.tar", [("img2.png", png((220, 0, 0))), ("img2.txt", b"big red three"),
                                                   ("notes.md", b"# not an image")])
    # negative: one shard with webshart's index beside it and captions in the index (a list: two variants)
    write_shard(shards / "neg" / "neg-00000.tar", [(f"img{i}.png", png((60 + i, 0, 0))) for i in range(3)]
                + [("broken.png", b"not a png at all")])
    webshart.MetadataExtractor().extract_metadata(source=str(shards / "neg"), destination=str(shards / "neg"),
                                                  include_image_geometry=True)
    webshart.write_captions_to_metadata(shards / "neg" / "neg-00000.json",
                                        {"img0.png": ["small red", "a small red square"], "img1": "small one",
                                         "img2.png": "small two"})
    entries = [pos_entry or {"id": "pos", "type": "webshart", "source": "shards/pos", "slider_strength": 1.0},
               neg_entry or {"id": "neg", "type": "webshart", "webshart": {"source": "shards/neg"},
                             "caption_strategy": "webshart", "metadata_backend": "webshart",
                             "slider_strength": -1.0},
               {"id": "neu", "instance_data_dir": "data/neu"}]
    (root / "multidatabackend.json").write_text(json.dumps(entries))
    return root


def test_local_shards_export_once_pair_by_name_and_take_their_captions(tmp_path):
    root = shard_project(tmp_path)
    lines = []
    project = load_project(root)
    scanned = {s.bucket.id: s for s in scan_project(project, log=lambda m, level: lines.append(m))}
    pos, neg = scanned["pos"], scanned["neg"]
    assert pos.stems == neg.stems == ["img0", "img1", "img2"]
    assert [r.caption for r in pos.images] == ["big red", "big red two", "big red three"]
    assert neg.images[0].variants == ("small red", "a small red square")     # the index's list: two captions
    assert [r.caption for r in neg.images[1:]] == ["small one", "small two"]
    assert pos.images[0].size == (96, 64)
    assert [str(p) for p in neg.problems] == ["broken.png: shard 0: not an image (UnidentifiedImageError) (skipped)"]
    assert balance(project, list(scanned.values())).pair_map == {"pos": "neg"}
    cache = root / "cache" / "webshart" / "pos"
    assert sorted(p.name for p in cache.iterdir() if not p.name.startswith(".")) == [
        "img0.png", "img0.txt", "img1.png", "img1.txt", "img2.png", "img2.txt"]
    assert sorted(p.name for p in (cache / ".index").glob("*.json")) == ["pos-00000.json", "pos-00001.json"]
    assert sorted(p.name for p in (root / "shards" / "pos").iterdir()) == ["pos-00000.tar", "pos-00001.tar"]
    assert (cache / "img1.png").read_bytes() == png((210, 0, 0))
    assert "webshart 'pos': 3 images: 3 fetched" in "\n".join(lines)
    lines.clear()
    scan_project(load_project(root), log=lambda m, level: lines.append(m))  # a re-run writes nothing
    assert "webshart 'pos': 3 images: 0 fetched (0.0 MB), 3 already cached, 0 skipped" in lines
    assert "webshart 'neg': 4 images: 0 fetched (0.0 MB), 3 already cached, 1 skipped" in lines
    write_shard(root / "shards" / "pos" / "pos-00001.tar", [("img2.png", png((0, 0, 250))),
                                                            ("img2.txt", b"now blue")])
    again = {s.bucket.id: s for s in scan_project(load_project(root))}
    assert (cache / "img2.png").read_bytes() == png((0, 0, 250)) and again["pos"].images[2].caption == "now blue"


def test_plan_runs_on_webshart_entries(tmp_path, capsys):
    root = shard_project(tmp_path)
    assert main(["plan", "--config", str(root), "--batches", "2"]) == 0
    out = capsys.readouterr()
    assert "# pairing: paired" in out.out and "note: webshart 'pos': 3 images" in out.err


@pytest.mark.parametrize("entry,key,words", [
    ({"id": "pos", "type": "webshart", "slider_strength": 1.0}, "[0]", "a webshart entry needs source"),
    ({"id": "pos", "type": "webshart", "source": "shards/nowhere", "slider_strength": 1.0}, "pos.source",
     "no such shard folder"),
    ({"id": "pos", "type": "webshart", "source": "data/neu", "slider_strength": 1.0}, "pos.source",
     "no .tar shards in"),
    ({"id": "pos", "type": "webshart", "source": "someone/some-shards", "slider_strength": 1.0}, "pos.source",
     "hf download someone/some-shards --repo-type dataset"),
    ({"id": "pos", "type": "webshart", "source": "shards/pos", "caption_strategy": "csv", "slider_strength": 1.0},
     "[0]", "caption_strategy 'csv' needs \"type\": \"csv\""),
    ({"id": "pos", "type": "local", "instance_data_dir": "data/neu", "caption_strategy": "webshart",
      "slider_strength": 1.0}, "[0]", "caption_strategy 'webshart' needs \"type\": \"webshart\""),
])
def test_bad_webshart_entries_exit_2_naming_the_key(tmp_path, capsys, monkeypatch, entry, key, words):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    root = shard_project(tmp_path, pos_entry=entry)
    assert main(["plan", "--config", str(root)]) == 2
    err = capsys.readouterr().err
    assert "multidatabackend.json" in err and f"key '{key}'" in err and words in err, err
    assert not (root / "cache" / "webshart" / "pos").exists() or \
        not any(p for p in (root / "cache" / "webshart" / "pos").iterdir() if not p.name.startswith("."))


def test_without_the_webshart_package_the_entry_exits_2_saying_what_to_do(tmp_path, capsys, monkeypatch):
    root = shard_project(tmp_path)
    monkeypatch.setitem(sys.modules, "webshart", None)  # import webshart now raises ImportError
    assert main(["plan", "--config", str(root)]) == 2
    err = capsys.readouterr().err
    assert "key 'pos.type'" in err and "pip install webshart==0.4.6" in err and "\"type\": \"local\"" in err
