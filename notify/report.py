"""What a run's notifications say: who ran what, where, for how long, and the result or the reason.

Kept apart from the process handling in ``wrapper.py`` so the text can be read and tested on its own. The
body is Markdown (ntfy renders it in the web app; phones show it as plain text, so it stays readable raw).
"""

from __future__ import annotations

import json
import re
import signal
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from notify.manifest import Manifest
TAIL_LINES = 15
MAX_LINE_CHARS = 240
MAX_METRICS = 8
HEADLINE_METRICS = ("sts_mean", "retrieval_mean", "train_loss", "eval_loss", "dev_score")
# Said once, in the dev score's own line (`dev_summary`), not again among the headline metrics.
DEV_LINE_METRICS = ("best_dev_score", "best_step", "adapter_step", "stopped_early_at_step", "dev_evaluations")


@dataclass
class Notification:
    title: str
    message: str
    priority: str
    tags: list[str] = field(default_factory=list)


def format_duration(seconds: float) -> str:
    """``1h 02m 03s``, ``4m 05s``, ``12s`` or ``0.4s``: a sentence on a phone screen, down to the second (and its
    tenth for a command that failed at once). ``cft runs`` has its own compact form for table columns."""
    if seconds < 10:
        return f"{max(0.0, seconds):.1f}s"
    total = int(round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m {secs:02d}s"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def describe_host(env: Mapping[str, str]) -> str:
    """SkyPilot cluster, cloud and region from ``SKYPILOT_CLUSTER_INFO`` when set, else the host name."""
    host = socket.gethostname()
    raw = env.get("SKYPILOT_CLUSTER_INFO")
    if raw:
        try:
            info = json.loads(raw)
        except (json.JSONDecodeError, RecursionError):
            info = None
        if isinstance(info, dict) and info.get("cluster_name"):
            where = ", ".join(str(info[k]) for k in ("cloud", "region", "zone") if info.get(k))
            host = f"{info['cluster_name']} ({where})" if where else str(info["cluster_name"])
    rank = env.get("SKYPILOT_NODE_RANK")
    if rank and env.get("SKYPILOT_NUM_NODES", "1") != "1":
        host += f", node {rank}"
    return host


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def exit_phrase(code: int) -> str:
    """``exit code 1``, or ``exit code 137 (SIGKILL)`` for the shell's 128+N convention."""
    if code > 128 and code - 128 < 65:
        return f"exit code {code} ({signal_name(code - 128)})"
    return f"exit code {code}"


def _last_lines(log_path: Path) -> list[str]:
    """The end of a log (64 KiB) as a terminal would show it (carriage-return progress bars collapsed)."""
    try:
        with open(log_path, "rb") as fh:
            fh.seek(0, 2)
            fh.seek(max(0, fh.tell() - 64 * 1024))
            data = fh.read().decode("utf-8", "replace")
    except OSError:
        return []
    return [line.rstrip("\r").rsplit("\r", 1)[-1] for line in data.splitlines()]


# Launchers (torchrun) print their own report after the command's error; these lines say why a run failed.
_USER_ERROR = re.compile(r"^\w+: error: .+")
_EXCEPTION = re.compile(r"^(?:[\w.]+\.)?(\w*(?:Error|Exception|Interrupt))(?::\s.*)?$")
_LAUNCHER_EXCEPTIONS = {"ChildFailedError"}


def failure_reason(log_path: Path) -> str | None:
    """The line that says why a command failed: its own one-line error, else the last exception it raised."""
    lines = [line.strip() for line in _last_lines(log_path)]
    for line in reversed(lines):
        if _USER_ERROR.match(line):
            return line[:MAX_LINE_CHARS]
    for line in reversed(lines):
        match = _EXCEPTION.match(line)
        if match and match.group(1) not in _LAUNCHER_EXCEPTIONS:
            return line[:MAX_LINE_CHARS]
    return None


def tail(log_path: Path, lines: int = TAIL_LINES) -> list[str]:
    """The last lines of a log as a terminal would show them (carriage-return progress bars collapsed)."""
    shown = _last_lines(log_path)
    shown = [line if len(line) <= MAX_LINE_CHARS else line[: MAX_LINE_CHARS - 1] + "…" for line in shown]
    while shown and not shown[-1].strip():
        shown.pop()
    return shown[-lines:]


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def headline_metrics(manifest: Manifest | None) -> list[tuple[str, str]]:
    """The metrics and scores worth a phone screen: the known headline ones first, then others, at most eight."""
    if manifest is None:
        return []
    metrics = {name: value for name, value in manifest.flat_metrics().items()
               if name not in DEV_LINE_METRICS or dev_summary(manifest) is None}
    names = [m for m in HEADLINE_METRICS if m in metrics]
    names += sorted(m for m in metrics if m not in names and isinstance(metrics[m], (int, float)))
    return [(name, _format_value(metrics[name])) for name in names[:MAX_METRICS]]


@dataclass
class RunFacts:
    """Everything the wrapper knows about a run when it reports on it."""

    name: str
    command: str
    run_id: str
    host: str
    log: str
    duration_s: float = 0.0
    exit_code: int | None = None
    signal_received: int | None = None
    manifest: Manifest | None = None
    tail: list[str] = field(default_factory=list)
    reason: str | None = None


def _common_lines(facts: RunFacts) -> list[str]:
    return [f"- run: `{facts.run_id}`", f"- log: `{facts.log}`"]


def _tail_block(facts: RunFacts) -> list[str]:
    if not facts.tail:
        return []
    return ["", f"Last {len(facts.tail)} lines:", "```", *facts.tail, "```"]


def started(facts: RunFacts) -> Notification:
    lines = [f"**{facts.name}** started on `{facts.host}`.", "", f"- command: `{facts.command}`"]
    return Notification(f"{facts.name} started", "\n".join(lines + _common_lines(facts)), "low", ["rocket"])


def dev_summary(manifest: Manifest | None, emphasis: str = "**") -> str | None:
    """The dev score's line, for a run that evaluated while it trained: the best score and its step, whether the
    adapter is that step's, and an early stop (manifest metrics best_dev_score, best_step, adapter_step,
    stopped_early_at_step). `emphasis` wraps the score (Markdown bold in a notification, nothing on a console)."""
    metrics = manifest.metrics if manifest else {}
    best, step = metrics.get("best_dev_score"), metrics.get("best_step")
    if not isinstance(best, (int, float)) or not isinstance(step, int):
        return None
    line = f"best dev score: {emphasis}{best:.2f}{emphasis} at step {step}"
    if metrics.get("adapter_step") == step and step != manifest.steps:
        line += " (the adapter's)"
    stopped = metrics.get("stopped_early_at_step")
    if isinstance(stopped, int):
        line += f"; stopped early at step {stopped}"
    return line


def succeeded(facts: RunFacts) -> Notification:
    lines = [f"**{facts.name}** succeeded in {format_duration(facts.duration_s)} on `{facts.host}`.", ""]
    dev = dev_summary(facts.manifest)
    lines += [f"- {dev}"] if dev else []
    lines += [f"- {name}: **{value}**" for name, value in headline_metrics(facts.manifest)]
    adapter = facts.manifest.adapter if facts.manifest else None
    if adapter:
        lines.append(f"- adapter: `{adapter}`")
    lines += _common_lines(facts)
    return Notification(f"{facts.name} succeeded", "\n".join(lines), "default", ["white_check_mark"])


def failed(facts: RunFacts) -> Notification:
    code = facts.exit_code if facts.exit_code is not None else -1
    head = f"**{facts.name}** failed with {exit_phrase(code)} after {format_duration(facts.duration_s)}"
    lines = [f"{head} on `{facts.host}`.", ""]
    if facts.reason:
        lines.append(f"- reason: `{facts.reason}`")
    lines += [f"- command: `{facts.command}`"] + _common_lines(facts) + _tail_block(facts)
    return Notification(f"{facts.name} failed: {exit_phrase(code)}", "\n".join(lines), "high", ["x"])


def interrupted(facts: RunFacts) -> Notification:
    sig = signal_name(facts.signal_received) if facts.signal_received else "a signal"
    code = facts.exit_code if facts.exit_code is not None else -1
    head = f"**{facts.name}** was interrupted by {sig} after {format_duration(facts.duration_s)}"
    lines = [f"{head} on `{facts.host}` and ended with {exit_phrase(code)}.", ""]
    lines += _common_lines(facts) + _tail_block(facts)
    return Notification(f"{facts.name} interrupted by {sig}", "\n".join(lines), "high", ["warning"])
