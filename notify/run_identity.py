"""Run identity: one id names everything a run writes under ``<bucket>/runs/<run_id>/``.

It must survive managed-job recoveries (SkyPilot keeps ``SKYPILOT_TASK_ID`` stable across them) and be safe
as a path segment and an object key, so it is resolved and sanitized here, once, for both ``cft`` and ``notify``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from datetime import datetime

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
TIMESTAMP_FORMAT = "%Y%m%d-%H%M%S"


def sanitize_run_id(s: str) -> str:
    """Replace every character outside ``[A-Za-z0-9._-]`` with ``-``."""
    return _UNSAFE.sub("-", s)


def timestamp(now: datetime | None = None) -> str:
    """``YYYYmmdd-HHMMSS`` in local time: the default run id and the suffix of log file names."""
    return (now or datetime.now()).strftime(TIMESTAMP_FORMAT)


def resolve_run_id(
    explicit: str | None = None, env: Mapping[str, str] = os.environ, now: datetime | None = None
) -> str:
    """``explicit``, else env ``RUN_ID``, else env ``SKYPILOT_TASK_ID``, else a timestamp; always sanitized."""
    for candidate in (explicit, env.get("RUN_ID"), env.get("SKYPILOT_TASK_ID")):
        if candidate and candidate.strip():
            return sanitize_run_id(candidate.strip())
    return timestamp(now)
