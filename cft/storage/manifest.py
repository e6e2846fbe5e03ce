"""Reading and (re)writing a run's manifest.json, the file that says a run is complete.

It is written last by training, and rewritten (atomically, secrets redacted) when evaluation adds its scores, so a
reader sees either the old or the new manifest, never half of one.
"""

from __future__ import annotations

import json
from typing import Any

from cft.storage.bucket import Bucket, open_bucket


def read_manifest(bucket: Bucket, run_prefix: str) -> dict[str, Any] | None:
    """The manifest, or None when it is missing or unreadable (the run is then incomplete)."""
    text = bucket.read_text(f"{run_prefix}/manifest.json")
    if text is None:
        return None
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def write_manifest(bucket: Bucket, run_prefix: str, manifest: dict[str, Any]) -> None:
    from notify.redact import redact

    bucket.write_text(f"{run_prefix}/manifest.json", redact(json.dumps(manifest, indent=2, sort_keys=True)) + "\n")


def run_of_adapter(adapter_uri: str) -> tuple[Bucket, str] | None:
    """(bucket, run prefix) when `adapter_uri` is `<root>/runs/<run_id>/adapter`, else None."""
    parts = str(adapter_uri).rstrip("/").split("/")
    if len(parts) < 4 or parts[-1] != "adapter" or parts[-3] != "runs":
        return None
    root = "/".join(parts[:-3]) or "/"
    return open_bucket(root), f"runs/{parts[-2]}"


def record_scores(adapter_uri: str, scores: dict[str, float], summary_uri: str) -> bool:
    """Adds evaluation scores to the manifest of the run an adapter belongs to; False when there is none."""
    location = run_of_adapter(adapter_uri)
    if location is None:
        return False
    bucket, run_prefix = location
    manifest = read_manifest(bucket, run_prefix)
    if manifest is None:
        return False
    manifest.setdefault("metrics", {}).update({name: round(value, 2) for name, value in scores.items()})
    manifest["eval"] = {"summary": summary_uri, "tasks": sorted(k for k in scores if not k.endswith("_mean"))}
    write_manifest(bucket, run_prefix, manifest)
    return True
