"""Bucket scanning: captions, problems reported by name, pairing, balance, trainability."""
import json

import pytest
from PIL import Image

from conftest import draw, make_project
from sliderstudio.engine.buckets import balance, bucket_resolution, load_image, require_trainable, scan_project
from sliderstudio.kernel.errors import DatasetError
from sliderstudio.engine.project import load_project


def test_scan_captions_and_problems(tmp_path):
    root = make_project(tmp_path, "unused", pairs=2)
    pos = root / "data" / "pos"
    (pos / "notes.md").write_text("hello")
    (pos / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    (pos / "img1.txt").unlink()
    project = load_project(root)
    scanned = {s.bucket.id: s for s in scan_project(project)}
    s = scanned["pos"]
    assert s.stems == ["img0", "img1"]
    assert s.images[0].caption == "a photo of a big red square"
    assert s.images[1].caption == "img1"  # no .txt: falls back to the file name
    problems = {p.path.name: p.reason for p in s.problems}
    assert "not an image file" in problems["notes.md"]
    assert "unreadable" in problems["broken.png"] or "not a readable image" in problems["broken.png"]
    assert "no img1.txt" in problems["img1.png"]


def test_pairing_and_balance(tmp_path):
    project = load_project(make_project(tmp_path, "unused", pairs=3))
    bal = balance(project, scan_project(project))
    assert (bal.positive, bal.negative, bal.pairing, bal.pair_map) == (3, 3, True, {"pos": "neg"})
    assert bal.warning is None
    draw(tmp_path / "data" / "neg" / "extra.png", 0.2)
    bal = balance(project, scan_project(project))
    assert not bal.pairing and "positive buckets hold 3 images and negative buckets hold 4" in bal.warning


def test_pairing_off_by_config(tmp_path):
    project = load_project(make_project(tmp_path, "unused", config={"slider_pairing": "off"}))
    assert not balance(project, scan_project(project)).pairing


def test_untrainable_buckets_fail_with_the_folder(tmp_path):
    root = make_project(tmp_path, "unused", buckets=[
        {"id": "pos", "instance_data_dir": "data/pos", "slider_strength": 1},
        {"id": "gone", "instance_data_dir": "data/missing", "slider_strength": -1}])
    project = load_project(root)
    with pytest.raises(DatasetError) as err:
        require_trainable(project, scan_project(project))
    assert "bucket 'gone'" in str(err.value) and "does not exist" in str(err.value)
    (root / "multidatabackend.json").write_text(json.dumps([{"id": "neu", "instance_data_dir": "data/neu"}]))
    project = load_project(root)
    with pytest.raises(DatasetError, match="every bucket is neutral"):
        require_trainable(project, scan_project(project))


def test_huge_image_is_refused_by_header(tmp_path):
    folder = tmp_path / "data" / "pos"
    folder.mkdir(parents=True)
    # A 20000×20000 PNG header without the pixel data behind it: scanning must not decode it.
    im = Image.new("1", (20000, 20000))
    im.save(folder / "huge.png", optimize=False)
    root = make_project(tmp_path, "unused", pairs=1)
    project = load_project(root)
    scanned = {s.bucket.id: s for s in scan_project(project)}
    reasons = {p.path.name: p.reason for p in scanned["pos"].problems}
    assert "too large" in reasons["huge.png"]
    assert "huge" not in scanned["pos"].stems


def test_resize_and_crop(tmp_path):
    project = load_project(make_project(tmp_path, "unused", pairs=1))
    s = scan_project(project)[0]
    img = load_image(s.images[0], s.bucket, bucket_resolution(project, s.bucket), 0)
    assert img.size == (64, 64) and img.mode == "RGB"
