"""`"type": "csv"` entries: a table of image URLs (or local paths) and captions, fetched into csv_cache_dir.

SimpleTuner's keys: `csv_file` (the table), `csv_url_column` (default `url`), `csv_caption_column`
(default `caption`), `csv_cache_dir` (where images are kept; Slider Studio defaults it to
`cache/csv/<entry id>`). Each row's image is stored as `<name>.<ext>`, `<name>` being the URL's file
name (so a positive and a negative table listing `img0.png` pair by stem), with its caption beside it
as `<name>.txt`. An http(s) URL is fetched once (a cut download resumes with a Range request next
run, engine/http_resume.py); a path (absolute, `file://`, or relative to the table's folder) is copied
once. A bad row is reported by row number and skipped.
"""
from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlparse

from sliderstudio.config.config import BucketConfig
from sliderstudio.kernel.errors import DatasetError
from sliderstudio.engine.fetch_cache import (
    Fetched, FetchFailed, FetchProgress, Logger, in_parallel, require_image, short_hash, store, write_caption,
)
from sliderstudio.engine.http_resume import Download, PartFile, download, tidy
from sliderstudio.engine.project import Project
from sliderstudio.config.sample_cap import capped

TIMEOUT_S = 30.0
USER_AGENT = "SliderStudio (SimpleTuner csv backend)"
SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class Row:
    line: int  # line of the table (the header is line 1), as an editor shows it
    source: str
    caption: str | None


def table_path(project: Project, bucket: BucketConfig) -> Path:
    return project.resolve(bucket.csv_file or "")


def needs_captions(bucket: BucketConfig) -> bool:
    """The caption column must exist when the captions are read from it (csv, or textfile on the cache)."""
    return bucket.caption_strategy in ("csv", "textfile")


def read_rows(project: Project, bucket: BucketConfig) -> list[Row]:
    """The table's rows; a missing table or column is an error naming the entry's key and value."""
    path = table_path(project, bucket)
    where = project.dataloader_path
    if not path.is_file():
        raise DatasetError(f"csv_file not found ({path})", file=where, key=f"{bucket.id}.csv_file",
                           value=bucket.csv_file)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"csv_file cannot be read ({exc})", file=where, key=f"{bucket.id}.csv_file",
                           value=bucket.csv_file) from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    columns = list(reader.fieldnames or [])
    wanted = [("csv_url_column", bucket.csv_url_column)]
    if needs_captions(bucket):
        wanted.append(("csv_caption_column", bucket.csv_caption_column))
    for key, column in wanted:
        if column not in columns:
            raise DatasetError(f"{path.name} has no column '{column}' (its columns: {', '.join(columns) or 'none'})",
                               file=where, key=f"{bucket.id}.{key}", value=column)
    try:
        return [Row(reader.line_num, (rec.get(bucket.csv_url_column) or "").strip(),
                    one_line(rec.get(bucket.csv_caption_column))) for rec in reader]
    except csv.Error as exc:
        raise DatasetError(f"{path.name} is not a readable table (line {reader.line_num}: {exc})", file=where,
                           key=f"{bucket.id}.csv_file", value=bucket.csv_file) from None


def one_line(caption: str | None) -> str | None:
    """A cell's caption as one line: a line break in a cell would otherwise read as a second caption."""
    return " ".join(caption.split()) if caption else None


def base_name(source: str) -> str:
    """The file name a URL or path ends in, made safe for any file system."""
    path = unquote(urlparse(source).path) if is_url(source) or source.startswith("file://") else source
    name = PurePosixPath(path.replace("\\", "/")).name
    return SAFE_NAME.sub("_", name).strip("._")


def is_url(source: str) -> bool:
    return urlparse(source).scheme in ("http", "https")


def stems_for(rows: list[Row]) -> list[str]:
    """One stem per row: the source's file name; a repeated one gets a hash of its source (stable)."""
    from sliderstudio.engine.buckets import IMAGE_EXTENSIONS

    seen: set[str] = set()
    out = []
    for row in rows:
        name = base_name(row.source)
        stem = name[: -len(PurePosixPath(name).suffix)] if PurePosixPath(name).suffix.lower() in IMAGE_EXTENSIONS \
            else name
        stem = stem or f"row{row.line}"
        if stem in seen:
            stem = f"{stem}-{short_hash(row.source)}"
        seen.add(stem)
        out.append(stem)
    return out


