"""An S3 object's ETag kept beside its cached copy (`.<name>.etag`), so the cache knows which version it holds.

S3 reports LastModified in whole seconds, so size and time alone miss a same-size rewrite within one
second; the ETag changes with the content. The file is hidden (a leading dot), so the folder scan
never sees it, and it is written after the object's bytes: a crash between the two leaves no ETag,
never an old ETag beside new bytes.
"""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

from sliderstudio.kernel import atomic

PLAIN_MD5 = re.compile(r"[0-9a-f]{32}")


def etag_path(cached: Path) -> Path:
    return cached.with_name(f".{cached.name}.etag")


def read(cached: Path) -> str | None:
    try:
        return etag_path(cached).read_text(encoding="utf-8").strip() or None
    except (OSError, UnicodeDecodeError):
        return None


def write(cached: Path, etag: str) -> None:
    atomic.write_text(etag_path(cached), etag)


def forget(cached: Path) -> None:
    etag_path(cached).unlink(missing_ok=True)


def matches_content(cached: Path, etag: str) -> bool | None:
    """A single-part upload's ETag is the MD5 of its bytes: compare; None when the ETag is not one (multipart)."""
    plain = etag.strip('"').lower()
    if not PLAIN_MD5.fullmatch(plain):
        return None
    digest = hashlib.md5(usedforsecurity=False)
    try:
        with open(cached, "rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
    except OSError:
        return False
    return digest.hexdigest() == plain
