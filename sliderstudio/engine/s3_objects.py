"""`"type": "aws"` entries: images and .txt captions under an S3 prefix, fetched once into cache/aws/<id>.

SimpleTuner's keys: `aws_bucket_name`, `aws_data_prefix`, `aws_region_name`, `aws_endpoint_url`
(any S3-compatible store), `aws_access_key_id`, `aws_secret_access_key`, `aws_session_token`; keys
left out come from the usual AWS environment (variables, ~/.aws). The objects keep their path below
the prefix, so subfolders and pairing by relative path work as for a local folder. A cached file is
reused when its size and the object's ETag match: the ETag is kept beside the file (`.<name>.etag`,
hidden from the scan), because S3's LastModified has whole seconds only and a same-size rewrite
within a second would otherwise be missed. A cache from before the ETag was kept is checked by the
file's MD5 (a single-part upload's ETag), else by size and LastModified (the fetch stamps it on the
file). A re-run lists the bucket and fetches nothing.

A wrong endpoint, credential, region or bucket stops the run before anything is cached, naming the
entry and the key (never the secret's value); an object that fails alone is skipped with a problem.
"""
from __future__ import annotations

import os
from pathlib import Path, PurePosixPath
from typing import Any

from sliderstudio.engine import object_etags
from sliderstudio.config.config import BucketConfig
from sliderstudio.kernel.errors import DatasetError
from sliderstudio.engine.fetch_cache import (
    FETCH_WORKERS, Fetched, FetchFailed, FetchProgress, Logger, in_parallel, require_image, store,
)
from sliderstudio.engine.project import Project
from sliderstudio.config.sample_cap import capped

CONNECT_TIMEOUT_S = 5
READ_TIMEOUT_S = 60
# S3 error codes → the entry key the user has to fix.
CODE_KEYS = {
    "NoSuchBucket": "aws_bucket_name", "InvalidBucketName": "aws_bucket_name",
    "InvalidAccessKeyId": "aws_access_key_id", "AccessDenied": "aws_access_key_id",
    "InvalidToken": "aws_session_token", "ExpiredToken": "aws_session_token",
    "SignatureDoesNotMatch": "aws_secret_access_key",
    "PermanentRedirect": "aws_region_name", "AuthorizationHeaderMalformed": "aws_region_name",
    "IllegalLocationConstraintException": "aws_region_name",
}
SECRET_KEYS = ("aws_secret_access_key", "aws_session_token")


def entry_error(project: Project, bucket: BucketConfig, key: str, message: str) -> DatasetError:
    """Exit 2 naming the entry and key; a secret's value is never printed."""
    value = "(hidden)" if key in SECRET_KEYS else getattr(bucket, key, None)
    return DatasetError(message, file=project.dataloader_path, key=f"{bucket.id}.{key}", value=value)


def make_client(project: Project, bucket: BucketConfig) -> Any:
    try:
        import boto3
        from botocore.config import Config
    except ImportError:
        raise entry_error(project, bucket, "type", "this Slider Studio has no S3 support (the 'boto3' package is "
                          "not installed); install it with pip, or copy the objects to a local folder "
                          "(`aws s3 sync s3://BUCKET/PREFIX data/NAME`) and use \"type\": \"local\"") from None
    session = boto3.session.Session(aws_access_key_id=bucket.aws_access_key_id,
                                    aws_secret_access_key=bucket.aws_secret_access_key,
                                    aws_session_token=bucket.aws_session_token,
                                    region_name=bucket.aws_region_name or os.environ.get("AWS_DEFAULT_REGION")
                                    or "us-east-1")
    config = Config(connect_timeout=CONNECT_TIMEOUT_S, read_timeout=READ_TIMEOUT_S,
                    retries={"max_attempts": 2, "mode": "standard"}, max_pool_connections=FETCH_WORKERS)
    try:
        return session.client("s3", endpoint_url=bucket.aws_endpoint_url or None, config=config)
    except ValueError as exc:  # botocore: "Invalid endpoint: …"
        raise entry_error(project, bucket, "aws_endpoint_url", f"not a usable endpoint URL ({exc})") from None


def translate(project: Project, bucket: BucketConfig, exc: Exception) -> DatasetError:
    """A botocore failure of the whole entry as the key to fix."""
    from botocore.exceptions import (
        ClientError, ConnectionError as BotoConnectionError, HTTPClientError, NoCredentialsError,
        PartialCredentialsError,
    )

    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return entry_error(project, bucket, "aws_access_key_id", "no usable AWS credentials: set aws_access_key_id "
                           "and aws_secret_access_key, or the AWS environment variables")
    if isinstance(exc, (BotoConnectionError, HTTPClientError)):
        where = bucket.aws_endpoint_url or "the AWS S3 endpoint"
        return entry_error(project, bucket, "aws_endpoint_url", f"cannot reach {where} ({type(exc).__name__})")
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        key = CODE_KEYS.get(code)
        if key is None and code in ("403", "Forbidden"):
            key = "aws_access_key_id"
        if key is None and code in ("404", "NotFound"):
            key = "aws_bucket_name"
        return entry_error(project, bucket, key or "aws_bucket_name",
                           f"S3 refused the listing of bucket '{bucket.aws_bucket_name}' "
                           f"({code or 'error'}: {error.get('Message', exc)})")
    return entry_error(project, bucket, "aws_endpoint_url", f"S3 listing failed ({type(exc).__name__}: {exc})")


