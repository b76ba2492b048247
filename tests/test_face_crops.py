"""crop_style "face": OpenCV's Haar cascade (shipped in the wheel) finds a drawn face, the crop is centred on
the largest face and clamped, a pair shares one face centre, no face falls back to the centre with a log
line, detections are cached, and a missing detector is exit 2 naming crop_style."""
import json
import sys

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter

from conftest import make_project
from sliderstudio.engine import face_crops
from sliderstudio.engine.buckets import ImageRecord, assign_targets, balance, load_image, scan_project
from sliderstudio.config.config import BucketConfig
from sliderstudio.kernel.errors import DatasetError
from sliderstudio.engine.project import load_project
from sliderstudio.engine.sized_encoding import image_tags

BACKGROUND = (90, 120, 160)
SKIN = (225, 185, 160)


def draw_face(image: Image.Image, left: int, top: int, side: int) -> None:
    """A cartoon face (head, brows, eyes, nose, mouth) the Haar cascade does find, blurred like a photo."""
    face = Image.new("RGB", (side, side), image.getpixel((left, top)))
    d = ImageDraw.Draw(face)
    s = side / 200

    def oval(box, fill):
        d.ellipse([v * s for v in box], fill=fill)

    oval((30, 15, 170, 195), SKIN)
    d.rectangle([52 * s, 62 * s, 88 * s, 70 * s], fill=(60, 40, 30))
    d.rectangle([112 * s, 62 * s, 148 * s, 70 * s], fill=(60, 40, 30))
    oval((55, 78, 85, 96), (250, 250, 250))
    oval((115, 78, 145, 96), (250, 250, 250))
    oval((63, 80, 77, 94), (30, 20, 20))
    oval((123, 80, 137, 94), (30, 20, 20))
    d.polygon([(100 * s, 90 * s), (90 * s, 130 * s), (110 * s, 130 * s)], fill=(205, 160, 140))
    oval((75, 145, 125, 162), (150, 60, 60))
    image.paste(face.filter(ImageFilter.GaussianBlur(2 * s)), (left, top))


def picture(path, size=(192, 128), faces=()):
    """An image of `size` with a face at each (left, top, side)."""
    image = Image.new("RGB", size, BACKGROUND)
    for left, top, side in faces:
        draw_face(image, left, top, side)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def test_the_shipped_detector_finds_the_largest_face_and_its_centre(tmp_path):
    one = face_crops.detect_focus(picture(tmp_path / "one.png", (600, 400), [(400, 100, 180)]))
    assert one is not None
    assert abs(one[0] - 490 / 600) < 0.03 and abs(one[1] - 190 / 400) < 0.04   # the face's centre
    two = face_crops.detect_focus(picture(tmp_path / "two.png", (600, 400), [(20, 20, 110), (330, 150, 220)]))
    assert two is not None and abs(two[0] - 440 / 600) < 0.03                   # the larger face wins
    assert face_crops.detect_focus(picture(tmp_path / "none.png", (600, 400))) is None
    big = face_crops.detect_focus(picture(tmp_path / "big.png", (2400, 1600), [(200, 800, 600)]))
    assert big is not None and abs(big[0] - 500 / 2400) < 0.03 and abs(big[1] - 1100 / 1600) < 0.03


def test_crop_origin_centres_on_the_focus_and_stays_inside():
    assert face_crops.crop_origin((300, 100), (100, 100), (0.5, 0.5)) == (100, 0)
    assert face_crops.crop_origin((300, 100), (100, 100), (0.3, 0.5)) == (40, 0)
    assert face_crops.crop_origin((300, 100), (100, 100), (0.02, 0.5)) == (0, 0)       # clamped left
    assert face_crops.crop_origin((300, 100), (100, 100), (0.99, 0.5)) == (200, 0)     # clamped right
    assert face_crops.crop_origin((100, 300), (100, 100), (0.5, 0.9)) == (0, 200)
    assert face_crops.crop_origin((300, 100), (100, 100), None) == (100, 0)            # no face: centre


def test_a_face_crop_keeps_the_face(tmp_path):
    path = picture(tmp_path / "wide.png", (384, 128), [(8, 4, 120)])
    focus = face_crops.detect_focus(path)
    bucket = BucketConfig(id="b", instance_data_dir="x", crop=True, crop_style="face")
    record = ImageRecord(path, "wide", "")
    face = np.asarray(load_image(record, bucket, 64, 0, focus))
    centre = np.asarray(load_image(record, BucketConfig(id="b", instance_data_dir="x", crop=True), 64, 0))
    skin = lambda a: int((np.abs(a.astype(int) - SKIN).sum(axis=2) < 60).sum())
    assert skin(face) > 600 and skin(centre) == 0            # the face is in the face crop, not in the centre one
    assert np.array_equal(np.asarray(load_image(record, bucket, 64, 0, None)), centre)  # no face: centre crop


def face_project(tmp_path, pos_faces, neg_faces, neutral_faces=((),)):
    root = make_project(tmp_path, "/no/model", pairs=0, neutral=0)
    for i, (p, n) in enumerate(zip(pos_faces, neg_faces)):
        picture(root / "data" / "pos" / f"img{i}.png", faces=p)
        picture(root / "data" / "neg" / f"img{i}.png", faces=n)
    for i, faces in enumerate(neutral_faces):
        picture(root / "data" / "neu" / f"n{i}.png", faces=faces)
    buckets = [{"id": "pos", "instance_data_dir": "data/pos", "slider_strength": 1, "crop": True,
                "crop_style": "face", "crop_aspect": "square"},
               {"id": "neg", "instance_data_dir": "data/neg", "slider_strength": -1, "crop": True,
                "crop_style": "face", "crop_aspect": "square"},
               {"id": "neu", "instance_data_dir": "data/neu", "crop": True, "crop_style": "face",
                "crop_aspect": "square"}]
    (root / "multidatabackend.json").write_text(json.dumps(buckets))
    return root


