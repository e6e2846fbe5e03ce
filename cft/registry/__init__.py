"""The runs in a bucket: listing, one run in detail, two runs compared (`cft runs`)."""

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
from notify.manifest import Manifest, ManifestError

__all__ = [
    "STALE_AFTER",
    "STATUSES",
    "Manifest",
    "ManifestError",
    "RunDetails",
    "RunRecord",
    "Score",
    "compare_runs",
    "headline_score",
    "list_runs",
    "load_run",
]
