"""Run identity: one id names everything a run writes under ``<bucket>/runs/<run_id>/``.

It must survive managed-job recoveries (SkyPilot keeps ``SKYPILOT_TASK_ID`` stable across them) and be safe
as a path segment and an object key, so it is resolved and validated here, once, for both ``cft`` and ``notify``:
one path segment of ``[A-Za-z0-9._-]`` that starts with a letter or digit (so never ``.``, ``..`` or hidden),
at most 128 characters. An id that is not is refused, never rewritten: a user who typed ``my run`` would
otherwise find the run under another name. SkyPilot's own ids (``sky-2026-..._cluster_1``) already fit.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from datetime import datetime

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_VALID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


class InvalidRunId(ValueError):
    """A run id that is not one safe path segment; the message names its source and the rule."""
TIMESTAMP_FORMAT = "%Y%m%d-%H%M%S"


def sanitize_run_id(s: str) -> str:
    """Replace every character outside ``[A-Za-z0-9._-]`` with ``-`` (for names that are not run ids)."""
    return _UNSAFE.sub("-", s)


def timestamp(now: datetime | None = None) -> str:
    """``YYYYmmdd-HHMMSS`` in local time: the default run id and the suffix of log file names."""
    return (now or datetime.now()).strftime(TIMESTAMP_FORMAT)


def resolve_run_id(
    explicit: str | None = None, env: Mapping[str, str] = os.environ, now: datetime | None = None
) -> str:
    """``explicit``, else env ``RUN_ID``, else env ``SKYPILOT_TASK_ID``, else a timestamp; InvalidRunId if unsafe."""
    sources = (("--run-id", explicit), ("RUN_ID", env.get("RUN_ID")), ("SKYPILOT_TASK_ID", env.get("SKYPILOT_TASK_ID")))
    for source, candidate in sources:
        if candidate and candidate.strip():
            return validate_run_id(candidate.strip(), source)
    return timestamp(now)


def validate_run_id(run_id: str, source: str = "run id") -> str:
    """The id itself when it is one safe path segment, else InvalidRunId naming `source` and the rule."""
    if not _VALID.fullmatch(run_id):
        raise InvalidRunId(f"{source} {run_id!r} is not a valid run id: use 1-128 letters, digits, '.', '_' or '-', "
                           "starting with a letter or digit (e.g. exp-2026-01-02)")
    return run_id
