"""Bucket access for the wrapper: local folders with the stdlib, s3:// through boto3 (moto), boto3 optional."""

import json
import sys

import pytest

from notify.storage import StorageError, read_manifest, run_prefix, upload_log

MANIFEST = {"run_id": "r1", "status": "succeeded", "model": "m", "recipe": "r.yaml", "started_at": None,
            "finished_at": None, "duration_s": 1.0, "steps": 3, "adapter": "s3://x", "metrics": {"train_loss": 0.5}}


def test_run_prefix():
    assert run_prefix("s3://b/cft/", "r1") == "s3://b/cft/runs/r1/"
    assert run_prefix("/data/bucket", "r1") == "/data/bucket/runs/r1/"


def test_local_bucket_manifest_and_log(tmp_path):
    bucket = tmp_path / "bucket"
    assert read_manifest(str(bucket), "r1") is None
    (bucket / "runs" / "r1").mkdir(parents=True)
    (bucket / "runs" / "r1" / "manifest.json").write_text(json.dumps(MANIFEST))
    assert read_manifest(f"file://{bucket}", "r1").metrics == {"train_loss": 0.5}
    log = tmp_path / "train-20260102-030405.log"
    log.write_text("line\n")
    where = upload_log(str(bucket), "r1", log)
    assert where == str(bucket / "runs" / "r1" / "logs" / log.name)
    assert (bucket / "runs" / "r1" / "logs" / log.name).read_text() == "line\n"


def test_broken_manifest_is_one_clear_error(tmp_path):
    (tmp_path / "runs" / "r1").mkdir(parents=True)
    (tmp_path / "runs" / "r1" / "manifest.json").write_text("{not json")
    with pytest.raises(StorageError, match="manifest of run r1 cannot be used: manifest.json is not JSON"):
        read_manifest(str(tmp_path), "r1")


def test_s3_bucket_with_boto3(tmp_path, monkeypatch):
    moto = pytest.importorskip("moto")
    boto3 = pytest.importorskip("boto3")
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with moto.mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="cft-bucket")
        assert read_manifest("s3://cft-bucket/team", "r1", env={}) is None
        s3.put_object(Bucket="cft-bucket", Key="team/runs/r1/manifest.json", Body=json.dumps(MANIFEST).encode())
        assert read_manifest("s3://cft-bucket/team", "r1", env={}).adapter == "s3://x"
        log = tmp_path / "eval-20260102-030405.log"
        log.write_text("done\n")
        assert upload_log("s3://cft-bucket/team", "r1", log, env={}) == f"s3://cft-bucket/team/runs/r1/logs/{log.name}"
        body = s3.get_object(Bucket="cft-bucket", Key=f"team/runs/r1/logs/{log.name}")["Body"].read()
        assert body == b"done\n"


def test_s3_without_boto3_is_a_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "boto3", None)  # import boto3 -> ImportError
    log = tmp_path / "x.log"
    log.write_text("")
    with pytest.raises(StorageError, match="boto3 is not installed; skipping the s3:// bucket"):
        upload_log("s3://cft-bucket", "r1", log, env={})


def test_unknown_scheme_is_refused(tmp_path):
    with pytest.raises(StorageError, match="unsupported bucket URI 'gs://b/runs/r1/manifest.json'"):
        read_manifest("gs://b", "r1")
