"""Buckets: scan a folder into image records with captions, report problems, detect pairs (SPEC §2.5, §3).

Scanning only reads headers, so the app can show counts and problems instantly. A file that is not an
image, cannot be decoded, or is absurdly large is reported by name and skipped, never a crash. The
header's size also feeds the aspect buckets (engine/aspect_buckets.py) and `minimum_image_size`.
"""
from __future__ import annotations

import random
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from PIL import Image, UnidentifiedImageError

from sliderstudio.engine import aspect_buckets
from sliderstudio.engine.aspect_buckets import Size
from sliderstudio.config.config import BucketConfig
from sliderstudio.kernel.errors import DatasetError
from sliderstudio.engine.project import Project

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp"})
CAPTION_EXTENSION = ".txt"
MAX_PIXELS = 8192 * 8192  # beyond this a single image would take gigabytes to decode
IGNORED_NAMES = frozenset({".DS_Store", "Thumbs.db", "desktop.ini"})
Logger = Callable[[str, str], None]
SOURCE_KEYS = {"csv": "csv_file", "aws": "aws_data_prefix", "webshart": "source"}  # a remote entry's key that says where its images are


@dataclass(frozen=True)
class ImageRecord:
    path: Path
    stem: str
    caption: str
    size: Size | None = None  # (width, height) from the header; None when the scan skipped the check
    captions: tuple[str, ...] = ()  # every line of a multi-line caption file (caption is the first)

    @property
    def variants(self) -> tuple[str, ...]:
        """The captions training chooses from: the lines of the caption file, else the one caption."""
        return self.captions or (self.caption,)


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
    targets: list[Size] = field(default_factory=list)  # training size per image (assign_targets)
    focus: list[tuple[float, float] | None] = field(default_factory=list)  # crop_style face (engine/face_crops.py)

    @property
    def count(self) -> int:
        return len(self.images)

    @property
    def stems(self) -> list[str]:
        return [r.stem for r in self.images]

    def target(self, index: int) -> Size | None:
        return self.targets[index] if self.targets else None

    def focus_at(self, index: int) -> tuple[float, float] | None:
        return self.focus[index] if self.focus else None


@dataclass(frozen=True)
class Balance:
    positive: int
    negative: int
    neutral: int
    pairing: bool
    pairs: int
    pair_map: dict[str, str]  # positive bucket id → negative bucket id
    warning: str | None


def _check_image(path: Path, deep: bool = False, verify: bool = True) -> tuple[str | None, Size | None]:
    """(problem or None, header size). `deep` decodes the pixels too (catches truncated files);
    without `verify` only the header is read (the plan's quick scan)."""
    size = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                w, h = size = im.size
                if w * h > MAX_PIXELS:
                    return f"too large ({w}×{h} pixels; the limit is {MAX_PIXELS // 1_000_000} megapixels)", size
                if verify:
                    im.verify()
            if deep:
                with Image.open(path) as im:
                    im.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        return f"too large to decode safely (over {MAX_PIXELS // 1_000_000} megapixels)", size
    except UnidentifiedImageError:
        return "not a readable image", size
    except (OSError, SyntaxError, ValueError) as exc:
        return f"unreadable image ({exc})", size
    return None, size


def too_small(size: Size | None, bucket: BucketConfig) -> str | None:
    """`minimum_image_size` in the unit of the bucket's resolution_type (SimpleTuner's rule)."""
    if size is None or not bucket.minimum_image_size:
        return None
    measure = aspect_buckets.image_measure(size, bucket.resolution_type)
    if measure >= bucket.minimum_image_size:
        return None
    unit = {"pixel": "px short side", "area": "megapixels", "pixel_area": "px (square root of the area)"}
    return (f"smaller than minimum_image_size ({size[0]}×{size[1]} is {measure:g} "
            f"{unit[bucket.resolution_type]}, the minimum is {bucket.minimum_image_size:g})")


def outside_aspect(size: Size | None, bucket: BucketConfig) -> str | None:
    """SimpleTuner's minimum_aspect_ratio / maximum_aspect_ratio (width / height)."""
    if size is None:
        return None
    aspect = size[0] / size[1]
    if bucket.minimum_aspect_ratio and aspect < bucket.minimum_aspect_ratio:
        return f"aspect ratio {aspect:.2f} is under minimum_aspect_ratio {bucket.minimum_aspect_ratio:g}"
    if bucket.maximum_aspect_ratio and aspect > bucket.maximum_aspect_ratio:
        return f"aspect ratio {aspect:.2f} is over maximum_aspect_ratio {bucket.maximum_aspect_ratio:g}"
    return None


