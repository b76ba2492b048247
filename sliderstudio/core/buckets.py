"""Buckets: scan a folder into image records with captions, report problems, detect pairs (SPEC §2.5, §3).

Scanning only reads headers, so the app can show counts and problems instantly. A file that is not an
image, cannot be decoded, or is absurdly large is reported by name and skipped, never a crash.
"""
from __future__ import annotations

import random
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from sliderstudio.core.config import BucketConfig
from sliderstudio.core.errors import DatasetError
from sliderstudio.core.project import Project

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp"})
CAPTION_EXTENSION = ".txt"
MAX_PIXELS = 8192 * 8192  # beyond this a single image would take gigabytes to decode
IGNORED_NAMES = frozenset({".DS_Store", "Thumbs.db", "desktop.ini"})


@dataclass(frozen=True)
class ImageRecord:
    path: Path
    stem: str
    caption: str


@dataclass(frozen=True)
class Problem:
    path: Path
    reason: str

    def __str__(self) -> str:
        return f"{self.path.name}: {self.reason}"


@dataclass
class ScannedBucket:
    bucket: BucketConfig
    folder: Path
    images: list[ImageRecord] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.images)

    @property
    def stems(self) -> list[str]:
        return [r.stem for r in self.images]


@dataclass(frozen=True)
class Balance:
    positive: int
    negative: int
    neutral: int
    pairing: bool
    pairs: int
    pair_map: dict[str, str]  # positive bucket id → negative bucket id
    warning: str | None


