"""Fetch throughput of the csv and aws dataloader backends on loopback, and what a re-run fetches.

Serves N generated JPEG images (512×512, ~40 KB each) from a local HTTP server (csv) and from moto's S3
server (aws), both on 127.0.0.1, scans a project that lists them, then scans it again. Prints images/s
for the first scan and the fetched/cached counts of both. Nothing leaves the machine.

    python benchmarks/remote_fetch.py [--images 200]
"""
from __future__ import annotations

import argparse
import csv
import http.server
import io
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sliderstudio.engine.buckets import scan_project  # noqa: E402
from sliderstudio.engine.project import load_project  # noqa: E402


def jpeg(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    image = Image.fromarray(base).resize((512, 512), Image.Resampling.BILINEAR)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


def project(root: Path, entry: dict) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.json").write_text(json.dumps({"pretrained_model_name_or_path": "sliderstudio:toy",
                                                  "data_backend_config": "multidatabackend.json"}))
    (root / "multidatabackend.json").write_text(json.dumps([{"id": "pos", "slider_strength": 1.0, **entry}]))
    return root


def timed_scan(root: Path) -> tuple[float, list[str], int]:
    lines: list[str] = []
    start = time.perf_counter()
    scanned = scan_project(load_project(root), check_images=False, log=lambda m, level: lines.append(m))
    return time.perf_counter() - start, [m for m in lines if "images:" in m], scanned[0].count


def run_csv(work: Path, images: list[bytes]) -> None:
    site = work / "site"
    site.mkdir()
    for i, data in enumerate(images):
        (site / f"img{i}.jpg").write_bytes(data)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: Quiet(*a, directory=str(site)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    root = project(work / "csv", {"type": "csv", "csv_file": "list.csv"})
    with open(root / "list.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["url", "caption"])
        writer.writerows((f"{url}/img{i}.jpg", f"caption {i}") for i in range(len(images)))
    report("csv", root, len(images))
    server.shutdown()


def run_aws(work: Path, images: list[bytes]) -> None:
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="k", aws_secret_access_key="s",
                          region_name="us-east-1")
    client.create_bucket(Bucket="bench")
    for i, data in enumerate(images):
        client.put_object(Bucket="bench", Key=f"train/img{i}.jpg", Body=data)
        client.put_object(Bucket="bench", Key=f"train/img{i}.txt", Body=f"caption {i}".encode())
    root = project(work / "aws", {"type": "aws", "aws_bucket_name": "bench", "aws_data_prefix": "train/",
                                  "aws_endpoint_url": endpoint, "aws_access_key_id": "k",
                                  "aws_secret_access_key": "s"})
    report("aws", root, len(images))
    server.stop()


def report(name: str, root: Path, n: int) -> None:
    first, lines, count = timed_scan(root)
    again, lines2, _ = timed_scan(root)
    print(f"{name}: {count}/{n} images; first scan {first:.2f} s ({n / first:.1f} images/s incl. listing); "
          f"re-run {again:.2f} s")
    print(f"  first : {lines[-1]}")
    print(f"  re-run: {lines2[-1]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=200)
    args = ap.parse_args()
    images = [jpeg(i) for i in range(args.images)]
    print(f"{len(images)} JPEGs, {sum(map(len, images)) / len(images) / 1e3:.0f} KB each on average")
    with tempfile.TemporaryDirectory() as tmp:
        run_csv(Path(tmp), images)
        run_aws(Path(tmp), images)


if __name__ == "__main__":
    main()