def caption_for(path: Path, bucket: BucketConfig,
                table: dict[str, str] | None = None) -> tuple[str, str | None]:
    """Caption and an optional problem note; SimpleTuner's only_/prepend_instance_prompt applied last.

    A caption file's lines are separate captions (one line each in the result) unless the entry sets
    disable_multiline_split; the instance prompt is prepended to each line.
    """
    from sliderstudio.config.caption_variants import SPLIT_STRATEGIES, split_lines

    caption, note = source_caption(path, bucket, table)
    prompt = bucket.instance_prompt
    if prompt and bucket.only_instance_prompt:
        return prompt, None
    split = bucket.caption_strategy in SPLIT_STRATEGIES and not bucket.disable_multiline_split
    lines = split_lines(caption, split)
    if prompt and bucket.prepend_instance_prompt:
        lines = [f"{prompt} {line}".strip() if line != prompt else line for line in lines]
    return "\n".join(lines), note


def source_caption(path: Path, bucket: BucketConfig,
                   table: dict[str, str] | None = None) -> tuple[str, str | None]:
    """Caption and an optional problem note (a missing caption file falls back, with a note).
    `table`: the caption table of caption_strategy 'parquet' (engine/parquet_captions.py)."""
    if bucket.caption_strategy == "instanceprompt":
        return bucket.instance_prompt or "", None
    from_name = path.stem.replace("_", " ").replace("-", " ").strip()
    if bucket.caption_strategy == "filename":
        return from_name, None
    if bucket.caption_strategy == "parquet":
        from sliderstudio.engine.parquet_captions import identifier

        found = (table or {}).get(identifier(path, bucket))
        fallback = bucket.instance_prompt or from_name
        return (found, None) if found else (fallback, f"not in the caption table; using '{fallback}'")
    txt = path.with_suffix(CAPTION_EXTENSION)
    if txt.exists():
        try:
            return txt.read_text(encoding="utf-8").strip(), None
        except (OSError, UnicodeDecodeError) as exc:
            return bucket.instance_prompt or from_name, f"caption file unreadable ({exc})"
    fallback = bucket.instance_prompt or from_name
    return fallback, f"no {txt.name}; using '{fallback}'"


def folder_files(folder: Path) -> list[tuple[Path, str]]:
    """(file, stem) under `folder` and its subfolders, as SimpleTuner reads an instance_data_dir tree.

    Sorted by relative path so the order is stable; hidden files and folders are skipped. The stem of a
    file in a subfolder keeps its folder (`portraits/img1`), so pairs and ControlNet conditioning files
    match by the same relative path in the counterpart tree.
    """
    out = []
    for path in folder.rglob("*"):
        rel = path.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts) or path.name in IGNORED_NAMES or path.is_dir():
            continue
        out.append((path, rel.with_suffix("").as_posix()))
    return sorted(out, key=lambda item: item[0].relative_to(folder).as_posix())


def scan_folder(folder: Path, bucket: BucketConfig, check_images: bool = True, deep: bool = False,
                table: dict[str, str] | None = None, files: list[tuple[Path, str]] | None = None,
                seed: int = 0) -> ScannedBucket:
    """Scan one folder tree (sorted by relative path so the order is stable).

    `files`: the images of a remote backend's cache folder this run uses (older ones may lie beside
    them). max_num_samples keeps the same images on every run (config/sample_cap.py).
    """
    from sliderstudio.config.sample_cap import capped

    scanned = ScannedBucket(bucket=bucket, folder=folder)
    if not folder.exists():
        scanned.problems.append(Problem(folder, "folder does not exist"))
        return scanned
    if not folder.is_dir():
        scanned.problems.append(Problem(folder, "not a folder"))
        return scanned
    candidates = []
    for path, stem in folder_files(folder) if files is None else files:
        if path.suffix.lower() == CAPTION_EXTENSION:
            continue
        if path.suffix.lower() not in IMAGE_EXTENSIONS:
            if path.parent == folder:  # in subfolders only images count (caches and notes live there too)
                scanned.problems.append(Problem(path, "not an image file (skipped)"))
            continue
        candidates.append((path, stem))
    for path, stem in capped(candidates, bucket.max_num_samples, seed, lambda item: item[1]):
        bad, size = _check_image(path, deep, verify=check_images)
        bad = bad or too_small(size, bucket) or outside_aspect(size, bucket)
        if bad:
            scanned.problems.append(Problem(path, bad + " (skipped)"))
            continue
        caption, note = caption_for(path, bucket, table)
        if note and bucket.caption_strategy in ("textfile", "huggingface", "parquet", "csv", "webshart") and \
                not bucket.instance_prompt:
            scanned.problems.append(Problem(path, note))
        lines = tuple(caption.split("\n"))
        scanned.images.append(ImageRecord(path=path, stem=stem, caption=lines[0], size=size,
                                          captions=lines if len(lines) > 1 else ()))
    if not scanned.images:
        scanned.problems.append(Problem(folder, "no usable images in this folder"))
    return scanned


