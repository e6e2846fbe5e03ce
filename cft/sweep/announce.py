"""The end of a sweep, told once: the member that ends last (or `cft sweep status`, for members that died before
their node ran) sends one notification with the winner and the top rows.

Two members may end at the same moment and both see the sweep ended; the bucket decides which one tells: only the
one whose conditional create of `sweeps/<name>/announced.json` succeeds publishes. If ntfy does not take the
notification, the claim is withdrawn so a later `cft sweep status` can try again. Members' own success
notifications are quiet within a sweep (jobs/pipeline.yaml sets NOTIFY_QUIET_SUCCESS); failures still reach the phone.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from cft.storage.bucket import Bucket
from cft.sweep.record import RESTARTS_ON_ERRORS, SweepRecord, announced_key, claim_announcement, mark_ended, require
from cft.sweep.status import MemberStatus, counts, has_ended, sort_rows, sweep_status, winner
from notify.client import NtfyClient

TOP_ROWS = 5
INTERRUPTED = (130, 143)  # 128 + SIGINT, 128 + SIGTERM


def message(record: SweepRecord, statuses: list[MemberStatus], bucket: Bucket) -> tuple[str, str]:
    """(title, body) of the end-of-sweep notification."""
    best = winner(statuses)
    if best is None:
        title = f"sweep {record.name} ended: no scores"
        lines = []
    else:
        top, key = best
        title = f"sweep {record.name} ended: {top.member.run_id} wins"
        digits = 4 if key == "loss" else 2
        lines = [f"winner: {top.member.run_id} ({top.member.label()}), {key.replace('_', ' ')} "
                 f"{top.value(key):.{digits}f}", "", f"top by {key.replace('_', ' ')}:"]
        for row in sort_rows(statuses, key)[:TOP_ROWS]:
            value = row.value(key)
            lines.append(f"- {row.member.run_id} {row.member.label()}: "
                         f"{'-' if value is None else f'{value:.{digits}f}'} ({row.state})")
        lines.append("")
    lines.append(f"{len(statuses)} members: {counts(statuses)}")
    lines.append(f"cft sweep status {record.name} --bucket {bucket.uri}")
    return title, "\n".join(lines)


def announce_if_ended(bucket: Bucket, record: SweepRecord, statuses: list[MemberStatus], by: str,
                      env: Mapping[str, str] = os.environ) -> str:
    """Sends the end-of-sweep notification if the sweep has ended and nobody has; says what happened."""
    if not has_ended(statuses):
        return "not ended"
    client = NtfyClient.from_env(env)
    if not client.enabled:
        return "ended; not announced (NTFY_TOPIC is not set)"
    if not claim_announcement(bucket, record.name, by):
        return "ended; already announced"
    title, body = message(record, statuses, bucket)
    failed = any(s.state != "succeeded" for s in statuses)
    if client.publish(body, title=title, priority="high" if failed else "default",
                      tags=["warning" if failed else "trophy"]):
        return "ended; announced"
    bucket.delete_key(announced_key(record.name))  # let a later `cft sweep status` try again
    return "ended; the notification was not accepted (cft sweep status tries again)"


def member_ended(bucket: Bucket, name: str, run_id: str, task: str, exit_code: int,
                 env: Mapping[str, str] = os.environ, restarts: int = RESTARTS_ON_ERRORS) -> str:
    """On a member's node, when its last task ended (eval, or a failed train): mark it, then tell if it was the last.

    A task stopped by a signal (SIGTERM: preemption, cancel; SIGINT) is not an end: SkyPilot recovers a preempted
    task, and a cancel is SkyPilot's to report (`cft sweep status` reads it)."""
    if exit_code in INTERRUPTED:
        return f"{task} was interrupted (exit {exit_code}); not an end"
    record, _ = require(bucket, name)
    if record.member(run_id) is None:
        return f"{run_id} is not a member of sweep {name}; nothing recorded"
    marker = mark_ended(bucket, name, run_id, task, exit_code, restarts)
    if not marker["final"]:
        return f"{task} failed ({marker['failures']} time(s)); SkyPilot restarts it up to {restarts} times"
    statuses = sweep_status(bucket, record, jobs=None)  # the node has no SkyPilot: markers and run records
    return announce_if_ended(bucket, record, statuses, by=run_id, env=env)
