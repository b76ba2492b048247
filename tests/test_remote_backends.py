"""SimpleTuner's remote dataloader backends: `csv` (URLs or paths in a table, fetched over a loopback HTTP
server) and `aws` (S3, against moto's server on 127.0.0.1). Both cache once, pair by stem, report bad rows
per file, and stop with exit 2 naming the entry and key when the entry itself is wrong."""
import csv
import http.server
import json
import threading

import pytest

from conftest import draw, make_project
from sliderstudio.cli import main
from sliderstudio.engine.buckets import balance, scan_project
from sliderstudio.engine.project import load_project


class Handler(http.server.SimpleHTTPRequestHandler):
    """Serves the test's folder; /cut.png promises 4000 bytes and sends 100 (a dropped connection)."""

    requests: list[str] = []

    def log_message(self, *args):  # quiet
        pass

    def do_GET(self):
        Handler.requests.append(self.path)
        if self.path == "/cut.png":
            self.send_response(200)
            self.send_header("Content-Length", "4000")
            self.end_headers()
            self.wfile.write(b"\x89PNG" + b"\0" * 96)
            self.wfile.flush()
            self.close_connection = True
            return
        super().do_GET()


@pytest.fixture
def web(tmp_path):
    root = tmp_path / "web"
    root.mkdir()
    Handler.requests = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: Handler(*a, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def write_table(path, rows, header=("url", "caption")):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)


def csv_project(tmp_path, entries):
    root = make_project(tmp_path / "proj", "/no/model", pairs=0, neutral=2)
    (root / "multidatabackend.json").write_text(json.dumps(
        entries + [{"id": "neu", "instance_data_dir": "data/neu"}]))
    return root


def test_csv_entries_fetch_once_pair_by_name_and_skip_bad_rows(tmp_path, web):
    site, url = web
    for i in range(3):
        draw(site / "pos" / f"img{i}.png", 0.8, seed=i)
        draw(site / "neg" / f"img{i}.png", 0.3, seed=i)
    (site / "pos" / "page.png").write_text("<html>not found</html>")  # an error page served as 200
    local = tmp_path / "proj" / "tables" / "local"
    draw(local / "img2.png", 0.3, seed=2)  # a row may name a path (relative to its table)
    root = tmp_path / "proj"
    write_table(root / "tables" / "pos.csv", [
        (f"{url}/pos/img0.png", "a big red square\non a grey ground"), (f"{url}/pos/img1.png", "big one"),
        (f"{url}/pos/img2.png", "big two"), (f"{url}/pos/missing.png", "gone"), ("", "no url"),
        (f"{url}/pos/page.png", "html"), (f"{url}/cut.png", "cut off")])
    write_table(root / "tables" / "neg.csv", [(f"{url}/neg/img0.png", "small"), (f"{url}/neg/img1.png", "small"),
                                              ("local/img2.png", "small, local")], header=("image", "text"))
    root = csv_project(tmp_path, [
        {"id": "pos", "type": "csv", "csv_file": "tables/pos.csv", "csv_cache_dir": "cache/csv/{id}",
         "caption_strategy": "csv", "slider_strength": 1.0, "metadata_backend": "csv"},
        {"id": "neg", "type": "csv", "csv_file": "tables/neg.csv", "csv_url_column": "image",
         "csv_caption_column": "text", "slider_strength": -1.0}])
    lines = []
    project = load_project(root)
    scanned = {s.bucket.id: s for s in scan_project(project, log=lambda m, level: lines.append(m))}
    pos, neg = scanned["pos"], scanned["neg"]
    assert pos.stems == neg.stems == ["img0", "img1", "img2"]
    assert pos.images[0].caption == "a big red square on a grey ground"  # a cell's line break is not a 2nd caption
    assert [r.caption for r in neg.images] == ["small", "small", "small, local"]
    problems = [str(p) for p in pos.problems]  # line numbers as an editor shows them (row 1 spans two lines)
    assert problems[0] == f"pos.csv: line 6 ({url}/pos/missing.png): HTTP 404 File not found (skipped)"
    assert problems[1] == "pos.csv: line 7 (no URL): empty URL cell (skipped)"
    assert problems[2].startswith(f"pos.csv: line 8 ({url}/pos/page.png): not an image")
    assert problems[3] == (f"pos.csv: line 9 ({url}/cut.png): download failed (IncompleteRead: 100 of 4000 "
                           "bytes) (skipped)")  # no ETag / Last-Modified: nothing kept to resume
    assert len(problems) == 4 and neg.problems == []
    assert balance(project, list(scanned.values())).pair_map == {"pos": "neg"}
    cache = root / "cache" / "csv" / "pos"
    assert sorted(p.name for p in cache.iterdir()) == ["img0.png", "img0.txt", "img1.png", "img1.txt", "img2.png",
                                                       "img2.txt"]  # nothing of the failed rows, no temp files
    assert (root / "cache" / "csv" / "neg" / "img2.png").read_bytes() == (local / "img2.png").read_bytes()
    assert "csv 'pos': 7 images: 3 fetched" in "\n".join(lines) and "4 skipped" in "\n".join(lines)
    # a re-run fetches nothing that is cached (only the failed rows are asked again)
    Handler.requests.clear()
    lines.clear()
    again = {s.bucket.id: s for s in scan_project(load_project(root), log=lambda m, level: lines.append(m))}
    assert again["pos"].stems == ["img0", "img1", "img2"]
    assert sorted(Handler.requests) == ["/cut.png", "/pos/missing.png", "/pos/page.png"]
    assert "csv 'neg': 3 images: 0 fetched (0.0 MB), 3 already cached, 0 skipped" in lines


