"""HTTP downloads that survive a dropped connection: the bytes so far stay in a .part file and the next
run asks only for the rest (`Range: bytes=N-`), so a large image on a flaky link is not fetched anew.

A part is kept only when the server named a validator (ETag or Last-Modified): the resume sends it as
`If-Range`, so a file that changed in between comes back whole (200) instead of being spliced from two
versions. A server that ignores Range also answers 200, and the part is simply rewritten from the
start. Parts live in a hidden `.partial/` folder of the cache, which the folder scan skips; the
finished file is published atomically by the caller, and only then is its part removed.
"""
from __future__ import annotations

import http.client
import json
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from sliderstudio.kernel import atomic
from sliderstudio.engine.fetch_cache import FetchFailed

PART_DIR = ".partial"
CHUNK = 256 * 1024
CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


@dataclass(frozen=True)
class Download:
    """A complete body, and how much of it came from a kept part instead of the network."""

    data: bytes
    resumed: int = 0

    @property
    def transferred(self) -> int:
        return len(self.data) - self.resumed


@dataclass(frozen=True)
class PartFile:
    """`<cache>/.partial/<name>.part` and its validator record `<name>.part.json`."""

    path: Path

    @classmethod
    def for_name(cls, folder: Path, name: str) -> "PartFile":
        return cls(folder / PART_DIR / f"{name}.part")

    @property
    def meta(self) -> Path:
        return self.path.with_name(self.path.name + ".json")

    def kept(self, url: str) -> tuple[int, dict[str, str]]:
        """(bytes kept, validators) of an earlier download of `url`; (0, {}) when there is nothing to resume."""
        try:
            record = json.loads(self.meta.read_text(encoding="utf-8"))
            size = self.path.stat().st_size
        except (OSError, ValueError):
            return 0, {}
        validators = {k: v for k, v in record.get("validators", {}).items() if v}
        if record.get("url") != url or not validators or size <= 0:
            return 0, {}
        return size, validators

    def start(self, url: str, validators: dict[str, str]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic.write_json(self.meta, {"url": url, "validators": validators})

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)
        self.meta.unlink(missing_ok=True)


class Restart(Exception):
    """The kept part cannot be continued (the server sent another range or another file): fetch it whole."""


def tidy(folder: Path) -> None:
    """Remove the cache's `.partial/` once no part waits there (after a fetch, when no thread writes)."""
    try:
        (folder / PART_DIR).rmdir()
    except OSError:
        pass  # absent, or parts kept for the next run


def validators_of(headers: http.client.HTTPMessage) -> dict[str, str]:
    return {k: v for k, v in (("etag", headers.get("ETag")), ("last_modified", headers.get("Last-Modified")))
            if v}


def same_file(kept: dict[str, str], now: dict[str, str]) -> bool:
    """The validators agree: the strongest one both sides have decides (ETag before Last-Modified)."""
    for key in ("etag", "last_modified"):
        if key in kept and key in now:
            return kept[key] == now[key]
    return False


def range_start(headers: http.client.HTTPMessage) -> tuple[int, int | None] | None:
    """(first byte, total or None) of a 206's Content-Range."""
    match = CONTENT_RANGE.fullmatch((headers.get("Content-Range") or "").strip())
    if not match:
        return None
    return int(match.group(1)), None if match.group(3) == "*" else int(match.group(3))


def open_url(url: str, headers: dict[str, str], timeout: float) -> http.client.HTTPResponse:
    try:
        return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as exc:
        exc.close()
        raise FetchFailed(f"HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise FetchFailed(f"cannot connect ({exc.reason})") from None
    except (TimeoutError, OSError, http.client.HTTPException) as exc:
        raise FetchFailed(f"download failed ({type(exc).__name__})") from None


def download(url: str, part: PartFile, headers: dict[str, str], timeout: float) -> Download:
    """The whole body of `url`, resuming a kept part; FetchFailed says why (and whether a part was kept)."""
    have, kept = part.kept(url)
    if have:
        resume = {"Range": f"bytes={have}-", "If-Range": kept.get("etag") or kept["last_modified"]}
        try:
            return receive(url, part, open_url(url, {**headers, **resume}, timeout), have, kept)
        except FetchFailed as exc:
            if "HTTP 416" not in str(exc):  # 416: the part is not a prefix of this file any more
                raise
        except Restart:
            pass
        part.discard()
    return receive(url, part, open_url(url, headers, timeout), 0, {})


def receive(url: str, part: PartFile, response: http.client.HTTPResponse, have: int,
            kept: dict[str, str]) -> Download:
    """Stream the response into the part (appending to a resumable one), then return the whole file."""
    with response:
        validators = validators_of(response.headers)
        span = range_start(response.headers) if response.status == 206 else None
        resumed = have if span is not None and span[0] == have and same_file(kept, validators) else 0
        if response.status == 206 and not resumed:
            if have:
                raise Restart
            raise FetchFailed("the server sent part of the file to a whole-file request")
        length = response.headers.get("Content-Length")
        expected = span[1] if span else (int(length) if length and length.isdigit() else None)
        if validators:
            part.start(url, validators)
        else:
            part.discard()  # nothing to validate a resume with: a cut download starts again next time
            part.path.parent.mkdir(parents=True, exist_ok=True)
        size, whole = stream(response, part.path, resumed)
    if not whole or (expected is not None and size != expected):
        if not validators:
            part.discard()
        kept_note = "; kept, the next run resumes it" if validators else ""
        raise FetchFailed(f"download failed (IncompleteRead: {size} of {expected or '?'} bytes{kept_note})")
    data = part.path.read_bytes()
    part.discard()
    return Download(data, resumed)


def stream(response: http.client.HTTPResponse, path: Path, resumed: int) -> tuple[int, bool]:
    """Append (resumed) or write the body to `path` chunk by chunk: (its size, whether the body ended cleanly).

    A cut keeps what came; http.client reports a cut length-delimited body as a short read, not an error,
    so the caller also compares the size with Content-Length / Content-Range.
    """
    whole = True
    with open(path, "ab" if resumed else "wb") as fh:
        try:
            while chunk := response.read(CHUNK):
                fh.write(chunk)
        except (TimeoutError, OSError, http.client.HTTPException):
            whole = False
        fh.flush()
        return fh.tell(), whole
