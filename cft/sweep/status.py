"""Where a sweep stands: each member's state and numbers, one table, a winner, and a plot of score against setting.

A member's state comes from the best witness there is, in this order:

    SkyPilot's queue     (`sky jobs queue`, when reachable) for a member with a managed job: starting, running,
                         recovering, cancelling, succeeded, failed (every FAILED_*), cancelled
    its ended marker     written by its node when its last task ended: succeeded or failed, or restarting (a task
                         failed, and SkyPilot restarts it up to max_restarts_on_errors times)
    its run record       (`cft runs`' reading of the run folder): running, interrupted, trained (not evaluated yet)
    the sweep record     pending (never launched), launched (nothing heard yet), or lost (launched, but SkyPilot's
                         queue does not know its job and the bucket has nothing of it)

Numbers always come from the run's manifest: steps, the final loss, the dev scores that evaluation during training
writes (`metrics.dev_score`, `metrics.best_dev_score`) and the test score that evaluation adds (`sts_mean`, or the
mean of the evaluated tasks). A number a run does not have is shown as '-'.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cft.registry.runs import RunRecord, build_record
from cft.storage.bucket import Bucket
from cft.sweep.record import MemberRecord, SweepRecord, ended_markers, plot_key
from cft.sweep.sky_cli import Job, sweep_state
from notify.run_layout import RunPaths

TERMINAL = ("succeeded", "failed", "cancelled", "lost")
ACTIVE = ("starting", "running", "recovering", "cancelling")
SORT_KEYS = {"test": True, "dev": True, "best_dev": True, "loss": False}  # name -> higher is better


@dataclass
class MemberStatus:
    member: MemberRecord
    state: str
    source: str  # sky, node, run, record
    job_id: int | None = None
    steps: int | None = None
    loss: float | None = None
    dev: float | None = None
    best_dev: float | None = None
    test: float | None = None
    reason: str | None = None

    def value(self, key: str) -> float | None:
        return getattr(self, key)

    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.member.run_id, "settings": self.member.settings, "state": self.state,
                "source": self.source, "job_id": self.job_id, "steps": self.steps, "loss": self.loss,
                "dev_score": self.dev, "best_dev_score": self.best_dev, "test_score": self.test,
                "reason": self.reason}


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def run_record(bucket: Bucket, run_id: str) -> RunRecord | None:
    prefix = RunPaths(run_id).prefix
    files = [key[len(prefix) + 1:] for key in bucket.list_keys(f"{prefix}/")]
    return build_record(bucket, run_id, files) if files else None


def _state_from_run(record: RunRecord) -> str:
    if record.status == "succeeded":
        return "trained"  # the pipeline's eval task has not ended yet (or its node never said so)
    return {"running": "running", "interrupted": "interrupted", "failed": "failed"}.get(record.status, "launched")


def member_status(bucket: Bucket, member: MemberRecord, jobs: dict[int, Job] | None,
                  marker: dict[str, Any] | None) -> MemberStatus:
    record = run_record(bucket, member.run_id)
    job_id = member.job_ids[-1] if member.job_ids else None
    if jobs is not None and job_id is not None and job_id in jobs:
        job = jobs[job_id]
        status = MemberStatus(member, sweep_state(job.status), "sky", job_id,
                              reason=job.failure_reason if job.status.startswith("FAILED") else None)
    elif marker is not None:
        outcome = marker.get("outcome") if marker.get("outcome") in ("succeeded", "failed") else "failed"
        reason = f"{marker.get('task', 'a task')} exited with code {marker.get('exit_code')}" if outcome == "failed" else None
        if outcome == "failed" and marker.get("final") is False:  # SkyPilot restarts it (max_restarts_on_errors)
            outcome, reason = "restarting", f"{reason} ({marker.get('failures')} failure(s) so far; SkyPilot restarts it)"
        status = MemberStatus(member, outcome, "node", job_id, reason=reason)
    elif record is not None and (member.launches or member.local):
        status = MemberStatus(member, _state_from_run(record), "run", job_id, reason=record.reason)
    elif jobs is not None and member.launches and not member.local:
        # SkyPilot answered and does not know its job, and the member left nothing in the bucket: it will not run
        what = f"managed job {job_id}" if job_id is not None else "its managed job (id never reported)"
        status = MemberStatus(member, "lost", "sky", job_id, reason=f"{what} is not in `sky jobs queue`")
    elif member.launches or member.local:
        status = MemberStatus(member, "launched", "record", job_id)
    else:
        status = MemberStatus(member, "pending", "record")
    if record is not None:
        metrics = record.metrics
        status.steps = record.steps
        status.loss = _number(metrics.get("final_loss")) if metrics.get("final_loss") is not None else \
            _number(metrics.get("train_loss"))
        status.dev = _number(metrics.get("dev_score"))
        status.best_dev = _number(metrics.get("best_dev_score"))
        if record.score is not None and record.score.label in ("sts_mean", "eval_mean"):
            status.test = record.score.value
    return status


def sweep_status(bucket: Bucket, record: SweepRecord, jobs: dict[int, Job] | None) -> list[MemberStatus]:
    markers = ended_markers(bucket, record.name)
    return [member_status(bucket, m, jobs, markers.get(m.run_id)) for m in record.members]


def has_ended(statuses: list[MemberStatus]) -> bool:
    return bool(statuses) and all(s.state in TERMINAL for s in statuses)


def sort_rows(statuses: list[MemberStatus], key: str | None) -> list[MemberStatus]:
    if not key:
        return list(statuses)
    higher = SORT_KEYS[key]
    present = [s for s in statuses if s.value(key) is not None]
    missing = [s for s in statuses if s.value(key) is None]
    return sorted(present, key=lambda s: s.value(key), reverse=higher) + missing


def ranking_key(statuses: list[MemberStatus]) -> str | None:
    """What decides the winner: the test score when any member has one, else the best dev score, else the loss."""
    for key in ("test", "best_dev", "dev", "loss"):
        if any(s.value(key) is not None for s in statuses):
            return key
    return None


def winner(statuses: list[MemberStatus]) -> tuple[MemberStatus, str] | None:
    key = ranking_key(statuses)
    if key is None:
        return None
    return sort_rows(statuses, key)[0], key


def _cell(value: float | int | None, digits: int = 2) -> str:
    if value is None:
        return "-"
    return str(value) if isinstance(value, int) else f"{value:.{digits}f}"


def short_key(key: str) -> str:
    return key.rsplit(".", 1)[-1]


def table_rows(record: SweepRecord, statuses: list[MemberStatus]) -> tuple[list[str], list[list[str]]]:
    keys = list(record.grid)
    header = ["MEMBER", *[short_key(k) for k in keys], "STATE", "JOB", "STEPS", "LOSS", "DEV", "BEST DEV", "TEST"]
    rows = [[s.member.run_id, *[s.member.settings.get(k, "-") for k in keys], s.state,
             _cell(s.job_id), _cell(s.steps), _cell(s.loss, 4), _cell(s.dev), _cell(s.best_dev), _cell(s.test)]
            for s in statuses]
    return header, rows


def format_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in [header, *rows])


def counts(statuses: list[MemberStatus]) -> str:
    found: dict[str, int] = {}
    for s in statuses:
        found[s.state] = found.get(s.state, 0) + 1
    return ", ".join(f"{n} {state}" for state, n in found.items())


def format_status(record: SweepRecord, statuses: list[MemberStatus], sort: str | None, where: str) -> str:
    header, rows = table_rows(record, sort_rows(statuses, sort))
    lines = [format_table(header, rows), ""]
    notes = [f"{s.member.run_id}: {s.reason}" for s in statuses if s.reason and s.state not in ("running", "succeeded")]
    if notes:
        lines += [*notes, ""]
    best = winner(statuses)
    if best:
        top, key = best
        lines.append(f"best by {key.replace('_', ' ')}: {top.member.run_id} ({top.member.label()}) "
                     f"{top.value(key):.{4 if key == 'loss' else 2}f}")
    ended = "ended" if has_ended(statuses) else "in progress"
    lines.append(f"sweep {record.name} ({ended}): {len(statuses)} members, {counts(statuses)}; record {where}")
    return "\n".join(lines)


def draw_plot(bucket: Bucket, record: SweepRecord, statuses: list[MemberStatus]) -> str | None:
    """Score against the first varied setting (one line per combination of the others) as `<name>.png` beside the
    record; its location, or None when no member has a score yet or matplotlib is not installed."""
    key = ranking_key(statuses)
    if key is None:
        return None
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    keys = list(record.grid)
    x_key, others = keys[0], keys[1:]
    x_values = record.grid[x_key]
    lines: dict[str, list[tuple[int, float]]] = {}
    for s in statuses:
        value = s.value(key)
        if value is None or s.member.settings.get(x_key) not in x_values:
            continue
        label = " ".join(f"{short_key(k)}={s.member.settings.get(k)}" for k in others) or record.name
        lines.setdefault(label, []).append((x_values.index(s.member.settings[x_key]), value))
    figure, axes = plt.subplots(figsize=(6.4, 4.0))
    for label, points in lines.items():
        points.sort()
        axes.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=label)
    axes.set_xticks(range(len(x_values)), x_values)
    axes.set_xlabel(x_key)
    axes.set_ylabel({"test": "test score", "best_dev": "best dev score", "dev": "dev score", "loss": "final loss"}[key])
    axes.set_title(f"sweep {record.name}")
    axes.grid(alpha=0.3)
    if others:
        axes.legend(fontsize="small")
    figure.tight_layout()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "sweep.png"
        figure.savefig(path, dpi=100)
        plt.close(figure)
        bucket.upload_file(path, plot_key(record.name))
    return bucket.join(plot_key(record.name))