def test_csv_plan_prints_the_skipped_rows_and_rows_removed_from_the_table_leave_the_bucket(tmp_path, web, capsys):
    site, url = web
    for i in range(2):
        draw(site / f"img{i}.png", 0.8, seed=i)
    root = tmp_path / "proj"
    write_table(root / "pos.csv", [(f"{url}/img0.png", "one"), (f"{url}/img1.png", "two"),
                                   (f"{url}/nothere.png", "x")])
    write_table(root / "neg.csv", [(f"{url}/img0.png", "one"), (f"{url}/img1.png", "two")])
    root = csv_project(tmp_path, [
        {"id": "pos", "type": "csv", "csv_file": "pos.csv", "slider_strength": 1.0},
        {"id": "neg", "type": "csv", "csv_file": "neg.csv", "slider_strength": -1.0}])
    assert main(["plan", "--config", str(root), "--batches", "2"]) == 0
    err = capsys.readouterr().err
    assert f"warning: bucket 'pos': pos.csv: line 4 ({url}/nothere.png): HTTP 404" in err
    assert "note: csv 'pos': 3 images: 2 fetched" in err and "1 skipped" in err  # the fetch's summary line
    write_table(root / "pos.csv", [(f"{url}/img1.png", "two")])  # img0 stays in the cache, not in the bucket
    assert [s.stems for s in scan_project(load_project(root))][0] == ["img1"]


@pytest.mark.parametrize("entry,key,words", [
    ({"csv_file": "nowhere.csv"}, "pos.csv_file", "csv_file not found"),
    ({"csv_file": "t.csv", "csv_url_column": "link"}, "pos.csv_url_column",
     "has no column 'link' (its columns: url, caption)"),
    ({"csv_file": "t.csv", "csv_caption_column": "txt", "caption_strategy": "csv"}, "pos.csv_caption_column",
     "has no column 'txt'"),
    ({}, "[0]", "a csv entry needs csv_file"),
    ({"csv_file": "t.csv", "dataset_type": "conditioning"}, "[0]", "holds image entries only"),
    ({"csv_file": "t.csv", "caption_strategy": "webshart"}, "[0]", "caption_strategy 'webshart' needs"),
    ({"csv_file": "t.csv", "csv_cache_dir": "t.csv"}, "pos.csv_cache_dir", "csv_cache_dir is not a folder"),
    ({"csv_file": "t.csv"}, "pos.csv_file", "bucket 'pos' has no usable images: line 2 (http://127.0.0.1:9/x.png): cannot connect"),
])
def test_csv_bad_entries_exit_2_naming_entry_key_and_value(tmp_path, capsys, entry, key, words):
    root = tmp_path / "proj"
    write_table(root / "t.csv", [("http://127.0.0.1:9/x.png", "x")])
    root = csv_project(tmp_path, [{"id": "pos", "type": "csv", "slider_strength": 1.0, **entry},
                                  {"id": "neg", "instance_data_dir": "data/neu", "slider_strength": -1.0}])
    assert main(["plan", "--config", str(root)]) == 2
    err = capsys.readouterr().err
    assert "multidatabackend.json" in err and f"key '{key}'" in err and words in err
    if "value" in words or "column" in words:
        assert str(entry.get("csv_url_column", entry.get("csv_caption_column", ""))) in err
    assert not (root / "cache" / "csv" / "pos").exists() or not any((root / "cache" / "csv" / "pos").iterdir())


