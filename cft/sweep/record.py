"""A sweep's record in the bucket, and the markers its members and its announcement leave beside it.

    <bucket>/sweeps/<name>.json                  the record: the sweep's settings, its members, their managed jobs
    <bucket>/sweeps/<name>/ended/<run_id>.json   written by a member's node when its last task ends (or a task fails)
    <bucket>/sweeps/<name>/announced.json        the end-of-sweep notification was sent (created by exactly one)
    <bucket>/sweeps/<name>.png                   score against the varied setting(s), drawn by `cft sweep status`

The record is created with a conditional write (if absent) and replaced only if unchanged since it was read (if
match), so two launchers of one sweep never overwrite each other's job ids; a reader sees the old record or the new
one, never half of one. Nodes write only their own ended marker, never the record.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

from cft.errors import CFTError
from cft.storage.bucket import Bucket, PreconditionFailed
from cft.sweep.grid import Member, SweepSpec

SWEEPS_DIR = "sweeps"
SCHEMA = 1
# jobs/pipeline.yaml's `job_recovery: max_restarts_on_errors` (tests/test_sweep.py keeps the two equal).
RESTARTS_ON_ERRORS = 3


def record_key(name: str) -> str:
    return f"{SWEEPS_DIR}/{name}.json"


def plot_key(name: str) -> str:
    return f"{SWEEPS_DIR}/{name}.png"


def ended_key(name: str, run_id: str) -> str:
    return f"{SWEEPS_DIR}/{name}/ended/{run_id}.json"


def announced_key(name: str) -> str:
    return f"{SWEEPS_DIR}/{name}/announced.json"


def now_text() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class MemberRecord:
    index: int
    run_id: str
    settings: dict[str, str]
    job_ids: list[int] = field(default_factory=list)  # managed jobs, oldest first; the last is the current one
    launches: int = 0
    launched_at: str | None = None
    local: bool = False  # run with --local: no managed job

    @classmethod
    def of(cls, member: Member) -> MemberRecord:
        return cls(member.index, member.run_id, dict(member.settings))

    def pairs(self) -> list[str]:
        return [f"{key}={value}" for key, value in self.settings.items()]

    def label(self) -> str:
        return Member(self.index, self.run_id, self.settings).label()


@dataclass
class SweepRecord:
    name: str
    config: str
    sets: list[str]
    grid: dict[str, list[str]]
    members: list[MemberRecord]
    created_at: str = field(default_factory=now_text)
    updated_at: str = field(default_factory=now_text)
    max_parallel: int | None = None
    cancelled_at: str | None = None
    schema: int = SCHEMA

    @classmethod
    def new(cls, spec: SweepSpec, members: list[Member], max_parallel: int | None) -> SweepRecord:
        return cls(spec.name, spec.config, list(spec.sets), spec.grid, [MemberRecord.of(m) for m in members],
                   max_parallel=max_parallel)

    def same_sweep(self, spec: SweepSpec) -> bool:
        return {"config": self.config, "sets": self.sets, "grid": self.grid} == spec.to_dict()

    def member(self, run_id: str) -> MemberRecord | None:
        return next((m for m in self.members if m.run_id == run_id), None)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str, where: str) -> SweepRecord:
        try:
            data = json.loads(text)
            members = [MemberRecord(**m) for m in data.pop("members")]
            return cls(members=members, **data)
        except (ValueError, TypeError, KeyError, AttributeError) as error:
            raise CFTError(f"{where}: not a sweep record cft can read ({type(error).__name__}: {error}); "
                           "start a sweep with another --name") from None


def load(bucket: Bucket, name: str) -> tuple[SweepRecord, str] | None:
    """(record, etag) or None when the bucket has no sweep of that name."""
    found = bucket.read_versioned(record_key(name))
    if found is None:
        return None
    text, etag = found
    return SweepRecord.from_json(text, bucket.join(record_key(name))), etag


def require(bucket: Bucket, name: str) -> tuple[SweepRecord, str]:
    found = load(bucket, name)
    if found is None:
        known = sorted(key[len(SWEEPS_DIR) + 1:-len(".json")] for key in bucket.list_keys(f"{SWEEPS_DIR}/")
                       if key.count("/") == 1 and key.endswith(".json"))
        hint = f"; sweeps there: {', '.join(known)}" if known else "; it has none (start one with cft sweep launch)"
        raise CFTError(f"sweep {name!r} not found in {bucket.join(SWEEPS_DIR)}{hint}")
    return found


def create(bucket: Bucket, record: SweepRecord) -> str | None:
    """Writes a new record; the etag, or None when another launcher created it first (then read that one)."""
    try:
        return bucket.write_if_absent(record_key(record.name), record.to_json())
    except PreconditionFailed:
        return None


def save(bucket: Bucket, record: SweepRecord, etag: str) -> str:
    """Replaces the record if nobody changed it since `etag`; the new etag."""
    record.updated_at = now_text()
    try:
        return bucket.write_if_match(record_key(record.name), record.to_json(), etag)
    except PreconditionFailed:
        raise CFTError(f"{bucket.join(record_key(record.name))} changed while this command ran (another "
                       f"`cft sweep launch` or `cft sweep cancel` of {record.name}?); run the command again") from None


def mark_ended(bucket: Bucket, name: str, run_id: str, task: str, exit_code: int,
               restarts: int = RESTARTS_ON_ERRORS) -> dict[str, Any]:
    """A member's task ended: succeeded (its last task), or failed. SkyPilot restarts a task that fails on a healthy
    node up to `restarts` times, and a node cannot tell a restart is coming, so it counts its failures: the marker
    is `final` once the task succeeded or failed more than `restarts` times in this launch."""
    key = ended_key(name, run_id)
    previous = bucket.read_text(key)
    failures = 0
    if exit_code != 0:
        try:
            before = json.loads(previous) if previous else {}
        except ValueError:
            before = {}
        same_task = isinstance(before, dict) and before.get("task") == task and before.get("outcome") == "failed"
        failures = (int(before.get("failures") or 0) if same_task else 0) + 1
    marker = {"run_id": run_id, "outcome": "succeeded" if exit_code == 0 else "failed", "task": task,
              "exit_code": exit_code, "failures": failures, "final": exit_code == 0 or failures > restarts,
              "at": now_text()}
    bucket.write_text(key, json.dumps(marker) + "\n")
    return marker


def ended_markers(bucket: Bucket, name: str) -> dict[str, dict[str, Any]]:
    """run id -> what its node wrote when it ended (a marker that cannot be read counts as failed)."""
    prefix = f"{SWEEPS_DIR}/{name}/ended/"
    found: dict[str, dict[str, Any]] = {}
    for key in bucket.list_keys(prefix):
        run_id = key[len(prefix):].removesuffix(".json")
        try:
            data = json.loads(bucket.read_text(key) or "")
            found[run_id] = data if isinstance(data, dict) else {"outcome": "failed"}
        except ValueError:
            found[run_id] = {"outcome": "failed"}
    return found


def forget_end(bucket: Bucket, name: str, run_id: str) -> None:
    """Before a member is launched again: its old end no longer counts, and the sweep may end (and be told) again."""
    bucket.delete_key(ended_key(name, run_id))
    bucket.delete_key(announced_key(name))


def claim_announcement(bucket: Bucket, name: str, by: str) -> bool:
    """True for exactly one caller per end of the sweep: the bucket's conditional create decides."""
    try:
        bucket.write_if_absent(announced_key(name), json.dumps({"by": by, "at": now_text()}) + "\n")
        return True
    except PreconditionFailed:
        return False


def announced(bucket: Bucket, name: str) -> bool:
    return bucket.exists(announced_key(name))
