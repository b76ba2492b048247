"""Remote images fetched once into a local cache folder (the `csv` and `aws` dataloader backends).

Both remote backends become a plain folder, so scanning, aspect buckets, pairing by stem and the
latent cache work on them unchanged. A file appears in the cache only complete (an atomic write), so
an interrupted fetch resumes by fetching only what is missing and a re-run fetches nothing. Progress
goes to the run log as a line every few seconds, not one per file; a row or object that cannot be
fetched becomes one named problem (like an unreadable image), never the end of the run.
"""
from __future__ import annotations

import hashlib
import io
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, TypeVar

from PIL import Image, UnidentifiedImageError

from sliderstudio.kernel import atomic

Logger = Callable[[str, str], None]
PROGRESS_EVERY_S = 2.0
FETCH_WORKERS = 8  # downloads wait on the network, not the CPU: a few in flight hide each one's latency
T = TypeVar("T")
R = TypeVar("R")


class FetchFailed(Exception):
    """One row or object could not be fetched; the message says why (HTTP 404, no such file…)."""


@dataclass
class Fetched:
    """What a remote backend hands to the scan: its cache folder, the files of this run, and problems."""

    folder: Path
    files: list[tuple[Path, str]] = field(default_factory=list)  # (cached image, stem), in source order
    problems: list[tuple[Path, str]] = field(default_factory=list)  # (what, why), becomes buckets.Problem


@dataclass
class FetchProgress:
    """Counts a fetch and logs a progress line at most every PROGRESS_EVERY_S, then a summary."""

    label: str
    total: int
    log: Logger | None = None
    fetched: int = 0
    reused: int = 0
    failed: int = 0
    bytes: int = 0
    resumed: int = 0  # bytes of cut downloads not fetched again (engine/http_resume.py)
    started: float = field(default_factory=time.perf_counter)
    _last: float = field(default_factory=time.perf_counter)

    def add(self, fetched: bool, size: int = 0, resumed: int = 0) -> None:
        if fetched:
            self.fetched += 1
            self.bytes += size
            self.resumed += resumed
        else:
            self.reused += 1
        self._maybe_report()

    def fail(self) -> None:
        self.failed += 1
        self._maybe_report()

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.started

    def _maybe_report(self) -> None:
        now = time.perf_counter()
        if self.log is None or now - self._last < PROGRESS_EVERY_S:
            return
        self._last = now
        done = self.fetched + self.reused + self.failed
        self.log(f"{self.label}: {done}/{self.total} images ({self.fetched} fetched, {self.reused} cached, "
                 f"{self.failed} skipped)", "info")

    def summary(self) -> str:
        rate = f", {self.fetched / self.seconds:.1f} images/s" if self.fetched and self.seconds > 0 else ""
        resumed = f", {self.resumed / 1e6:.1f} MB of it kept from cut downloads" if self.resumed else ""
        return (f"{self.label}: {self.total} images: {self.fetched} fetched ({self.bytes / 1e6:.1f} MB{rate}"
                f"{resumed}), {self.reused} already cached, {self.failed} skipped")

    def finish(self) -> None:
        if self.log is not None:
            self.log(self.summary(), "info")


def require_image(data: bytes) -> None:
    """Refuse bytes that are not an image (an HTML error page served with status 200), before caching."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.size  # noqa: B018 - the header parsed
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise FetchFailed(f"not an image ({type(exc).__name__})") from None


def store(target: Path, data: bytes) -> int:
    """Publish fetched bytes atomically: a crash leaves the file whole or absent, never half-written."""
    atomic.write_bytes(target, data)
    return len(data)


def write_caption(target: Path, caption: str | None) -> None:
    """The caption as `<stem>.txt`, rewritten only when it changed; none removes a stale one."""
    if not caption:
        target.unlink(missing_ok=True)
        return
    try:
        if target.read_text(encoding="utf-8") == caption:
            return
    except (OSError, UnicodeDecodeError):
        pass
    atomic.write_text(target, caption)


def in_parallel(items: Iterable[T], work: Callable[[T], R], workers: int = FETCH_WORKERS) -> Iterator[R]:
    """`work` on each item by a few threads; the results come back in the items' order."""
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fetch") as pool:
        yield from pool.map(work, items)


def short_hash(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:8]