def scan_bucket(project: Project, bucket: BucketConfig, check_images: bool = True,
                deep: bool = False, log: Logger | None = None) -> ScannedBucket:
    """`log` gets the progress of a remote backend's fetch (csv, aws)."""
    seed = project.config.seed
    if bucket.type == "huggingface":
        from sliderstudio.engine.hf_datasets import materialise

        return scan_folder(materialise(project, bucket), bucket, check_images, deep, seed=seed)
    if bucket.type in ("csv", "aws", "webshart"):
        return scan_remote(project, bucket, check_images, deep, log)
    folder = project.bucket_dir(bucket)
    table = None
    if bucket.caption_strategy == "parquet" and folder.is_dir():
        from sliderstudio.engine.parquet_captions import load_captions

        table = load_captions(bucket, project.root, folder)
    return scan_folder(folder, bucket, check_images, deep, table, seed=seed)


def scan_remote(project: Project, bucket: BucketConfig, check_images: bool, deep: bool,
                log: Logger | None) -> ScannedBucket:
    """Fetch what the cache lacks, then scan only this run's files; fetch failures lead the problems."""
    if bucket.type == "csv":
        from sliderstudio.engine.csv_manifest import fetch_csv as fetch
    elif bucket.type == "webshart":
        from sliderstudio.engine.webshart_shards import export_shards as fetch
    else:
        from sliderstudio.engine.s3_objects import fetch_s3 as fetch
    fetched = fetch(project, bucket, log)
    table = None
    if bucket.caption_strategy == "parquet":
        from sliderstudio.engine.parquet_captions import load_captions

        table = load_captions(bucket, project.root, fetched.folder)
    scanned = scan_folder(fetched.folder, bucket, check_images, deep, table, files=fetched.files,
                          seed=project.config.seed)
    scanned.problems[:0] = [Problem(path, reason) for path, reason in fetched.problems]
    return scanned


def scan_project(project: Project, check_images: bool = True, deep: bool = False,
                 log: Logger | None = None) -> list[ScannedBucket]:
    return [scan_bucket(project, b, check_images, deep, log) for b in project.active_buckets()]


def find_pairs(scanned: list[ScannedBucket]) -> dict[str, str]:
    """Pair each positive bucket with a negative one holding exactly the same file stems.

    Among such negatives the one of the opposite strength wins, so buckets of one pair set drawn at
    several intensities (bigger_050 ↔ smaller_050, bigger ↔ smaller, same file names) pair by level.
    """
    negatives = [s for s in scanned if s.bucket.role == "negative" and s.count]
    taken: set[str] = set()
    pairs = {}
    for pos in (s for s in scanned if s.bucket.role == "positive" and s.count):
        by_level = sorted(negatives, key=lambda n: abs(n.bucket.slider_strength + pos.bucket.slider_strength))
        for neg in by_level:
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
    """Raise before any model loads when the buckets cannot train a slider at all.

    Text pairs (slider_text_pairs) train a slider without images: with one, image buckets are optional.
    """
    from sliderstudio.config.text_pairs import active_pairs

    texts = bool(active_pairs(project.config.slider_text_pairs))
    if not scanned and not texts:
        raise DatasetError("no enabled image buckets (and no text pairs in slider_text_pairs)",
                           file=project.dataloader_path)
    for s in scanned:
        if s.count == 0:
            reason = s.problems[0].reason if s.problems else "no usable images"
            source = SOURCE_KEYS.get(s.bucket.type)
            raise DatasetError(f"bucket '{s.bucket.id}' has no usable images: {reason}",
                               file=project.dataloader_path if source else s.folder,
                               key=f"{s.bucket.id}.{source or 'instance_data_dir'}")
    if scanned and not texts and all(s.bucket.role == "neutral" for s in scanned):
        raise DatasetError("every bucket is neutral (slider_strength 0): a slider needs at least one "
                           "bucket with a positive or negative slider_strength",
                           file=project.dataloader_path, key="slider_strength")


