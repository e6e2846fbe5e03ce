"""Checks a run's manifest.json against the schema in spec.md before anything reads a field from it.

A manifest is the one file a reader trusts, so a manifest that is not JSON, lacks a field, or holds a value of the
wrong type is reported as *corrupt* with the first problem found, never half-used and never a crash.
"""

from __future__ import annotations

import json
from typing import Any

MANIFEST_FILE = "manifest.json"
FINAL_STATUSES = ("succeeded", "failed")

_NUMBER = (int, float)

# field -> (allowed types, may be null, required)
SCHEMA: dict[str, tuple[tuple[type, ...], bool, bool]] = {
    "run_id": ((str,), False, True),
    "status": ((str,), False, True),
    "model": ((str,), False, True),
    "recipe": ((str,), False, True),
    "started_at": ((str,), True, True),
    "finished_at": ((str,), True, True),
    "duration_s": (_NUMBER, True, True),
    "steps": ((int,), True, True),
    "metrics": ((dict,), False, True),
    "adapter": ((str,), True, True),
    "recipe_name": ((str,), True, False),
    "git_sha": ((str,), True, False),
    "cft_version": ((str,), True, False),
    "resumed_from_step": ((int,), True, False),
    "world_size": ((int,), True, False),
    "error": ((str,), True, False),
}

_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", dict: "an object"}


class ManifestError(ValueError):
    """The manifest cannot be trusted; the message says why, in a few words."""


def _describe(types: tuple[type, ...], nullable: bool) -> str:
    name = "a number" if types == _NUMBER else _TYPE_NAMES.get(types[0], types[0].__name__)
    return f"{name} or null" if nullable else name


def _is_number(value: Any) -> bool:
    return isinstance(value, _NUMBER) and not isinstance(value, bool)


def _type_ok(value: Any, types: tuple[type, ...]) -> bool:
    if isinstance(value, bool):  # JSON true/false are not steps or durations
        return bool in types
    return isinstance(value, types)


def parse_manifest(text: str) -> dict[str, Any]:
    """The manifest as a dict, or ManifestError naming the first problem."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ManifestError(f"{MANIFEST_FILE} is not JSON ({error.msg}: line {error.lineno} column {error.colno})") from None
    except RecursionError:  # a hostile or damaged file: corrupt, like any other unreadable manifest
        raise ManifestError(f"{MANIFEST_FILE} is nested too deeply to be a manifest") from None
    validate_manifest(data)
    return data


def validate_manifest(data: Any) -> None:
    if not isinstance(data, dict):
        raise ManifestError(f"{MANIFEST_FILE} holds {type(data).__name__}, not an object")
    for field, (types, nullable, required) in SCHEMA.items():
        if field not in data:
            if required:
                raise ManifestError(f"{MANIFEST_FILE}: missing field {field!r}")
            continue
        value = data[field]
        if value is None:
            if not nullable:
                raise ManifestError(f"{MANIFEST_FILE}: {field} must be {_describe(types, nullable)} (got null)")
            continue
        if not _type_ok(value, types):
            raise ManifestError(f"{MANIFEST_FILE}: {field} must be {_describe(types, nullable)} "
                                f"(got {type(value).__name__} {_short(value)})")
    if data["status"] not in FINAL_STATUSES:
        raise ManifestError(f"{MANIFEST_FILE}: status must be one of {', '.join(FINAL_STATUSES)} (got {data['status']!r})")
    if data["status"] == "succeeded":
        for field in ("steps", "adapter"):
            if data[field] is None:
                raise ManifestError(f"{MANIFEST_FILE}: a succeeded run needs {field} (got null)")
    for name, value in data["metrics"].items():
        if value is not None and not _is_number(value):
            raise ManifestError(f"{MANIFEST_FILE}: metrics.{name} must be a number or null "
                                f"(got {type(value).__name__} {_short(value)})")


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."
