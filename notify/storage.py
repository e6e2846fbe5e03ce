"""The two bucket operations the run wrapper needs: read a run's manifest, upload a run's log.

A bucket root is a local folder (stdlib only) or ``s3://bucket/prefix`` (boto3, imported lazily, endpoint
from ``AWS_ENDPOINT_URL`` for S3-compatible stores). ``notify`` must run where only ``requests`` is installed,
so a missing boto3 is one line on stderr, never an ImportError.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any


class StorageError(Exception):
    """A bucket operation that could not be done; the message is one line for stderr."""


def run_prefix(bucket: str, run_id: str) -> str:
    """``<bucket>/runs/<run_id>/``."""
    return f"{bucket.rstrip('/')}/runs/{run_id}/"


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


def _s3_client(env: Mapping[str, str]) -> Any:
    try:
        import boto3
        from botocore.config import Config
    except ImportError as exc:
        raise StorageError("boto3 is not installed; skipping the s3:// bucket") from exc
    config = Config(connect_timeout=5, read_timeout=30, retries={"max_attempts": 2})
    return boto3.client("s3", endpoint_url=env.get("AWS_ENDPOINT_URL") or None, config=config)


def read_manifest(bucket: str, run_id: str, env: Mapping[str, str] = os.environ) -> dict[str, Any] | None:
    """The run's ``manifest.json`` as a dict, or None when the run has none (yet)."""
    root = _local_root(bucket)
    if root is not None:
        path = root / "runs" / run_id / "manifest.json"
        if not path.is_file():
            return None
        text = path.read_text(encoding="utf-8")
    else:
        name, key = _split_s3(run_prefix(bucket, run_id) + "manifest.json")
        try:
            text = _s3_client(env).get_object(Bucket=name, Key=key)["Body"].read().decode("utf-8")
        except StorageError:
            raise
        except Exception as exc:
            code = getattr(exc, "response", {}).get("Error", {}).get("Code")
            if code in ("NoSuchKey", "404", "NotFound"):
                return None
            raise StorageError(f"could not read {bucket}/runs/{run_id}/manifest.json: {exc}") from exc
    try:
        manifest = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise StorageError(f"manifest of run {run_id} is not valid JSON: {exc}") from exc
    return manifest if isinstance(manifest, dict) else None


def upload_log(bucket: str, run_id: str, log_path: Path, env: Mapping[str, str] = os.environ) -> str:
    """Copy a log to ``<bucket>/runs/<run_id>/logs/<name>``; returns where it went."""
    dest = run_prefix(bucket, run_id) + "logs/" + log_path.name
    root = _local_root(bucket)
    if root is not None:
        target = root / "runs" / run_id / "logs" / log_path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(log_path, target)
        return str(target)
    name, key = _split_s3(dest)
    _s3_client(env).upload_file(str(log_path), name, key)
    return dest