def assigned(root, detector=None):
    project = load_project(root)
    scanned = scan_project(project)
    pair_map = balance(project, scanned).pair_map
    assign_targets(project, scanned, pair_map, 16)
    logs = []
    face_crops.assign_faces(project, scanned, pair_map, lambda msg, level: logs.append(msg), detector)
    return {s.bucket.id: s for s in scanned}, logs


def test_a_pair_shares_one_face_box_and_no_face_is_logged(tmp_path):
    # img0: faces on opposite sides (the positive's wins); img1: only the negative shows one (it wins)
    root = face_project(tmp_path, pos_faces=[[(0, 10, 100)], []], neg_faces=[[(90, 10, 100)], [(88, 12, 100)]])
    by_id, logs = assigned(root)
    pos, neg, neu = by_id["pos"], by_id["neg"], by_id["neu"]
    assert pos.stems == neg.stems == ["img0", "img1"]
    assert pos.focus == neg.focus                                          # one focus per pair
    assert pos.focus[0][0] < 0.4 and pos.focus[1][0] > 0.6                 # positive's face; else negative's
    assert neu.focus == [None]
    assert "bucket 'neu': n0.png: no face found, centre crop" in logs
    assert "bucket 'pos': face crops on 2 of 2 images" in logs
    for i in range(2):                                                     # the same box, pixel for pixel shape
        size = pos.target(i)
        a = load_image(pos.images[i], pos.bucket, size, 0, pos.focus_at(i))
        b = load_image(neg.images[i], neg.bucket, size, 0, neg.focus_at(i))
        assert a.size == b.size == (64, 64)
    left = np.asarray(load_image(pos.images[0], pos.bucket, pos.target(0), 0, pos.focus_at(0)))
    neg_left = np.asarray(load_image(neg.images[0], neg.bucket, neg.target(0), 0, neg.focus_at(0)))
    assert left[32, 20].tolist() != list(BACKGROUND) and neg_left[32, 20].tolist() == list(BACKGROUND)
    # the latent cache tag carries the face centre, so a moved face re-encodes
    tags = image_tags(pos, 64, 0)
    assert len(set(tags)) == 2 and image_tags(neg, 64, 0) == tags


def test_detections_are_cached_per_file(tmp_path):
    root = face_project(tmp_path, pos_faces=[[(0, 10, 100)]], neg_faces=[[(0, 10, 100)]])
    first, _ = assigned(root)
    cache = json.loads((root / "cache" / "faces.json").read_text())
    assert len(cache["files"]) == 3

    def refuse(image):
        raise AssertionError("a cached file was decoded again")

    again, _ = assigned(root, refuse)
    assert again["pos"].focus == first["pos"].focus
    picture(root / "data" / "pos" / "img0.png", faces=[(90, 10, 100)])  # the file changed: detected anew
    calls = []
    moved, _ = assigned(root, lambda image: calls.append(image.size) or [(130, 20, 60, 60)])
    assert calls == [(192, 128)] and moved["pos"].focus[0] == pytest.approx((160 / 192, 50 / 128))


def test_face_crops_without_a_detector_exit_2_naming_crop_style(tmp_path, monkeypatch):
    root = face_project(tmp_path, pos_faces=[[(0, 10, 100)]], neg_faces=[[(0, 10, 100)]])
    monkeypatch.setattr(face_crops, "_cascade", None)
    monkeypatch.setitem(sys.modules, "cv2", None)  # import cv2 now raises ImportError
    with pytest.raises(DatasetError) as err:
        assigned(root)
    assert err.value.exit_code == 2 and err.value.key == "pos.crop_style" and err.value.value == "face"
    assert "opencv-python-headless" in str(err.value) and err.value.file.endswith("multidatabackend.json")
    monkeypatch.undo()
    monkeypatch.setattr(face_crops, "_cascade", None)
    monkeypatch.setattr(face_crops, "CASCADE", "missing_cascade.xml")  # an OpenCV whose wheel has no cascades
    with pytest.raises(DatasetError, match="ships no face model") as err:
        assigned(root)
    assert err.value.key == "pos.crop_style"


def test_a_face_cropped_run_trains_on_the_face_crops(tmp_path, tiny_models):
    from sliderstudio.kernel.events import Log
    from sliderstudio.engine.trainer import Trainer

    root = face_project(tmp_path, pos_faces=[[(0, 10, 100)], [(90, 10, 100)]],
                        neg_faces=[[(0, 10, 100)], [(90, 10, 100)]])
    cfg = json.loads((root / "config.json").read_text())
    cfg.update({"pretrained_model_name_or_path": str(tiny_models["sd1x"]), "max_train_steps": 1,
                "validation_steps": 0})
    (root / "config.json").write_text(json.dumps(cfg))
    events = []
    Trainer(load_project(root), events.append).run()
    logs = [e.message for e in events if isinstance(e, Log)]
    assert "bucket 'pos': face crops on 2 of 2 images" in logs and "bucket 'neu': face crops on 0 of 1 images" in logs
    assert (root / "output" / "pytorch_lora_weights.safetensors").exists()
    assert len(json.loads((root / "cache" / "faces.json").read_text())["files"]) == 5
