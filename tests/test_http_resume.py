"""A cut HTTP download is kept as a .part and resumed with a Range request (csv entries): only the rest
is fetched; a server that ignores Range (200) or a file that changed (new ETag / Last-Modified) is fetched
whole; a server without validators keeps no part."""
import csv
import http.server
import io
import json
import re
import threading

import numpy as np
import pytest
from PIL import Image

from sliderstudio.engine.csv_manifest import fetch_csv
from sliderstudio.engine.fetch_cache import FetchFailed
from sliderstudio.engine.http_resume import PART_DIR, PartFile, download
from sliderstudio.engine.project import load_project
from conftest import make_project


def png(seed: int, side: int = 160) -> bytes:
    """Noise compresses badly, so the file is big enough (~77 KB) for a cut half way to matter."""
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (side, side, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


class Site:
    """What the handler serves: one file, its validators, and how it misbehaves."""

    def __init__(self):
        self.body = png(1)
        self.etag = '"v1"'
        self.last_modified = "Wed, 02 Dec 2026 06:00:00 GMT"
        self.cut_next = 0           # cut this many following whole-file answers half way
        self.honour_range = True
        self.send_validators = True
        self.check_if_range = True  # False: a server that sends the range even when the file changed
        self.log: list[tuple[str | None, str | None, int, int]] = []  # (Range, If-Range, status, bytes sent)


class Handler(http.server.BaseHTTPRequestHandler):
    site: Site

    def log_message(self, *args):
        pass

    def do_GET(self):
        site = self.site
        want, cond = self.headers.get("Range"), self.headers.get("If-Range")
        match = re.fullmatch(r"bytes=(\d+)-", want or "")
        fresh = cond in (site.etag, site.last_modified) or not site.check_if_range
        if match and site.honour_range and fresh and int(match.group(1)) < len(site.body):
            start = int(match.group(1))
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(site.body) - 1}/{len(site.body)}")
            payload = site.body[start:]
        else:
            self.send_response(200)
            payload = site.body
        self.send_header("Content-Length", str(len(payload)))
        if site.send_validators:
            self.send_header("ETag", site.etag)
            self.send_header("Last-Modified", site.last_modified)
        self.end_headers()
        sent = payload
        if site.cut_next and len(payload) == len(site.body):
            site.cut_next -= 1
            sent = payload[: len(payload) // 2]
            self.close_connection = True
        self.wfile.write(sent)
        self.wfile.flush()
        site.log.append((want, cond, 200 if len(payload) == len(site.body) else 206, len(sent)))


@pytest.fixture
def site():
    state = Site()
    handler = type("H", (Handler,), {"site": state})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/face.png"
    yield state
    server.shutdown()
    server.server_close()


def project_with(tmp_path, url):
    root = make_project(tmp_path / "proj", "/no/model", pairs=0, neutral=1)
    with open(root / "pos.csv", "w", newline="") as fh:
        csv.writer(fh).writerows([("url", "caption"), (url, "a face")])
    (root / "multidatabackend.json").write_text(json.dumps([
        {"id": "pos", "type": "csv", "csv_file": "pos.csv", "slider_strength": 1.0},
        {"id": "neu", "instance_data_dir": "data/neu"}]))
    return load_project(root)


def fetch(project):
    lines = []
    fetched = fetch_csv(project, project.buckets[0], lambda msg, level: lines.append(msg))
    return fetched, lines


def test_a_cut_download_is_kept_and_resumed_with_a_range_request(tmp_path, site):
    project = project_with(tmp_path, site.url)
    site.cut_next = 1
    first, _ = fetch(project)
    half = len(site.body) // 2
    assert first.files == [] and "IncompleteRead" in first.problems[0][1]
    assert f"{half} of {len(site.body)} bytes; kept, the next run resumes it" in first.problems[0][1]
    folder = project.bucket_dir(project.buckets[0])
    part = folder / PART_DIR / "face.part"
    assert part.read_bytes() == site.body[:half]                       # the bytes that came are kept
    assert sorted(p.name for p in folder.iterdir()) == [PART_DIR]      # no half image for the scan to see
    second, lines = fetch(project)
    assert second.problems == [] and (folder / "face.png").read_bytes() == site.body
    assert site.log[-1] == (f"bytes={half}-", site.etag, 206, len(site.body) - half)  # only the rest travelled
    assert not (folder / PART_DIR).exists()                            # the part is gone once the file is whole
    assert f"{half / 1e6:.1f} MB of it kept from cut downloads" in lines[-1]


def test_a_server_that_ignores_range_sends_the_whole_file(tmp_path, site):
    project = project_with(tmp_path, site.url)
    site.cut_next, site.honour_range = 1, False
    fetch(project)
    again, _ = fetch(project)
    assert site.log[-1][0] is not None and site.log[-1][2:] == (200, len(site.body))  # asked a range, got 200
    assert (project.bucket_dir(project.buckets[0]) / "face.png").read_bytes() == site.body  # not spliced


@pytest.mark.parametrize("changed", ["etag", "both"])
def test_a_file_changed_since_the_cut_is_fetched_whole(tmp_path, site, changed):
    project = project_with(tmp_path, site.url)
    site.cut_next = 1
    fetch(project)
    site.body, site.etag = png(2), '"v2"'
    if changed == "both":
        site.last_modified = "Wed, 02 Dec 2026 06:30:00 GMT"
    again, _ = fetch(project)
    assert again.problems == [] and site.log[-1][2] == 200
    assert (project.bucket_dir(project.buckets[0]) / "face.png").read_bytes() == site.body


def test_a_server_that_sends_a_stale_range_anyway_is_fetched_whole(tmp_path, site):
    """If-Range ignored: the 206 carries the new ETag, so the part is dropped and the file fetched again."""
    part = PartFile.for_name(tmp_path, "face")
    part.start(site.url, {"etag": '"old"'})
    part.path.write_bytes(b"x" * 100)
    site.etag, site.check_if_range = '"new"', False
    got = download(site.url, part, {}, 10)
    assert got.data == site.body and got.resumed == 0 and not part.path.exists()
    assert [(r, status) for r, _, status, _ in site.log] == [("bytes=100-", 206), (None, 200)]


def test_without_a_validator_nothing_is_kept_and_the_next_run_fetches_whole(tmp_path, site):
    project = project_with(tmp_path, site.url)
    site.cut_next, site.send_validators = 1, False
    first, _ = fetch(project)
    folder = project.bucket_dir(project.buckets[0])
    assert "IncompleteRead" in first.problems[0][1] and "resumes" not in first.problems[0][1]
    assert not (folder / PART_DIR).exists()
    second, _ = fetch(project)
    assert site.log[-1][0] is None and (folder / "face.png").read_bytes() == site.body  # a plain full fetch
    with pytest.raises(FetchFailed, match="cannot connect"):
        download("http://127.0.0.1:9/x.png", PartFile.for_name(tmp_path, "x"), {}, 5)
