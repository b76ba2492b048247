"""`"type": "huggingface"` entries: a `datasets` data set exported once into a plain folder of images.

Everything downstream (scanning, problems per file, aspect buckets, pairing by stem, caches) already
works on folders, so the data set's rows become `<row>.<ext>` files with `<row>.txt` captions under
`cache/huggingface/<entry id>/` (SimpleTuner names rows by index the same way). The export is redone
only when the entry's options or the data set's fingerprint change.

Offline is decided up front (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE, or the Hub not answering within
a few seconds) and the library is then kept strictly offline, so a missing data set fails at once with
exit 2 instead of after the hub client's retries.
"""
from __future__ import annotations

import io
import os
import socket
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlparse

from sliderstudio.kernel import atomic
from sliderstudio.config.config import BucketConfig
from sliderstudio.kernel.errors import DatasetError
from sliderstudio.engine.project import Project

EXPORT_DIR = Path("cache") / "huggingface"
MARKER = ".export.json"
PROBE_TIMEOUT_S = 3.0
FORMAT_EXTENSIONS = {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp", "BMP": ".bmp"}
TRUE = ("1", "true", "yes", "on")


def option(bucket: BucketConfig, key: str, default: Any = None) -> Any:
    """A top-level key, else the same key inside the `huggingface` block (SimpleTuner accepts both)."""
    value = getattr(bucket, key, None) if key in BucketConfig.model_fields else None
    if value is None:
        value = (bucket.huggingface or {}).get(key)
    return default if value is None else value


def export_folder(project: Project, bucket: BucketConfig) -> Path:
    return project.bucket_dir(bucket)  # cache/huggingface/<id>: the app shows and opens it like any folder


def env_offline() -> bool:
    return any(os.environ.get(k, "").strip().lower() in TRUE for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


def hub_reachable(timeout: float = PROBE_TIMEOUT_S) -> bool:
    """One TCP connect to the Hub endpoint: seconds, not the client's retry loop."""
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        with socket.create_connection((url.hostname or "huggingface.co", url.port or 443), timeout=timeout):
            return True
    except OSError:
        return False


@contextmanager
def strictly_offline() -> Iterator[None]:
    """Make the hub client and `datasets` use their caches only, for the duration of one load."""
    import datasets
    import huggingface_hub.constants as hub

    saved = (hub.HF_HUB_OFFLINE, datasets.config.HF_HUB_OFFLINE)
    hub.HF_HUB_OFFLINE = datasets.config.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        hub.HF_HUB_OFFLINE, datasets.config.HF_HUB_OFFLINE = saved


def offline_error(name: str, bucket: BucketConfig, project: Project, why: str) -> DatasetError:
    return DatasetError(
        f"Hugging Face data set '{name}' is not available offline ({why}). Download it where there is "
        f"network, e.g. `python -c \"import datasets; datasets.load_dataset('{name}', "
        f"split='{option(bucket, 'split', 'train')}').save_to_disk('data/{bucket.id}')\"`, copy that folder "
        f"here and set \"dataset_name\": \"data/{bucket.id}\" (a saved data set), or export the images with "
        f".txt captions to a folder and use \"type\": \"local\" with instance_data_dir",
        file=project.dataloader_path, key=f"{bucket.id}.dataset_name", value=name)


def require_datasets(project: Project, bucket: BucketConfig) -> None:
    """The `datasets` package is a dependency of a pip install, not of the installer bundle (it would add
    pyarrow and pandas to every download); without it a Hugging Face entry is bad input, said plainly."""
    try:
        import datasets  # noqa: F401
    except ImportError:
        raise DatasetError("this Slider Studio has no Hugging Face data set support (the 'datasets' package is not "
                           "installed; the desktop bundle leaves it out). Install Slider Studio with pip, or export "
                           "the images with .txt captions to a folder and use \"type\": \"local\" with "
                           "instance_data_dir", file=project.dataloader_path, key=f"{bucket.id}.type",
                           value="huggingface") from None


def load_rows(project: Project, bucket: BucketConfig) -> Any:
    """The entry's split as a `datasets.Dataset`; every failure is a DatasetError naming the data set."""
    require_datasets(project, bucket)
    import datasets

    name = str(option(bucket, "dataset_name"))
    split = option(bucket, "split", "train")
    local = project.resolve(name)
    try:
        if local.exists():
            return pick_split(load_local(local, split, project.root / EXPORT_DIR / ".datasets-cache"), split, name,
                              bucket, project)
        if env_offline() or not hub_reachable():
            with strictly_offline():
                try:
                    return datasets.load_dataset(name, split=split, revision=option(bucket, "revision"))
                except Exception as exc:  # noqa: BLE001 - any offline failure means "not in the cache"
                    raise offline_error(name, bucket, project, f"{type(exc).__name__}") from None
        return datasets.load_dataset(name, split=split, revision=option(bucket, "revision"),
                                     token=(bucket.huggingface or {}).get("hf_token"))
    except DatasetError:
        raise
    except Exception as exc:  # noqa: BLE001 - the library raises many types; all are the user's input
        raise DatasetError(f"cannot load Hugging Face data set '{name}' ({type(exc).__name__}: {exc})",
                           file=project.dataloader_path, key=f"{bucket.id}.dataset_name", value=name) from None


def load_local(path: Path, split: str, cache_dir: Path) -> Any:
    """A `save_to_disk` folder, else anything `load_dataset` reads from a path (parquet, imagefolder…);
    the latter's Arrow cache stays inside the project instead of the user's Hugging Face cache."""
    import datasets

    if (path / "dataset_dict.json").exists() or (path / "state.json").exists():
        return datasets.load_from_disk(str(path))
    return datasets.load_dataset(str(path), split=split, cache_dir=str(cache_dir))


def pick_split(data: Any, split: str, name: str, bucket: BucketConfig, project: Project) -> Any:
    import datasets

    if not isinstance(data, datasets.DatasetDict):
        return data
    if split not in data:
        raise DatasetError(f"data set '{name}' has no split '{split}' (it has {', '.join(data)})",
                           file=project.dataloader_path, key=f"{bucket.id}.split", value=split)
    return data[split]


def caption_columns(bucket: BucketConfig, columns: list[str]) -> list[str]:
    wanted = option(bucket, "caption_column")
    names = [wanted] if isinstance(wanted, str) else list(wanted or [])
    if not names:
        names = [c for c in ("caption", "text") if c in columns][:1]
    fallback = option(bucket, "fallback_caption_column")
    return names + ([fallback] if fallback else [])


def caption_of(row: dict[str, Any], names: list[str]) -> str | None:
    for name in names:
        value = row.get(name)
        if isinstance(value, (list, tuple)):
            value = next((v for v in value if isinstance(v, str) and v.strip()), None)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def image_bytes(value: Any) -> tuple[bytes | None, str | None]:
    """(encoded bytes, original file name) of an undecoded image cell."""
    if isinstance(value, dict):
        data, path = value.get("bytes"), value.get("path")
        if data is None and path and Path(path).exists():
            data = Path(path).read_bytes()
        return data, path
    if isinstance(value, (bytes, bytearray)):
        return bytes(value), None
    return None, None


def extension_for(data: bytes, path: str | None) -> str:
    """The original suffix when it is an image type; else what the bytes are; else .png (then reported)."""
    from PIL import Image, UnidentifiedImageError

    from sliderstudio.engine.buckets import IMAGE_EXTENSIONS

    suffix = Path(path).suffix.lower() if path else ""
    if suffix in IMAGE_EXTENSIONS:
        return suffix
    try:
        with Image.open(io.BytesIO(data)) as im:
            return FORMAT_EXTENSIONS.get(im.format or "", ".png")
    except (UnidentifiedImageError, OSError, ValueError):
        return ".png"


def export_spec(bucket: BucketConfig, rows: Any) -> dict[str, Any]:
    return {"dataset_name": option(bucket, "dataset_name"), "split": option(bucket, "split", "train"),
            "revision": option(bucket, "revision"), "image_column": option(bucket, "image_column", "image"),
            "caption_column": option(bucket, "caption_column"),
            "fallback_caption_column": option(bucket, "fallback_caption_column"),
            "fingerprint": getattr(rows, "_fingerprint", None), "rows": len(rows)}


def materialise(project: Project, bucket: BucketConfig) -> Path:
    """The entry's folder of images and captions, exported now unless an identical export exists."""
    import json

    rows = load_rows(project, bucket)
    folder = export_folder(project, bucket)
    spec = export_spec(bucket, rows)
    marker = folder / MARKER
    try:
        if json.loads(marker.read_text(encoding="utf-8")) == spec:
            return folder
    except (OSError, ValueError):
        pass
    export(project, bucket, rows, folder)
    atomic.write_json(marker, spec)
    return folder


def export(project: Project, bucket: BucketConfig, rows: Any, folder: Path) -> None:
    """Write each row's image bytes as they are (a corrupt one is then reported per file by the scan)."""
    import datasets

    column = option(bucket, "image_column", "image")
    if column not in rows.column_names:
        raise DatasetError(f"data set has no image column '{column}' (columns: {', '.join(rows.column_names)})",
                           file=project.dataloader_path, key=f"{bucket.id}.image_column", value=column)
    if isinstance(rows.features[column], datasets.Image):
        rows = rows.cast_column(column, datasets.Image(decode=False))
    names = caption_columns(bucket, rows.column_names)
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.iterdir():
        if old.is_file():
            old.unlink()
    for index, row in enumerate(rows):
        data, path = image_bytes(row[column])
        if data is None:
            atomic.write_bytes(folder / f"{index}.missing", b"")  # reported by the scan as "not an image file"
            continue
        atomic.write_bytes(folder / f"{index}{extension_for(data, path)}", data)
        caption = caption_of(row, names)
        if caption is not None:
            atomic.write_text(folder / f"{index}.txt", caption)
