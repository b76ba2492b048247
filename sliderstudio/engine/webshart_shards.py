"""`"type": "webshart"` entries: WebDataset tar shards with webshart's JSON index, exported once into a folder.

SimpleTuner reads these through the `webshart` package: `source` is a local folder of `.tar` shards
or a Hugging Face dataset repo, `metadata` an optional separate place for the `.json` index (one per
shard), `hf_token` / `subfolder` for the Hub; each key may also sit in a `webshart` block. A sample's
caption is the index's `captions` (a string or a list), else the `.txt` member of the same name.

Like the other non-folder backends, the samples become plain files under `cache/webshart/<id>/`
(`<name>.<ext>` + `<name>.txt`, one caption per line), so scanning, aspect buckets, pairing by stem
and the latent cache work unchanged. A cached file is rewritten only when its bytes changed.
Local shards without an index get one built by webshart into `cache/webshart/<id>/.index/` (the
user's shard folder is never written). A Hub source needs the network: offline it fails at once
with exit 2 saying how to make a local copy.
"""
from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

from sliderstudio.kernel import atomic
from sliderstudio.config.config import BucketConfig
from sliderstudio.kernel.errors import DatasetError
from sliderstudio.engine.fetch_cache import Fetched, FetchFailed, FetchProgress, Logger, require_image, write_caption
from sliderstudio.engine.project import Project
from sliderstudio.config.sample_cap import capped

INDEX_DIR = ".index"  # hidden: the folder scan skips it
BLOCK_KEYS = ("source", "metadata", "hf_token", "subfolder")


def option(bucket: BucketConfig, key: str) -> Any:
    """A top-level key, else the same key in the `webshart` block (SimpleTuner reads both)."""
    value = getattr(bucket, key, None)
    return value if value is not None else (bucket.webshart or {}).get(key)


def entry_error(project: Project, bucket: BucketConfig, key: str, message: str) -> DatasetError:
    value = "(hidden)" if key == "hf_token" else option(bucket, key)
    return DatasetError(message, file=project.dataloader_path, key=f"{bucket.id}.{key}", value=value)


def require_webshart(project: Project, bucket: BucketConfig) -> Any:
    try:
        import webshart
    except ImportError:
        raise entry_error(project, bucket, "type", "this Slider Studio has no webshart support (the 'webshart' "
                          "package is not installed): pip install webshart==0.4.6, or unpack the shards "
                          "(`tar -xf`) into a folder of images + .txt captions and use \"type\": \"local\"") from None
    return webshart


def local_source(project: Project, bucket: BucketConfig) -> Path | None:
    """The shard folder when `source` names one (relative to the project), else None (a Hub repo id)."""
    source = str(option(bucket, "source"))
    path = project.resolve(source)
    if path.is_dir():
        return path
    looks_local = source.startswith((".", "/", "~")) or "\\" in source or source.count("/") != 1 or \
        path.parent.is_dir()  # "shards/missing" under the project is a folder, "owner/name" a repo id
    if looks_local:
        raise entry_error(project, bucket, "source", f"no such shard folder ({path})")
    return None


def offline_error(project: Project, bucket: BucketConfig, why: str) -> DatasetError:
    repo = option(bucket, "source")
    return entry_error(project, bucket, "source", (
        f"webshart source '{repo}' is a Hugging Face dataset repo and it cannot be reached ({why}). Where there "
        f"is network, download it: `hf download {repo} --repo-type dataset --local-dir data/{bucket.id}` (the "
        f".tar shards and their .json index), copy that folder here and set \"source\": \"data/{bucket.id}\"; "
        "or unpack the shards into a folder of images + .txt captions and use \"type\": \"local\""))


def open_dataset(project: Project, bucket: BucketConfig, folder: Path) -> Any:
    """webshart's DiscoveredDataset for the entry; every failure is exit 2 naming the key to fix."""
    webshart = require_webshart(project, bucket)
    shards = local_source(project, bucket)
    metadata = option(bucket, "metadata")
    if metadata is not None and project.resolve(str(metadata)).is_dir():
        metadata = str(project.resolve(str(metadata)))
    if shards is None:
        from sliderstudio.engine.hf_datasets import env_offline, hub_reachable

        if env_offline():
            raise offline_error(project, bucket, "HF_HUB_OFFLINE is set")
        if not hub_reachable():
            raise offline_error(project, bucket, "the Hub does not answer")
        where, key = str(option(bucket, "source")), "source"
    else:
        tars = sorted(shards.glob("*.tar"))
        if not tars:
            raise entry_error(project, bucket, "source", f"no .tar shards in {shards}")
        if metadata is None and not all(t.with_suffix(".json").is_file() for t in tars):
            metadata = build_index(webshart, project, bucket, shards, folder / INDEX_DIR)
        where, key = str(shards), "source"
    try:
        dataset = webshart.discover_dataset(where, hf_token=option(bucket, "hf_token"),
                                            subfolder=option(bucket, "subfolder"), metadata=metadata)
        if dataset.is_remote:  # SimpleTuner's caches: each index and shard is downloaded once
            dataset.enable_metadata_cache(location=str(folder / ".metadata_cache"))
            dataset.enable_shard_cache(location=str(folder / ".shard_cache"),
                                       cache_limit_gb=float((bucket.webshart or {}).get("shard_cache_gb", 25.0)))
    except Exception as exc:  # noqa: BLE001 - the Rust core raises plain Exception/RuntimeError
        raise entry_error(project, bucket, "metadata" if metadata and "metadata" in str(exc).lower() else key,
                          f"webshart cannot open the shards ({type(exc).__name__}: {exc})") from None
    return dataset


