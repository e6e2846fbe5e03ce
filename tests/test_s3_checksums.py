"""Every S3 client cft and notify build sends checksums only where S3 requires them.

boto3 >= 1.36 adds CRC32 checksum headers to every upload by default; R2, B2 and some MinIO versions reject
them, and moto accepts them, so the tests look at the requests themselves, not at moto's answer.
"""

from __future__ import annotations

import boto3
import moto
import pytest

from cft.storage.bucket import open_bucket
from notify.storage import upload_log

CHECKSUM_HEADERS = ("x-amz-sdk-checksum-algorithm", "x-amz-checksum-crc32", "x-amz-trailer")


@pytest.fixture
def sent_headers(monkeypatch):
    """Headers of every S3 request made through boto3's default session, under moto."""
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    sent: list[dict[str, str]] = []
    with moto.mock_aws():
        boto3.setup_default_session()
        boto3.DEFAULT_SESSION.events.register(
            "request-created.s3", lambda request, **_: sent.append({k.lower(): v for k, v in request.headers.items()}))
        boto3.client("s3").create_bucket(Bucket="cft-bucket")
        sent.clear()
        yield sent
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)


def _checksums(sent):
    return [name for headers in sent for name in CHECKSUM_HEADERS if name in headers]


def test_plain_boto3_sends_checksums_so_the_check_can_fail(sent_headers):
    boto3.client("s3").put_object(Bucket="cft-bucket", Key="k", Body=b"x")
    assert _checksums(sent_headers)


def test_cft_bucket_uploads_without_checksums(sent_headers, tmp_path):
    source = tmp_path / "adapter"
    source.mkdir()
    (source / "weights.bin").write_bytes(b"w" * 1000)
    bucket = open_bucket("s3://cft-bucket/team")
    bucket.upload_dir(source, "runs/r1/adapter")
    bucket.write_text("runs/r1/manifest.json", "{}")
    bucket.write_if_absent("runs/r1/lease.json", "{}")
    assert sent_headers, "no request reached S3"
    assert _checksums(sent_headers) == []


def test_notify_uploads_logs_without_checksums(sent_headers, tmp_path):
    log = tmp_path / "train.log"
    log.write_text("done\n")
    upload_log("s3://cft-bucket/team", "r1", log, env={})
    assert sent_headers and _checksums(sent_headers) == []
