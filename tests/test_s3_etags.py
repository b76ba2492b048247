"""aws entries know which version of an object they cached: its ETag, kept beside the file, catches a
same-size rewrite within the same second (S3's LastModified has whole seconds); a cache from before the
ETag was kept is checked by MD5, not fetched again."""
import io
import json
import os

import pytest
from PIL import Image

from conftest import make_project
from sliderstudio.engine import object_etags
from sliderstudio.engine.buckets import scan_project
from sliderstudio.engine.project import load_project


@pytest.fixture(scope="module")
def s3():
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    import boto3

    client = boto3.client("s3", endpoint_url=f"http://{host}:{port}", aws_access_key_id="test",
                          aws_secret_access_key="test", region_name="us-east-1")
    client.create_bucket(Bucket="etag-data")
    yield client, f"http://{host}:{port}"
    server.stop()


def bmp(colour) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), colour).save(buf, "BMP")
    return buf.getvalue()


def project(tmp_path, endpoint, prefix):
    root = make_project(tmp_path / "proj", "/no/model", pairs=0, neutral=1)
    (root / "multidatabackend.json").write_text(json.dumps([
        {"id": "pos", "type": "aws", "aws_bucket_name": "etag-data", "aws_data_prefix": prefix,
         "aws_endpoint_url": endpoint, "aws_region_name": "us-east-1", "aws_access_key_id": "test",
         "aws_secret_access_key": "test", "slider_strength": 1.0},
        {"id": "neu", "instance_data_dir": "data/neu"}]))
    return root


def scan(root):
    lines = []
    by_id = {s.bucket.id: s for s in scan_project(load_project(root), log=lambda m, level: lines.append(m))}
    return by_id["pos"], next(m for m in lines if m.startswith("aws 'pos': 1 images:"))


def test_a_same_size_rewrite_in_the_same_second_is_fetched_again(tmp_path, s3):
    client, endpoint = s3
    one, two = bmp((200, 40, 40)), bmp((40, 200, 40))
    assert len(one) == len(two) and one != two  # an uncompressed image: same size, other bytes
    client.put_object(Bucket="etag-data", Key="same/img0.bmp", Body=one)
    client.put_object(Bucket="etag-data", Key="same/img0.txt", Body=b"first caption")
    root = project(tmp_path, endpoint, "same/")
    _, line = scan(root)
    cached = root / "cache" / "aws" / "pos" / "img0.bmp"
    assert cached.read_bytes() == one and "1 fetched" in line
    assert object_etags.read(cached) == client.head_object(Bucket="etag-data", Key="same/img0.bmp")["ETag"]
    client.put_object(Bucket="etag-data", Key="same/img0.bmp", Body=two)
    client.put_object(Bucket="etag-data", Key="same/img0.txt", Body=b"other caption")  # same length too
    for key, path in (("same/img0.bmp", cached), ("same/img0.txt", cached.with_suffix(".txt"))):
        stamp = client.head_object(Bucket="etag-data", Key=key)["LastModified"].timestamp()
        os.utime(path, (stamp, stamp))  # as if both writes fell in the second the cache was stamped with
    pos, line = scan(root)
    assert cached.read_bytes() == two and "1 fetched" in line
    assert pos.images[0].caption == "other caption"
    _, line = scan(root)
    assert "0 fetched" in line and "1 already cached" in line
    assert sorted(p.name for p in pos.folder.iterdir() if not p.name.startswith(".")) == ["img0.bmp", "img0.txt"]


def test_a_cache_without_kept_etags_is_checked_by_md5_not_fetched_again(tmp_path, s3):
    client, endpoint = s3
    body = bmp((10, 20, 30))
    client.put_object(Bucket="etag-data", Key="old/img0.bmp", Body=body)
    root = project(tmp_path, endpoint, "old/")
    scan(root)
    cached = root / "cache" / "aws" / "pos" / "img0.bmp"
    object_etags.forget(cached)  # a cache written before ETags were kept
    _, line = scan(root)
    assert "0 fetched" in line and object_etags.read(cached) is not None  # MD5 matched; the ETag is kept now
    object_etags.forget(cached)
    cached.write_bytes(bmp((30, 20, 10)))  # same size, other bytes, a matching time: only the MD5 can tell
    stamp = client.head_object(Bucket="etag-data", Key="old/img0.bmp")["LastModified"].timestamp()
    os.utime(cached, (stamp, stamp))
    _, line = scan(root)
    assert "1 fetched" in line and cached.read_bytes() == body
