"""SimpleTuner's `caption_strategy: "parquet"`: captions from a parquet or JSON-lines table, keyed by file.

Large data sets keep their captions in one table instead of thousands of .txt files. The `parquet`
block names the table (`path`), the column holding each image's identifier (`filename_column`), the
caption column (a string or a list of captions: the first non-empty one is used) and an optional
`fallback_caption_column`. Identifiers name the file without its extension unless
`identifier_includes_extension` is true. Image sizes are still read from the files' headers.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sliderstudio.config.config import BucketConfig
from sliderstudio.kernel.errors import DatasetError


def table_path(bucket: BucketConfig, project_root: Path, folder: Path) -> Path:
    """The table, relative to the project (as every project path is), else to the image folder."""
    raw = Path(str((bucket.parquet or {}).get("path", ""))).expanduser()
    if raw.is_absolute():
        return raw
    for base in (project_root, folder):
        if (base / raw).exists():
            return base / raw
    return project_root / raw


def read_rows(path: Path, key: str) -> list[dict[str, Any]]:
    if not path.is_file():
        raise DatasetError("caption table not found", file=path, key=f"{key}.parquet.path")
    try:
        if path.suffix.lower() in (".jsonl", ".json"):
            lines = path.read_text(encoding="utf-8").splitlines()
            return [json.loads(line) for line in lines if line.strip()]
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    except Exception as exc:  # noqa: BLE001 - a damaged table is the user's input, named with its path
        raise DatasetError(f"cannot read the caption table ({type(exc).__name__}: {exc})", file=path,
                           key=f"{key}.parquet.path") from None


def first_text(value: Any) -> str | None:
    if isinstance(value, (list, tuple)):
        value = next((v for v in value if isinstance(v, str) and v.strip()), None)
    return value.strip() if isinstance(value, str) and value.strip() else None


def load_captions(bucket: BucketConfig, project_root: Path, folder: Path) -> dict[str, str]:
    """identifier → caption (identifier: file name with extension, or the stem, as configured)."""
    block = bucket.parquet or {}
    key = bucket.id
    path = table_path(bucket, project_root, folder)
    rows = read_rows(path, key)
    name_col = block.get("filename_column", "filename")
    caption_col = block.get("caption_column", "caption")
    fallback_col = block.get("fallback_caption_column")
    if rows and name_col not in rows[0]:
        raise DatasetError(f"the caption table has no column '{name_col}' (columns: {', '.join(rows[0])})",
                           file=path, key=f"{key}.parquet.filename_column", value=name_col)
    captions = {}
    for row in rows:
        text = first_text(row.get(caption_col)) or (first_text(row.get(fallback_col)) if fallback_col else None)
        if text is not None and row.get(name_col) is not None:
            captions[str(row[name_col])] = text
    return captions


def identifier(path: Path, bucket: BucketConfig) -> str:
    return path.name if (bucket.parquet or {}).get("identifier_includes_extension") else path.stem