def _check_image(path: Path, deep: bool = False) -> str | None:
    """A problem description, or None. `deep` decodes the pixels too (catches truncated files)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                w, h = im.size
                if w * h > MAX_PIXELS:
                    return f"too large ({w}×{h} pixels; the limit is {MAX_PIXELS // 1_000_000} megapixels)"
                im.verify()
            if deep:
                with Image.open(path) as im:
                    im.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        return f"too large to decode safely (over {MAX_PIXELS // 1_000_000} megapixels)"
    except UnidentifiedImageError:
        return "not a readable image"
    except (OSError, SyntaxError, ValueError) as exc:
        return f"unreadable image ({exc})"
    return None


def caption_for(path: Path, bucket: BucketConfig) -> tuple[str, str | None]:
    """Caption and an optional problem note (a missing caption file falls back, with a note)."""
    if bucket.caption_strategy == "instanceprompt":
        return bucket.instance_prompt or "", None
    from_name = path.stem.replace("_", " ").replace("-", " ").strip()
    if bucket.caption_strategy == "filename":
        return from_name, None
    txt = path.with_suffix(CAPTION_EXTENSION)
    if txt.exists():
        try:
            return txt.read_text(encoding="utf-8").strip(), None
        except (OSError, UnicodeDecodeError) as exc:
            return bucket.instance_prompt or from_name, f"caption file unreadable ({exc})"
    fallback = bucket.instance_prompt or from_name
    return fallback, f"no {txt.name}; using '{fallback}'"


def scan_folder(folder: Path, bucket: BucketConfig, check_images: bool = True, deep: bool = False) -> ScannedBucket:
    """Scan one folder (not recursive, sorted by name so the order is stable)."""
    scanned = ScannedBucket(bucket=bucket, folder=folder)
    if not folder.exists():
        scanned.problems.append(Problem(folder, "folder does not exist"))
        return scanned
    if not folder.is_dir():
        scanned.problems.append(Problem(folder, "not a folder"))
        return scanned
    for path in sorted(folder.iterdir(), key=lambda p: p.name):
        if path.name in IGNORED_NAMES or path.name.startswith(".") or path.is_dir():
            continue
        if path.suffix.lower() == CAPTION_EXTENSION:
            continue
        if path.suffix.lower() not in IMAGE_EXTENSIONS:
            scanned.problems.append(Problem(path, "not an image file (skipped)"))
            continue
        bad = _check_image(path, deep) if check_images else None
        if bad:
            scanned.problems.append(Problem(path, bad + " (skipped)"))
            continue
        caption, note = caption_for(path, bucket)
        if note and bucket.caption_strategy == "textfile" and not bucket.instance_prompt:
            scanned.problems.append(Problem(path, note))
        scanned.images.append(ImageRecord(path=path, stem=path.stem, caption=caption))
    if not scanned.images:
        scanned.problems.append(Problem(folder, "no usable images in this folder"))
    return scanned


def scan_bucket(project: Project, bucket: BucketConfig, check_images: bool = True,
                deep: bool = False) -> ScannedBucket:
    return scan_folder(project.bucket_dir(bucket), bucket, check_images, deep)


def scan_project(project: Project, check_images: bool = True, deep: bool = False) -> list[ScannedBucket]:
    return [scan_bucket(project, b, check_images, deep) for b in project.active_buckets()]


def find_pairs(scanned: list[ScannedBucket]) -> dict[str, str]:
    """Pair each positive bucket with a negative one holding exactly the same file stems."""
    negatives = [s for s in scanned if s.bucket.role == "negative" and s.count]
    taken: set[str] = set()
    pairs = {}
    for pos in (s for s in scanned if s.bucket.role == "positive" and s.count):
        for neg in negatives:
            if neg.bucket.id not in taken and sorted(neg.stems) == sorted(pos.stems):
                pairs[pos.bucket.id] = neg.bucket.id
                taken.add(neg.bucket.id)
                break
    return pairs


def balance(project: Project, scanned: list[ScannedBucket]) -> Balance:
    """Positive/negative counts, the warning when they differ, and whether paired mode applies."""
    def total(role: str) -> int:
        return sum(s.count for s in scanned if s.bucket.role == role)

    pos, neg, neu = total("positive"), total("negative"), total("neutral")
    warning = None
    if pos != neg:
        warning = (f"positive buckets hold {pos} images and negative buckets hold {neg}; "
                   "sliders train best with equal counts")
    pair_map = find_pairs(scanned) if project.config.slider_pairing == "auto" else {}
    pairs = sum(s.count for s in scanned if s.bucket.id in pair_map)
    return Balance(pos, neg, neu, bool(pair_map), pairs, pair_map, warning)


def require_trainable(project: Project, scanned: list[ScannedBucket]) -> None:
    """Raise before any model loads when the buckets cannot train a slider at all."""
    if not scanned:
        raise DatasetError("no enabled image buckets", file=project.dataloader_path)
    for s in scanned:
        if s.count == 0:
            reason = s.problems[0].reason if s.problems else "no usable images"
            raise DatasetError(f"bucket '{s.bucket.id}' has no usable images: {reason}",
                               file=s.folder, key=f"{s.bucket.id}.instance_data_dir")
    if all(s.bucket.role == "neutral" for s in scanned):
        raise DatasetError("every bucket is neutral (slider_strength 0): a slider needs at least one "
                           "bucket with a positive or negative slider_strength",
                           file=project.dataloader_path, key="slider_strength")


def bucket_resolution(project: Project, bucket: BucketConfig) -> int:
    """Side length in pixels, a multiple of 8 (the VAE's downsampling needs it)."""
    res = bucket.resolution if bucket.resolution is not None else project.config.resolution
    if bucket.resolution_type == "area" or (isinstance(res, float) and res < 8):
        res = (float(res) * 1_000_000) ** 0.5
    return max(8, int(round(float(res) / 8)) * 8)


def load_image(record: ImageRecord, bucket: BucketConfig, size: int, seed: int) -> Image.Image:
    """Decode, convert to RGB, resize the short side to `size` and crop a square.

    Random crops are seeded by (seed, file name) so a cached latent and a fresh one agree.
    """
    try:
        with Image.open(record.path) as im:
            im.load()
            image = im.convert("RGB")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise DatasetError(f"cannot decode image ({exc})", file=record.path) from None
    if not bucket.crop:
        return image.resize((size, size), Image.Resampling.LANCZOS)
    w, h = image.size
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    image = image.resize((nw, nh), Image.Resampling.LANCZOS)
    if bucket.crop_style == "random":
        rng = random.Random(f"{seed}:{record.path.name}")
        left, top = rng.randint(0, nw - size), rng.randint(0, nh - size)
    elif bucket.crop_style == "corner":
        left, top = 0, 0
    else:
        left, top = (nw - size) // 2, (nh - size) // 2
    return image.crop((left, top, left + size, top + size))