def bucket_resolution(project: Project, bucket: BucketConfig) -> int:
    """Side length in pixels of the bucket's square size, a multiple of 8 (the VAE's downsampling needs it)."""
    res, kind = aspect_buckets.effective_resolution(bucket, project.config.resolution)
    if kind != "pixel":
        res = (float(res) * 1_000_000) ** 0.5 if kind == "area" else float(res)
    return max(8, int(round(float(res) / 8)) * 8)


def assign_targets(project: Project, scanned: list[ScannedBucket], pair_map: dict[str, str],
                   alignment: int) -> None:
    """Give every image its training size; a paired negative takes its positive's size (same stem).

    Deciding the pair's size once, from the positive, keeps the two latents the same shape, so the
    paired negative batch can reuse the positive's noise exactly.
    """
    by_id = {s.bucket.id: s for s in scanned}
    for s in scanned:
        rule = aspect_buckets.size_rule(s.bucket, project.config.resolution, alignment, project.config.seed)
        s.targets = [aspect_buckets.target_size(r.size or (1, 1), rule, r.stem) for r in s.images]
    for pos_id, neg_id in pair_map.items():
        pos, neg = by_id.get(pos_id), by_id.get(neg_id)
        if pos is None or neg is None:
            continue
        sizes = dict(zip(pos.stems, pos.targets))
        neg.targets = [sizes.get(stem, own) for stem, own in zip(neg.stems, neg.targets)]


def downsample_first(image: Image.Image, bucket: BucketConfig) -> Image.Image:
    """SimpleTuner's maximum_image_size / target_downsample_size: shrink big images before cropping."""
    limit = bucket.maximum_image_size
    if not limit or aspect_buckets.image_measure(image.size, bucket.resolution_type) <= limit:
        return image
    goal = bucket.target_downsample_size or limit
    scale = goal / aspect_buckets.image_measure(image.size, bucket.resolution_type)
    if bucket.resolution_type == "area":
        scale = scale ** 0.5
    w, h = image.size
    return image.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.LANCZOS)


def load_image(record: ImageRecord, bucket: BucketConfig, size: int | Size, seed: int,
               focus: tuple[float, float] | None = None) -> Image.Image:
    """Decode, convert to RGB and bring to `size` ((w, h), or a side for a square).

    crop off: resize straight to the bucket size (its aspect is the image's own, up to rounding).
    crop on: scale to cover the bucket size, then cut it out at crop_style. Random crops are seeded by
    (seed, file name) so a cached latent and a fresh one agree, and a pair's two images crop alike.
    crop_style face: centred on `focus` (the pair's shared face centre, engine/face_crops.py), else centre.
    """
    tw, th = (size, size) if isinstance(size, int) else size
    try:
        with Image.open(record.path) as im:
            if im.format == "JPEG" and bucket.maximum_image_size:
                im.draft("RGB", (tw, th))  # decode a huge JPEG at a fraction of its size
            im.load()
            image = im.convert("RGB")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise DatasetError(f"cannot decode image ({exc})", file=record.path) from None
    image = downsample_first(image, bucket)
    if not bucket.crop:
        return image.resize((tw, th), Image.Resampling.LANCZOS)
    w, h = image.size
    scale = max(tw / w, th / h)
    nw, nh = max(tw, round(w * scale)), max(th, round(h * scale))
    image = image.resize((nw, nh), Image.Resampling.LANCZOS)
    if bucket.crop_style == "random":
        rng = random.Random(f"{seed}:{record.path.name}")
        left, top = rng.randint(0, nw - tw), rng.randint(0, nh - th)
    elif bucket.crop_style == "corner":
        left, top = 0, 0
    elif bucket.crop_style == "face":
        from sliderstudio.engine.face_crops import crop_origin

        left, top = crop_origin((nw, nh), (tw, th), focus)
    else:
        left, top = (nw - tw) // 2, (nh - th) // 2
    return image.crop((left, top, left + tw, top + th))


def describe_targets(scanned: list[ScannedBucket]) -> str:
    """'pos: 64x96 ×2, 64x64 ×1; neg: …' for the run log."""
    parts = []
    for s in scanned:
        counts: dict[Size, int] = {}
        for size in s.targets:
            counts[size] = counts.get(size, 0) + 1
        parts.append(f"{s.bucket.id}: " + ", ".join(f"{w}x{h} ×{n}" for (w, h), n in counts.items()))
    return "; ".join(parts)
