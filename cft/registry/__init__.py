"""The runs in a bucket: listing, one run in detail, two runs compared (`cft runs`)."""

from cft.registry.manifest import ManifestError, parse_manifest, validate_manifest
from cft.registry.runs import (
    STALE_AFTER,
    STATUSES,
    RunDetails,
    RunRecord,
    Score,
    compare_runs,
    headline_score,
    list_runs,
    load_run,
)

__all__ = [
    "STALE_AFTER",
    "STATUSES",
    "ManifestError",
    "RunDetails",
    "RunRecord",
    "Score",
    "compare_runs",
    "headline_score",
    "list_runs",
    "load_run",
    "parse_manifest",
    "validate_manifest",
]
