"""The bucket: write, read back and delete a probe with the job's credentials, and try the lease's conditional writes.

Everything goes through `cft.storage.bucket` (so through `notify.storage.s3_client`, cft's one S3 client with its
checksum and retry settings): a store that rejects cft's requests rejects the probe the same way. The probe lives
under `<root>/.cft-check/<random>/` and is deleted whatever happens.
"""

from __future__ import annotations

import os
import threading
import uuid
from typing import TypeVar

from cft.errors import CFTError, one_line
from cft.preflight.result import CheckFailed
from cft.storage.bucket import Bucket, PreconditionFailed, S3Bucket, open_bucket

PROBE_DIR = ".cft-check"
PERMISSIONS = "s3:PutObject, s3:GetObject, s3:DeleteObject and s3:ListBucket"
_UNREACHABLE = ("EndpointConnectionError", "ConnectTimeoutError", "ConnectionClosedError", "ReadTimeoutError",
                "ProxyConnectionError", "SSLError")


def _where() -> str:
    endpoint = os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL_S3")
    return endpoint or "AWS S3 (no AWS_ENDPOINT_URL)"


def explain(error: Exception, action: str, bucket: S3Bucket) -> str:
    """One line for a failed S3 call: what it means for the job and what to do."""
    inner = error.__context__ or error.__cause__ or error
    code = (getattr(inner, "response", None) or {}).get("Error", {}).get("Code")
    kind = type(inner).__name__
    where = _where()
    root = bucket.uri
    if code == "NoSuchBucket":
        name = bucket.bucket_name
        return (f"bucket {name} does not exist at {where}: create it (aws s3 mb s3://{name}, or your store's "
                "console); cft creates prefixes, never buckets")
    if code in ("AccessDenied", "AllAccessDisabled", "403", "Forbidden"):
        return (f"{action} on {root} refused ({code}): these credentials may not do that; the job needs "
                f"{PERMISSIONS} there")
    if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken", "InvalidClientTokenId"):
        return (f"{where} does not accept these credentials ({code}): check AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY in the secrets file, and AWS_ENDPOINT_URL for a store other than AWS")
    if kind in ("NoCredentialsError", "PartialCredentialsError"):
        return ("no AWS credentials: put AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the secrets file "
                "(--secrets, the file you give sky launch --secret-file)")
    if kind in _UNREACHABLE:
        return (f"cannot reach {where} ({kind}): check AWS_ENDPOINT_URL (the job gets it only with "
                "--env AWS_ENDPOINT_URL=...)")
    text = one_line(str(inner))[:200]
    if "checksum" in text.lower() or code in ("NotImplemented", "InvalidArgument", "InvalidRequest"):
        return (f"{where} rejects cft's {action} request ({code or kind}: {text}); see docs/cloud.md, "
                "S3-compatible stores")
    hint = "; is AWS_ENDPOINT_URL the S3 API of your store?" if code and code.isdigit() else ""
    return f"{action} on {root} failed at {where} ({kind}{' ' + code if code else ''}: {text}){hint}"


def _conditional_writes(bucket: Bucket, key: str) -> None:
    """The lease's two conditions: create-if-absent, replace-if-unchanged; each must refuse what it should."""
    ignored = (f"{_where()} ignores conditional writes ({{}} on PutObject): the run lease cannot stop a second "
               "writer; use a store that honours them (AWS S3, R2, MinIO)")
    etag = bucket.write_if_absent(key, "one")
    try:
        bucket.write_if_absent(key, "two")
    except PreconditionFailed:
        pass
    else:
        raise CheckFailed(ignored.format("If-None-Match: *"))
    try:
        bucket.write_if_match(key, "three", '"00000000000000000000000000000000"')
    except PreconditionFailed:
        pass
    else:
        raise CheckFailed(ignored.format("If-Match"))
    try:
        bucket.write_if_match(key, "four", etag)
    except PreconditionFailed:
        raise CheckFailed(f"{_where()} refuses a conditional write with the object's own ETag (If-Match): the run "
                          "lease could never be renewed there") from None


def check(root: str | None, job_name: str) -> str:
    if not root:
        raise CheckFailed(f"no bucket given: --bucket s3://<bucket>/<prefix> (the one {job_name} gets with "
                          "--env BUCKET=...)")
    if not root.startswith("s3://"):
        raise CheckFailed(f"{root} is a local folder: the job writes from a cloud node, where a folder vanishes with "
                          "the node; give s3://<bucket>/<prefix>")
    bucket = open_bucket(root)
    assert isinstance(bucket, S3Bucket)
    return _probe(with_job_credentials(bucket), root)


_CLIENTS = threading.Lock()
AnyBucket = TypeVar("AnyBucket", bound=Bucket)


def with_job_credentials(bucket: AnyBucket) -> AnyBucket:
    """The bucket with its S3 client made now, from the job's environment that the checks run in.

    boto3's default session keeps the credentials it first found, so it is renewed here; and since two threads may
    not build clients from one session at once, the checks that open a bucket take turns.
    """
    if not isinstance(bucket, S3Bucket):
        return bucket
    try:
        import boto3
    except ImportError:
        return bucket  # S3Bucket.client says how to install it
    with _CLIENTS:
        boto3.setup_default_session()
        try:
            bucket.client  # noqa: B018 - built now, with these credentials
        finally:
            boto3.DEFAULT_SESSION = None  # the next client reads the environment again
    return bucket


def _probe(bucket: S3Bucket, root: str) -> str:
    probe = f"{PROBE_DIR}/{uuid.uuid4().hex}"
    action = "PutObject"
    written = False
    try:
        bucket.write_text(f"{probe}/probe.txt", "cft check\n")
        written = True
        action = "GetObject"
        if bucket.read_text(f"{probe}/probe.txt") != "cft check\n":
            raise CheckFailed(f"{root}: the probe read back differs from what was written; is {_where()} an S3 API?")
        action = "conditional PutObject"
        try:
            _conditional_writes(bucket, f"{probe}/lease.json")
        except CFTError as error:
            raise CheckFailed(f"the run lease's conditional writes fail: {explain(error, action, bucket)}; "
                              "training cannot take its lease there") from None
        action = "DeleteObjects"
        bucket.delete_prefix(probe)
        written = False
        action = "ListObjectsV2"
        if bucket.list_keys(f"{probe}/"):
            raise CheckFailed(f"{root}: the probe is still listed after deleting it; the job deletes old checkpoints "
                              "(train.save_total_limit) the same way")
    except CFTError as error:
        raise CheckFailed(explain(error, action, bucket)) from None
    finally:
        if written:
            try:
                bucket.delete_prefix(probe)
            except CFTError:
                pass
    return (f"{root} at {_where()}: wrote, read back and deleted a probe; conditional writes (the run lease) "
            "honoured")
