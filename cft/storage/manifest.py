"""Reading and (re)writing a run's manifest.json in a bucket, the file that says a run is complete.

The `Manifest` type and its schema are `notify.manifest`'s (one definition, readable without cft); this module only
moves it in and out of a `Bucket`. It is written last by training, and rewritten (atomically, secrets redacted) when
evaluation adds its scores, so a reader sees either the old or the new manifest, never half of one.
"""

from __future__ import annotations

from cft.storage.bucket import Bucket, open_bucket
from notify.manifest import Manifest, ManifestError
from notify.run_layout import RunPaths, run_of_adapter


def read_manifest(bucket: Bucket, run_id: str) -> Manifest | None:
    """The run's manifest; None when it has none. ManifestError when one exists but cannot be trusted."""
    text = bucket.read_text(RunPaths(run_id).manifest)
    return None if text is None else Manifest.from_json(text)


def write_manifest(bucket: Bucket, run_id: str, manifest: Manifest) -> None:
    """Writes it into the folder of `run_id` (a copied run's manifest may name another id), secrets redacted."""
    from notify.redact import redact

    bucket.write_text(RunPaths(run_id).manifest, redact(manifest.to_json()))


def record_scores(adapter_uri: str, scores: dict[str, float], summary_uri: str,
                  baseline: dict[str, float] | None = None) -> Manifest | None:
    """Adds evaluation scores to the manifest of the run an adapter belongs to; None when there is none."""
    location = run_of_adapter(adapter_uri)
    if location is None:
        return None
    root, run_id = location
    bucket = open_bucket(root)
    try:
        manifest = read_manifest(bucket, run_id)
    except ManifestError:  # `cft runs` shows it as corrupt; scores added to it would not be read either
        return None
    if manifest is None:
        return None
    manifest.record_scores(scores, summary_uri, baseline)
    write_manifest(bucket, run_id, manifest)
    return manifest