# ---- aws (S3) against moto's server ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def s3_server():
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def s3_client(endpoint):
    import boto3

    return boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="test", aws_secret_access_key="test",
                        region_name="us-east-1")


def aws_entry(endpoint, **extra):
    return {"type": "aws", "aws_bucket_name": "slider-data", "aws_endpoint_url": endpoint,
            "aws_region_name": "us-east-1", "aws_access_key_id": "test", "aws_secret_access_key": "test-secret-value",
            **extra}


@pytest.fixture(scope="module")
def s3_data(s3_server, tmp_path_factory):
    src = tmp_path_factory.mktemp("s3src")
    client = s3_client(s3_server)
    client.create_bucket(Bucket="slider-data")
    for side, size in (("pos", 0.8), ("neg", 0.3)):
        for i in range(3):
            draw(src / f"{side}{i}.png", size, seed=i)
            client.upload_file(str(src / f"{side}{i}.png"), "slider-data", f"train/{side}/img{i}.png")
            client.put_object(Bucket="slider-data", Key=f"train/{side}/img{i}.txt", Body=f"{side} caption {i}".encode())
        draw(src / f"{side}-deep.png", size, seed=9)
        client.upload_file(str(src / f"{side}-deep.png"), "slider-data", f"train/{side}/sub/deep.png")
    client.put_object(Bucket="slider-data", Key="train/pos/broken.png", Body=b"not a png")
    client.put_object(Bucket="slider-data", Key="train/pos/notes.md", Body=b"# notes")
    return s3_server


def test_aws_entries_fetch_images_and_captions_once_and_pair(tmp_path, s3_data):
    root = csv_project(tmp_path, [
        {"id": "pos", "slider_strength": 1.0, **aws_entry(s3_data, aws_data_prefix="train/pos/")},
        {"id": "neg", "slider_strength": -1.0, **aws_entry(s3_data, aws_data_prefix="train/neg")}])
    lines = []
    project = load_project(root)
    scanned = {s.bucket.id: s for s in scan_project(project, log=lambda m, level: lines.append(m))}
    pos, neg = scanned["pos"], scanned["neg"]
    assert pos.stems == neg.stems == ["img0", "img1", "img2", "sub/deep"]
    assert [r.caption for r in pos.images[:3]] == ["pos caption 0", "pos caption 1", "pos caption 2"]
    assert [str(p) for p in pos.problems] == ["broken.png: not an image (UnidentifiedImageError) (skipped)",
                                              "deep.png: no deep.txt; using 'deep'"]
    assert balance(project, list(scanned.values())).pair_map == {"pos": "neg"}
    cache = root / "cache" / "aws" / "pos"
    assert (cache / "sub" / "deep.png").is_file() and not (cache / "broken.png").exists()
    assert "aws 'pos': 5 images: 4 fetched" in "\n".join(lines)
    lines.clear()
    scan_project(load_project(root), log=lambda m, level: lines.append(m))
    assert "aws 'neg': 4 images: 0 fetched (0.0 MB), 4 already cached, 0 skipped" in lines
    # a changed object is fetched again (size and the kept ETag; same-size rewrites: tests/test_s3_etags.py)
    s3_client(s3_data).put_object(Bucket="slider-data", Key="train/neg/img1.txt", Body=b"a newer caption")
    lines.clear()
    again = {s.bucket.id: s for s in scan_project(load_project(root), log=lambda m, level: lines.append(m))}
    assert again["neg"].images[1].caption == "a newer caption"