def build_index(webshart: Any, project: Project, bucket: BucketConfig, shards: Path, index: Path) -> str:
    """webshart's index for unindexed local shards, kept in the cache (rebuilt when a shard changed)."""
    stamp = {t.name: [t.stat().st_size, t.stat().st_mtime_ns] for t in sorted(shards.glob("*.tar"))}
    marker = index / ".shards.stamp"
    try:
        import json

        if json.loads(marker.read_text(encoding="utf-8")) == stamp:
            return str(index)
    except (OSError, ValueError):
        pass
    index.mkdir(parents=True, exist_ok=True)
    for old in index.glob("*.json"):
        old.unlink()
    try:
        webshart.MetadataExtractor().extract_metadata(source=str(shards), destination=str(index.resolve()),
                                                      include_image_geometry=True)
    except Exception as exc:  # noqa: BLE001
        raise entry_error(project, bucket, "source", f"webshart cannot index the shards in {shards} "
                          f"({type(exc).__name__}: {exc})") from None
    atomic.write_json(marker, stamp)
    return str(index)


def list_images(dataset: Any) -> tuple[list[tuple[int, int, str]], list[tuple[Path, str]], dict[tuple[int, str], int]]:
    """(images as (shard, sample index, name), problems, every member's index by (shard, name))."""
    from sliderstudio.engine.buckets import IMAGE_EXTENSIONS

    images, problems, members, seen = [], [], {}, {}
    for shard in range(dataset.num_shards):
        for index, name in enumerate(dataset.list_samples_in_shard(shard)):
            members[(shard, name)] = index
            rel = PurePosixPath(name)
            if rel.suffix.lower() not in IMAGE_EXTENSIONS:
                continue
            if rel.is_absolute() or any(p in ("..", ".") for p in rel.parts) or rel.name.startswith("."):
                problems.append((Path(name), f"shard {shard}: not a plain file name (skipped)"))
                continue
            stem = rel.with_suffix("").as_posix()
            if stem in seen:
                problems.append((Path(name), f"shard {shard}: the name is already used in shard {seen[stem]} "
                                             "(skipped; pairs match by name)"))
                continue
            seen[stem] = shard
            images.append((shard, index, name))
    return images, problems, members


def caption_of(entry: Any, loader: Any, members: dict[tuple[int, str], int], shard: int, name: str) -> str | None:
    """The index's `captions` (a list becomes one caption per line), else the shard's `<name>.txt`."""
    captions = getattr(entry, "captions", None)
    if isinstance(captions, (list, tuple)):
        lines = [" ".join(str(c).split()) for c in captions if c is not None and str(c).strip()]
        if lines:
            return "\n".join(lines)
    elif captions and str(captions).strip():
        return str(captions).strip()
    txt = members.get((shard, PurePosixPath(name).with_suffix(".txt").as_posix()))
    if txt is None:
        return None
    text = bytes(loader.load_sample(shard, txt).data).decode("utf-8", errors="replace").strip()
    return text or None


def export_shards(project: Project, bucket: BucketConfig, log: Logger | None = None) -> Fetched:
    """Every image sample of the shards in the cache folder (rewriting only what changed), captions beside."""
    folder = project.bucket_dir(bucket)
    dataset = open_dataset(project, bucket, folder)
    webshart = require_webshart(project, bucket)
    loader = webshart.TarDataLoader(dataset, load_file_data=True)
    images, problems, members = list_images(dataset)
    images = capped(images, bucket.max_num_samples, project.config.seed,
                    lambda item: PurePosixPath(item[2]).with_suffix("").as_posix())
    fetched = Fetched(folder, problems=problems)
    progress = FetchProgress(f"webshart '{bucket.id}'", len(images), log)
    for shard, index, name in images:
        target = folder / Path(*PurePosixPath(name).parts)
        try:
            size = export_sample(loader, members, shard, index, name, target)
        except FetchFailed as exc:
            fetched.problems.append((Path(name), f"shard {shard}: {exc} (skipped)"))
            progress.fail()
            continue
        progress.add(size is not None, size or 0)
        fetched.files.append((target, PurePosixPath(name).with_suffix("").as_posix()))
    progress.finish()
    return fetched


def export_sample(loader: Any, members: dict[tuple[int, str], int], shard: int, index: int, name: str,
                  target: Path) -> int | None:
    """Bytes written, or None when the cached file already has the sample's size (its caption is refreshed)."""
    try:
        entry = loader.load_sample(shard, index)
        data = bytes(entry.data)
    except Exception as exc:  # noqa: BLE001 - a damaged shard member is one problem, not the end of the run
        raise FetchFailed(f"cannot read the sample ({type(exc).__name__}: {exc})") from None
    written = None
    try:
        current = target.stat().st_size == len(data) and target.read_bytes() == data
    except OSError:
        current = False
    if not current:
        require_image(data)
        atomic.write_bytes(target, data)
        written = len(data)
    write_caption(target.with_suffix(".txt"), caption_of(entry, loader, members, shard, name))
    return written
