"""`crop_style: "face"`: the crop is centred on the largest face in the image (SimpleTuner's value).

The detector is OpenCV's Haar frontal-face cascade, whose model file ships inside the
opencv-python-headless 4.x wheel (`cv2.data.haarcascades`), so nothing is downloaded at run time.
Detection runs once per image before encoding, on a copy scaled to DETECT_SIDE (a Haar cascade finds
faces of 24 px and up, so a larger copy only costs time) and its result is kept in
`cache/faces.json`, keyed by the file's path, size and modification time, so a re-run decodes nothing.

A face is stored as its centre in fractions of the image's width and height (the "focus"): the crop
is taken after resizing and `maximum_image_size` downsampling, which scale both axes alike, so the
fraction stays true. A positive and its paired negative (same stem) share one focus, decided from the
positive (from the negative when only it shows a face), so the pair is cut from the same box exactly
as the centre and seeded random crops already guarantee. No face: a centre crop and a log line.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from PIL import Image

from sliderstudio.kernel import atomic
from sliderstudio.kernel.errors import DatasetError

if TYPE_CHECKING:
    from sliderstudio.engine.buckets import ScannedBucket
    from sliderstudio.engine.project import Project

Focus = tuple[float, float]  # the face's centre as fractions (x of width, y of height)
FaceBox = tuple[int, int, int, int]  # x, y, width, height in pixels of the image given to the detector
Detector = Callable[[Image.Image], list[FaceBox]]
Logger = Callable[[str, str], None]

DETECT_SIDE = 640  # long side of the copy the detector sees
CASCADE = "haarcascade_frontalface_default.xml"
CACHE_FILE = Path("cache") / "faces.json"
CACHE_VERSION = 1
_lock = threading.Lock()
_cascade: Any = None


def uses_faces(s: "ScannedBucket") -> bool:
    """Only a cropped bucket has a crop position to move."""
    return bool(s.bucket.crop) and s.bucket.crop_style == "face"


def haar_cascade(file: str | Path | None = None, key: str = "crop_style") -> Any:
    """The frontal-face cascade, loaded once; exit 2 naming crop_style when OpenCV is missing."""
    global _cascade
    with _lock:
        if _cascade is not None:
            return _cascade
        try:
            import cv2
        except ImportError:
            raise DatasetError("crop_style 'face' needs OpenCV's face detector, which is not installed: "
                               "pip install opencv-python-headless==4.14.0.94 (its wheel carries the model), "
                               "or use crop_style center", file=file, key=key, value="face") from None
        data = getattr(cv2, "data", None)
        path = Path(getattr(data, "haarcascades", "") or ".") / CASCADE
        cascade = cv2.CascadeClassifier(str(path)) if path.is_file() else None
        if cascade is None or cascade.empty():  # opencv 5.x wheels ship no cascades
            raise DatasetError(f"OpenCV {cv2.__version__} ships no face model ({path} is missing); install "
                               "opencv-python-headless==4.14.0.94, or use crop_style center",
                               file=file, key=key, value="face")
        _cascade = cascade
        return cascade


def haar_faces(image: Image.Image) -> list[FaceBox]:
    """Faces the Haar cascade finds in `image` (any mode), in its pixel coordinates."""
    import numpy as np

    gray = np.ascontiguousarray(np.asarray(image.convert("L")))
    found = haar_cascade().detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(24, 24))
    return [tuple(int(v) for v in box) for box in found]  # type: ignore[misc]


def largest(boxes: list[FaceBox]) -> FaceBox | None:
    return max(boxes, key=lambda b: (b[2] * b[3], -b[1], -b[0])) if boxes else None


def detect_focus(path: Path, detector: Detector = haar_faces) -> Focus | None:
    """The centre of the largest face in the file, as fractions of its size; None without a face."""
    with Image.open(path) as im:
        im.draft("L", (DETECT_SIDE, DETECT_SIDE))  # a JPEG decodes at a fraction of its size
        image = im.convert("L")
    scale = DETECT_SIDE / max(image.size)
    if scale < 1:
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                             Image.Resampling.BILINEAR)
    box = largest(detector(image))
    if box is None:
        return None
    x, y, w, h = box
    return ((x + w / 2) / image.width, (y + h / 2) / image.height)


def crop_origin(size: tuple[int, int], crop: tuple[int, int], focus: Focus | None) -> tuple[int, int]:
    """(left, top) of a `crop` box cut from an image of `size`: centred on focus, clamped to the image."""
    (w, h), (cw, ch) = size, crop
    fx, fy = focus if focus is not None else (0.5, 0.5)
    left = min(max(0, round(fx * w - cw / 2)), w - cw)
    top = min(max(0, round(fy * h - ch / 2)), h - ch)
    return left, top


def tag(focus: Focus | None) -> str:
    """The focus as part of a latent's cache tag (a moved face must re-encode, rounding must not)."""
    return "face:none" if focus is None else f"face:{focus[0]:.3f},{focus[1]:.3f}"


