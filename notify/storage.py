"""The two bucket operations the run wrapper needs: read a run's manifest, upload a run's log; and the one S3 client.

A bucket root is a local folder (stdlib only) or ``s3://bucket/prefix`` (boto3, imported lazily). ``notify`` must
run where only ``requests`` is installed, so a missing boto3 is one line on stderr, never an ImportError.
`s3_client` is the only place an S3 client is configured: ``cft``'s buckets use it too, so retries, timeouts and
the endpoint of S3-compatible stores are the same settings for training, evaluation and notifications.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from notify.manifest import Manifest, ManifestError
from notify.run_layout import RunPaths

# Bounded retries and timeouts: a dead endpoint fails with the reason instead of hanging a job.
S3_ATTEMPTS_VARIABLE = "CFT_S3_ATTEMPTS"
S3_DEFAULT_ATTEMPTS = 4
S3_CONNECT_TIMEOUT_S = 5
S3_READ_TIMEOUT_S = 60
# The standard AWS variables; any S3-compatible store (R2, MinIO, B2) is reached through them.
S3_ENDPOINT_VARIABLES = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3")


class StorageError(Exception):
    """A bucket operation that could not be done; the message is one line for stderr."""


def s3_client(env: Mapping[str, str] = os.environ) -> Any:
    """A boto3 S3 client with cft's settings; StorageError when boto3 is not installed."""
    try:
        import boto3
        from botocore.config import Config
    except ImportError as exc:
        raise StorageError("boto3 is not installed") from exc
    attempts = int(env.get(S3_ATTEMPTS_VARIABLE, S3_DEFAULT_ATTEMPTS))
    # Checksums only where S3 requires them: R2, B2 and some MinIO versions reject the CRC32 headers boto3 >= 1.36
    # sends by default.
    config = Config(retries={"max_attempts": attempts, "mode": "standard"}, connect_timeout=S3_CONNECT_TIMEOUT_S,
                    read_timeout=S3_READ_TIMEOUT_S, request_checksum_calculation="when_required",
                    response_checksum_validation="when_required")
    endpoint = next((env[name] for name in S3_ENDPOINT_VARIABLES if env.get(name)), None)
    return boto3.client("s3", endpoint_url=endpoint, config=config)


def run_prefix(bucket: str, run_id: str) -> str:
    """``<bucket>/runs/<run_id>/``."""
    return f"{bucket.rstrip('/')}/{RunPaths(run_id).prefix}/"


def _local_root(bucket: str) -> Path | None:
    if bucket.startswith("file://"):
        return Path(bucket[len("file://") :])
    if "://" in bucket:
        return None
    return Path(bucket)


def _split_s3(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://"):
        raise StorageError(f"unsupported bucket URI {uri!r} (use a local folder or s3://bucket/prefix)")
    bucket, _, key = uri[len("s3://") :].partition("/")
    return bucket, key


def _client(env: Mapping[str, str]) -> Any:
    try:
        return s3_client(env)
    except StorageError as exc:
        raise StorageError(f"{exc}; skipping the s3:// bucket") from exc


def read_manifest(bucket: str, run_id: str, env: Mapping[str, str] = os.environ) -> Manifest | None:
    """The run's manifest, or None when the run has none (yet); StorageError when it cannot be read or trusted."""
    key = RunPaths(run_id).manifest
    root = _local_root(bucket)
    if root is not None:
        path = root / key
        if not path.is_file():
            return None
        text = path.read_text(encoding="utf-8")
    else:
        name, s3_key = _split_s3(f"{bucket.rstrip('/')}/{key}")
        try:
            text = _client(env).get_object(Bucket=name, Key=s3_key)["Body"].read().decode("utf-8")
        except StorageError:
            raise
        except Exception as exc:
            code = getattr(exc, "response", {}).get("Error", {}).get("Code")
            if code in ("NoSuchKey", "404", "NotFound"):
                return None
            raise StorageError(f"could not read {bucket}/{key}: {exc}") from exc
    try:
        return Manifest.from_json(text)
    except ManifestError as exc:
        raise StorageError(f"manifest of run {run_id} cannot be used: {exc}") from exc


def upload_log(bucket: str, run_id: str, log_path: Path, env: Mapping[str, str] = os.environ) -> str:
    """Copy a log to ``<bucket>/runs/<run_id>/logs/<name>``; returns where it went."""
    key = RunPaths(run_id).log(log_path.name)
    root = _local_root(bucket)
    if root is not None:
        target = root / key
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(log_path, target)
        return str(target)
    dest = f"{bucket.rstrip('/')}/{key}"
    name, s3_key = _split_s3(dest)
    _client(env).upload_file(str(log_path), name, s3_key)
    return dest
