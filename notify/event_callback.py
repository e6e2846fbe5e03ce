"""SkyPilot managed-jobs ``event_callback``: a notification per state change the node itself cannot see.

The jobs controller runs the callback command on every status change of a managed job, with these variables
set (``sky/jobs/utils.py``, ``event_callback_func``): ``JOB_ID``, ``TASK_ID``, ``TASK_NAME``, ``JOB_STATUS``,
``CLUSTER_NAME``, ``SKYPILOT_TASK_ID``, ``SKYPILOT_TASK_IDS`` and ``EVENT_TYPE``; recent SkyPilot versions also
pass the task's ``envs``. It gets envs, not secrets, so it works with ``NTFY_TOPIC`` alone. Statuses
(``sky/jobs/state.py``): STARTING, STARTED, RECOVERING, RECOVERED, SUCCEEDED, FAILED*, CANCELLED; the
transitional ones (STARTING, CANCELLING, ...) are skipped. The callback always exits 0: a notification
problem must not be mistaken for a job problem.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass

from notify.notifier import Notifier
from notify.redact import redact
from notify.run_identity import sanitize_run_id


@dataclass(frozen=True)
class EventStyle:
    verb: str
    priority: str
    tags: tuple[str, ...]
    explanation: str


EVENTS: dict[str, EventStyle] = {
    "STARTED": EventStyle("started", "low", ("arrow_forward",), "The job is running on its cluster."),
    "RECOVERING": EventStyle(
        "recovering", "high", ("arrows_counterclockwise",),
        "The cluster was lost (preemption or failure); SkyPilot is relaunching it and the job will resume "
        "from its last checkpoint.",
    ),
    "RECOVERED": EventStyle("recovered", "default", ("arrow_forward",), "The job is running again."),
    "SUCCEEDED": EventStyle("succeeded", "default", ("white_check_mark",), "The job finished."),
    "CANCELLED": EventStyle("cancelled", "default", ("no_entry",), "The job was cancelled."),
}
FAILURE = EventStyle("failed", "urgent", ("x",), "The job failed; see `sky jobs logs {job_id}`.")


def style_for(status: str) -> EventStyle | None:
    """How to report ``status``; None for states not worth a buzz."""
    if status.startswith("FAILED"):
        return FAILURE
    return EVENTS.get(status)


def build(env: Mapping[str, str]) -> tuple[str, str, str, tuple[str, ...]] | None:
    """(title, message, priority, tags) for the event described by ``env``, or None to skip it."""
    status = (env.get("JOB_STATUS") or "").strip().upper()
    style = style_for(status)
    if style is None:
        return None
    job_id = env.get("JOB_ID") or "?"
    task = env.get("TASK_NAME") or "job"
    title = f"{task} #{job_id} {style.verb}" + (f" ({status})" if style is FAILURE and status != "FAILED" else "")
    lines = [f"Managed job **{task}** (id {job_id}): `{status}`.", "", style.explanation.format(job_id=job_id), ""]
    if env.get("CLUSTER_NAME"):
        lines.append(f"- cluster: `{env['CLUSTER_NAME']}`")
    task_id = env.get("SKYPILOT_TASK_ID", "")
    if task_id and task_id != "N.A.":
        lines.append(f"- run: `{sanitize_run_id(task_id)}`")
    lines.append(f"- logs: `sky jobs logs {job_id}`")
    return title, "\n".join(lines), style.priority, style.tags


def main(env: Mapping[str, str] = os.environ) -> int:
    """Send the notification for the current event; always 0."""
    try:
        event = build(env)
        if event is None:
            status = env.get("JOB_STATUS") or "(no JOB_STATUS)"
            line = f"notify: managed job {env.get('JOB_ID', '?')} is {status}; not worth a notification"
            print(redact(line, env), file=sys.stderr)
            return 0
        title, message, priority, tags = event
        Notifier.from_env(env).publish(message, title=title, priority=priority, tags=list(tags))
    except Exception as exc:  # never fail the controller's callback
        print(redact(f"notify: event callback failed: {exc}", env), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