class FocusCache:
    """cache/faces.json: path → (size, mtime_ns, focus), so each file is decoded and searched once."""

    def __init__(self, file: Path):
        self.file = file
        self.entries: dict[str, list] = {}
        self.dirty = False
        try:
            data = read_json(file)
            if data.get("version") == CACHE_VERSION:
                self.entries = dict(data.get("files", {}))
        except (OSError, ValueError, AttributeError):
            pass  # a missing or damaged cache is only slower

    def get(self, path: Path, detector: Detector) -> Focus | None:
        st = path.stat()
        key = str(path.resolve())
        hit = self.entries.get(key)
        if hit and hit[0] == st.st_size and hit[1] == st.st_mtime_ns:
            return tuple(hit[2]) if hit[2] else None  # type: ignore[return-value]
        focus = detect_focus(path, detector)
        self.entries[key] = [st.st_size, st.st_mtime_ns, list(focus) if focus else None]
        self.dirty = True
        return focus

    def save(self) -> None:
        if self.dirty:
            atomic.write_json(self.file, {"version": CACHE_VERSION, "files": self.entries})
            self.dirty = False


def read_json(file: Path) -> dict:
    import json

    return json.loads(file.read_text(encoding="utf-8"))


def assign_faces(project: "Project", scanned: list["ScannedBucket"], pair_map: dict[str, str],
                 log: Logger | None = None, detector: Detector | None = None) -> None:
    """Fill `focus` of every face-cropped bucket; a paired negative takes its positive's focus (same stem)."""
    todo = [s for s in scanned if uses_faces(s)]
    if not todo:
        return
    if detector is None:
        haar_cascade(project.dataloader_path, f"{todo[0].bucket.id}.crop_style")  # exit 2 before any work
        detector = haar_faces
    cache = FocusCache(project.root / CACHE_FILE)
    try:
        for s in todo:
            s.focus = [cache.get(r.path, detector) for r in s.images]
    finally:
        cache.save()
    share_pair_focus(scanned, pair_map)
    for s in todo:
        missing = [r.path.name for r, f in zip(s.images, s.focus) if f is None]
        for name in missing:
            if log is not None:
                log(f"bucket '{s.bucket.id}': {name}: no face found, centre crop", "info")
        if log is not None:
            log(f"bucket '{s.bucket.id}': face crops on {len(s.images) - len(missing)} of {len(s.images)} "
                "images", "info")


def share_pair_focus(scanned: list["ScannedBucket"], pair_map: dict[str, str]) -> None:
    """Positive and paired negative get one focus per stem: the positive's, else the negative's face."""
    by_id = {s.bucket.id: s for s in scanned}
    for pos_id, neg_id in pair_map.items():
        pos, neg = by_id.get(pos_id), by_id.get(neg_id)
        if pos is None or neg is None or not (uses_faces(pos) or uses_faces(neg)):
            continue
        own_pos = dict(zip(pos.stems, pos.focus or [None] * pos.count))
        own_neg = dict(zip(neg.stems, neg.focus or [None] * neg.count))
        shared = {stem: own_pos.get(stem) or own_neg.get(stem) for stem in set(own_pos) | set(own_neg)}
        if uses_faces(pos):
            pos.focus = [shared[stem] for stem in pos.stems]
        if uses_faces(neg):
            neg.focus = [shared[stem] for stem in neg.stems]