def test_aws_max_num_samples_keeps_the_same_pairs_before_fetching(tmp_path, s3_data):
    client = s3_client(s3_data)
    for side, size in (("pos", 0.8), ("neg", 0.3)):
        for i in range(6):
            draw(tmp_path / "src" / f"{side}{i}.png", size, seed=i)
            client.upload_file(str(tmp_path / "src" / f"{side}{i}.png"), "slider-data", f"capped/{side}/img{i}.png")
    capped = [{"id": side, "slider_strength": strength, "max_num_samples": 2,
               **aws_entry(s3_data, aws_data_prefix=f"capped/{side}/")}
              for side, strength in (("pos", 1.0), ("neg", -1.0))]
    root = csv_project(tmp_path, capped)
    scanned = scan_project(load_project(root))
    assert len(scanned[0].stems) == 2 and scanned[0].stems == scanned[1].stems
    fetched = sorted(p.name for p in (root / "cache" / "aws" / "neg").rglob("*.png"))
    assert len(fetched) == 2  # only the chosen images were fetched


@pytest.mark.parametrize("change,key,words", [
    ({"aws_bucket_name": "no-such-bucket"}, "pos.aws_bucket_name", "NoSuchBucket"),
    ({"aws_endpoint_url": "http://127.0.0.1:9"}, "pos.aws_endpoint_url", "cannot reach http://127.0.0.1:9"),
    ({"aws_endpoint_url": "not a url"}, "pos.aws_endpoint_url", "not a usable endpoint URL"),
    ({"aws_bucket_name": None}, "[0]", "an aws entry needs aws_bucket_name"),
])
def test_aws_bad_entries_exit_2_naming_the_entry_and_key(tmp_path, capsys, s3_data, change, key, words):
    entry = {"id": "pos", "slider_strength": 1.0, **aws_entry(s3_data, aws_data_prefix="train/pos/")}
    entry.update(change)
    root = csv_project(tmp_path, [{k: v for k, v in entry.items() if v is not None},
                                  {"id": "neg", "instance_data_dir": "data/neu", "slider_strength": -1.0}])
    assert main(["plan", "--config", str(root)]) == 2
    err = capsys.readouterr().err
    assert f"key '{key}'" in err and words in err and "test-secret-value" not in err
    assert not (root / "cache" / "aws" / "pos").exists()


def test_aws_wrong_credentials_exit_2_without_printing_the_secret(tmp_path, capsys, s3_data):
    import requests

    root = csv_project(tmp_path, [{"id": "pos", "slider_strength": 1.0, **aws_entry(s3_data)},
                                  {"id": "neg", "instance_data_dir": "data/neu", "slider_strength": -1.0}])
    requests.post(f"{s3_data}/moto-api/reset-auth", data=b"0", timeout=10)  # moto checks credentials from now on
    try:
        assert main(["plan", "--config", str(root)]) == 2
    finally:
        requests.post(f"{s3_data}/moto-api/reset-auth", data=b"inf", timeout=10)
    err = capsys.readouterr().err
    assert "key 'pos.aws_access_key_id'" in err and "InvalidAccessKeyId" in err
    assert "test-secret-value" not in err


def test_a_run_trains_on_csv_entries_and_logs_the_fetch(tmp_path, web, tiny_models):
    from sliderstudio.engine.training_setup import prepare_session

    site, url = web
    for i in range(2):
        draw(site / "pos" / f"img{i}.png", 0.8, seed=i)
        draw(site / "neg" / f"img{i}.png", 0.3, seed=i)
    root = make_project(tmp_path / "proj", tiny_models["sd1x"], pairs=0, neutral=2)
    for side in ("pos", "neg"):
        write_table(root / f"{side}.csv", [(f"{url}/{side}/img{i}.png", f"a {side} square") for i in range(2)])
    (root / "multidatabackend.json").write_text(json.dumps([
        {"id": "pos", "type": "csv", "csv_file": "pos.csv", "slider_strength": 1.0},
        {"id": "neg", "type": "csv", "csv_file": "neg.csv", "slider_strength": -1.0},
        {"id": "neu", "instance_data_dir": "data/neu"}]))
    logs = []
    session = prepare_session(load_project(root), lambda msg, level: logs.append((level, msg)))
    assert ("info", "csv 'pos': 2 images: 2 fetched") in [(lv, m.split(" (")[0]) for lv, m in logs]
    assert session.step.data.captions[("pos", 1)] == ("a pos square",)
    assert any("pairing: paired mode" in m for _, m in logs)
