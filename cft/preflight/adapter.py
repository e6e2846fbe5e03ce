"""For an evaluation job (one that takes `ADAPTER`): the adapter is where the job will look, whole, and its base model
is reachable, as `model` checks a recipe's.

The job reads `$ADAPTER`, else `$BUCKET/runs/$RUN_ID/adapter` (jobs/eval.yaml `run`); the adapter is whole when
PEFT's `adapter_config.json`, its weights and cft's `cft_metadata.json` are there, and the metadata names the base
model the evaluation loads.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import cft.preflight.model as model_check
from cft.errors import CFTError
from cft.modeling.metadata import METADATA_FILE, AdapterMetadata
from cft.preflight.bucket import explain, with_job_credentials
from cft.preflight.job import JobSpec
from cft.preflight.result import CheckFailed
from cft.storage.bucket import S3Bucket, open_bucket

ADAPTER_ENV = "ADAPTER"
WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")


def adapter_uri(env: Mapping[str, str], bucket_root: str | None) -> str:
    uri = env.get(ADAPTER_ENV) or ""
    if not uri:
        run_id = env.get("RUN_ID") or ""
        if not bucket_root or not run_id:
            raise CheckFailed("no adapter to evaluate: give --env ADAPTER=s3://.../runs/<run_id>/adapter, or --bucket "
                              "and --env RUN_ID=<run_id>, as the job needs")
        uri = f"{bucket_root.rstrip('/')}/runs/{run_id}/adapter"
    return uri.rstrip("/")


def check(env: Mapping[str, str], bucket_root: str | None, job: JobSpec) -> str:
    uri = adapter_uri(env, bucket_root)
    if not uri.startswith("s3://"):
        raise CheckFailed(f"ADAPTER {uri} is not in a bucket: the node evaluates what it can download; give "
                          "s3://.../runs/<run_id>/adapter")
    bucket = with_job_credentials(open_bucket(uri))
    assert isinstance(bucket, S3Bucket)
    try:
        names = {key.rsplit("/", 1)[-1] for key in bucket.list_keys("/")}
        text = bucket.read_text(METADATA_FILE) if METADATA_FILE in names else None
    except CFTError as error:
        raise CheckFailed(explain(error, "ListObjectsV2", bucket)) from None
    missing = [name for name in ("adapter_config.json", METADATA_FILE) if name not in names]
    if not any(name in names for name in WEIGHTS):
        missing.append(WEIGHTS[0])
    if missing or text is None:
        found = "nothing there" if not names else f"found {', '.join(sorted(names)[:6])}"
        raise CheckFailed(f"no whole adapter at {uri}: {', '.join(missing)} missing ({found}); check ADAPTER, or "
                          "BUCKET and RUN_ID (cft runs shows the runs)")
    try:
        metadata = AdapterMetadata.from_dict(json.loads(text), f"{uri}/{METADATA_FILE}")
    except (ValueError, TypeError, CFTError) as error:
        raise CheckFailed(f"{uri}/{METADATA_FILE} cannot be read ({error})") from None
    base = model_check.check(metadata.model, job)
    return f"adapter {uri} is whole; its base model {base}"