def list_objects(project: Project, bucket: BucketConfig, client: Any) -> dict[str, dict[str, Any]]:
    """Every object under the prefix: key → {Size, LastModified}."""
    from botocore.exceptions import BotoCoreError, ClientError

    out = {}
    try:
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket.aws_bucket_name,
                                                                  Prefix=bucket.aws_data_prefix or "")
        for page in pages:
            for obj in page.get("Contents", []):
                out[obj["Key"]] = {"Size": obj["Size"], "LastModified": obj["LastModified"],
                                   "ETag": obj.get("ETag")}
    except (BotoCoreError, ClientError) as exc:
        raise translate(project, bucket, exc) from None
    return out


def relative(key: str, prefix: str) -> PurePosixPath | None:
    """The key's path below the prefix; None for a key that would land outside the cache folder."""
    rel = PurePosixPath(key[len(prefix):].lstrip("/"))
    if not rel.parts or any(part in ("..", ".") for part in rel.parts) or rel.name.startswith("."):
        return None
    return rel


def up_to_date(path: Path, meta: dict[str, Any]) -> bool:
    """Whether the cached file is this version of the object (see the module's note on ETags)."""
    try:
        st = path.stat()
    except OSError:
        return False
    if st.st_size != meta["Size"]:
        return False
    etag = meta.get("ETag")
    if etag:
        kept = object_etags.read(path)
        if kept is not None:
            return kept == etag
        same = object_etags.matches_content(path, etag)
        if same is not None:
            if same:
                object_etags.write(path, etag)  # checked once; from now on by the kept ETag
            return same
    return int(st.st_mtime) == int(meta["LastModified"].timestamp())


def fetch_object(client: Any, bucket: BucketConfig, key: str, meta: dict[str, Any], target: Path,
                 image: bool) -> int | None:
    """Bytes fetched, or None when the cached copy is current; FetchFailed when the object cannot be read."""
    from botocore.exceptions import BotoCoreError, ClientError

    if up_to_date(target, meta):
        return None
    try:
        data = client.get_object(Bucket=bucket.aws_bucket_name, Key=key)["Body"].read()
    except ClientError as exc:
        raise FetchFailed(f"S3 {exc.response.get('Error', {}).get('Code', 'error')}") from None
    except BotoCoreError as exc:
        raise FetchFailed(f"download failed ({type(exc).__name__})") from None
    if image:
        require_image(data)
    object_etags.forget(target)  # never an old ETag beside new bytes, even after a crash in between
    size = store(target, data)
    stamp = meta["LastModified"].timestamp()
    os.utime(target, (stamp, stamp))
    if meta.get("ETag"):
        object_etags.write(target, meta["ETag"])
    return size


def fetch_s3(project: Project, bucket: BucketConfig, log: Logger | None = None) -> Fetched:
    """The images (and their .txt captions) under the prefix, in the cache folder."""
    from sliderstudio.engine.buckets import CAPTION_EXTENSION, IMAGE_EXTENSIONS

    client = make_client(project, bucket)
    objects = list_objects(project, bucket, client)
    prefix = bucket.aws_data_prefix or ""
    folder = project.bucket_dir(bucket)  # csv_cache_dir, or cache/<type>/<id>
    fetched = Fetched(folder)
    images = []
    for key in sorted(objects):
        rel = relative(key, prefix)
        if rel is None:
            if not key.endswith("/"):
                fetched.problems.append((Path(key), "object key is not a plain path below the prefix (skipped)"))
            continue
        if rel.suffix.lower() in IMAGE_EXTENSIONS:
            images.append((key, rel))
    images = capped(images, bucket.max_num_samples, project.config.seed,
                    lambda item: item[1].with_suffix("").as_posix())
    if log is not None:
        log(f"aws '{bucket.id}': {len(images)} images under s3://{bucket.aws_bucket_name}/{prefix}", "info")
    progress = FetchProgress(f"aws '{bucket.id}'", len(images), log)

    def attempt(item: tuple[str, PurePosixPath]) -> int | None | FetchFailed:
        key, rel = item
        target = folder / Path(*rel.parts)
        try:
            size = fetch_object(client, bucket, key, objects[key], target, image=True)
            caption_key = key[: len(key) - len(rel.suffix)] + CAPTION_EXTENSION
            if caption_key in objects:
                fetch_object(client, bucket, caption_key, objects[caption_key],
                             target.with_suffix(CAPTION_EXTENSION), image=False)
            else:
                target.with_suffix(CAPTION_EXTENSION).unlink(missing_ok=True)
                object_etags.forget(target.with_suffix(CAPTION_EXTENSION))
        except FetchFailed as exc:
            return exc
        return size

    for (key, rel), result in zip(images, in_parallel(images, attempt)):
        if isinstance(result, FetchFailed):
            fetched.problems.append((Path(key), f"{result} (skipped)"))
            progress.fail()
            continue
        progress.add(result is not None, result or 0)
        fetched.files.append((folder / Path(*rel.parts), rel.with_suffix("").as_posix()))
    progress.finish()
    return fetched