def read_source(source: str, table_dir: Path, part: PartFile) -> Download:
    """The bytes of a URL (resuming a cut download kept in `part`) or a local file; FetchFailed says why."""
    if is_url(source):
        return download(source, part, {"User-Agent": USER_AGENT}, TIMEOUT_S)
    if urlparse(source).scheme not in ("", "file") and not re.match(r"^[A-Za-z]:[\\/]", source):
        raise FetchFailed(f"unsupported URL scheme '{urlparse(source).scheme}' (http, https or a file path)")
    path = Path(unquote(urlparse(source).path)) if source.startswith("file://") else Path(source)
    path = path if path.is_absolute() else table_dir / path
    try:
        return Download(path.read_bytes())
    except OSError as exc:
        raise FetchFailed(f"cannot read {path} ({exc.strerror or exc})") from None


def cached_file(folder: Path, stem: str, source: str) -> Path | None:
    """The complete file a previous run stored for this stem, if any (any image extension)."""
    from sliderstudio.engine.buckets import IMAGE_EXTENSIONS

    suffix = PurePosixPath(base_name(source)).suffix.lower()
    candidates = [suffix] if suffix in IMAGE_EXTENSIONS else sorted(IMAGE_EXTENSIONS)
    return next((folder / f"{stem}{ext}" for ext in candidates if (folder / f"{stem}{ext}").is_file()), None)


def fetch_row(row: Row, stem: str, folder: Path, table_dir: Path) -> tuple[Path, Download | None]:
    """(cached image, what was fetched or None when it was cached already)."""
    from sliderstudio.engine.buckets import IMAGE_EXTENSIONS
    from sliderstudio.engine.hf_datasets import extension_for

    if not row.source:
        raise FetchFailed("empty URL cell")
    found = cached_file(folder, stem, row.source)
    if found is not None:
        return found, None
    fetched = read_source(row.source, table_dir, PartFile.for_name(folder, stem))
    require_image(fetched.data)
    suffix = PurePosixPath(base_name(row.source)).suffix.lower()
    target = folder / f"{stem}{suffix if suffix in IMAGE_EXTENSIONS else extension_for(fetched.data, None)}"
    store(target, fetched.data)
    return target, fetched


def fetch_csv(project: Project, bucket: BucketConfig, log: Logger | None = None) -> Fetched:
    """Every row's image in the cache folder (fetching what is missing) and its caption beside it."""
    rows = read_rows(project, bucket)
    table = table_path(project, bucket)
    folder = project.bucket_dir(bucket)  # csv_cache_dir, or cache/<type>/<id>
    if folder.exists() and not folder.is_dir():
        raise DatasetError("csv_cache_dir is not a folder", file=project.dataloader_path,
                           key=f"{bucket.id}.csv_cache_dir", value=bucket.csv_cache_dir)
    folder.mkdir(parents=True, exist_ok=True)
    chosen = capped(list(zip(rows, stems_for(rows))), bucket.max_num_samples, project.config.seed, lambda r: r[1])
    fetched = Fetched(folder)
    progress = FetchProgress(f"csv '{bucket.id}'", len(chosen), log)

    def attempt(item: tuple[Row, str]) -> tuple[Path, Download | None] | FetchFailed:
        try:
            return fetch_row(item[0], item[1], folder, table.parent)
        except FetchFailed as exc:
            return exc

    for (row, stem), result in zip(chosen, in_parallel(chosen, attempt)):
        if isinstance(result, FetchFailed):
            fetched.problems.append((table, f"line {row.line} ({row.source or 'no URL'}): {result} (skipped)"))
            progress.fail()
            continue
        path, got = result
        progress.add(got is not None, got.transferred if got else 0, got.resumed if got else 0)
        write_caption(folder / f"{stem}.txt", row.caption)
        fetched.files.append((path, stem))
    tidy(folder)
    progress.finish()
    return fetched

