"""The wrapped jobs of this machine: one JSON record per job, so ``notify ls`` and ``notify logs`` can find them.

A job started over SSH outlives the connection (``notify run --detach``), so a later login needs a list of what
runs, what ended and where each log is. Each ``notify run`` writes its record when the command starts and again
when it ends, atomically (temp file, then rename), into ``$NOTIFY_STATE_DIR``, else ``$XDG_STATE_HOME/cft-notify``,
else ``~/.local/state/cft-notify``. A record still "running" whose wrapper is gone (killed with SIGKILL, the
machine rebooted) is shown as "interrupted": nobody is left to write its end.
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO

STATES = ("running", "succeeded", "failed", "interrupted")


def state_dir(env: Mapping[str, str] = os.environ) -> Path:
    """Where the records live (not created here)."""
    if env.get("NOTIFY_STATE_DIR"):
        return Path(env["NOTIFY_STATE_DIR"]).expanduser()
    base = env.get("XDG_STATE_HOME") or str(Path(env.get("HOME") or Path.home()) / ".local" / "state")
    return Path(base).expanduser() / "cft-notify"


def new_job_id(name: str) -> str:
    """``<name>-YYYYmmdd-HHMMSS-<4 hex>``: sorts by start, unique without a lock."""
    return f"{name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def process_start(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (``/proc/<pid>/stat`` field 22): tells a live wrapper from a reused pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[19]  # fields after the command name start at field 3


def _alive(pid: int, started: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if started is None or not Path("/proc").is_dir():
        return True
    return process_start(pid) == started


@dataclass
class JobRecord:
    """One wrapped job, as written by the wrapper that runs it."""

    id: str
    name: str
    command: str
    log: str
    state: str = "running"
    pid: int | None = None  # the wrapper's: it writes the end of the record
    pid_start: str | None = None
    child_pid: int | None = None
    started_at: str | None = None
    ended_at: str | None = None
    exit_code: int | None = None
    run_id: str | None = None
    tmux: str | None = None  # the tmux session of a detached job

    def current_state(self) -> str:
        """The recorded state, except that a running job whose wrapper is gone was interrupted."""
        if self.state == "running" and self.pid is not None and not _alive(self.pid, self.pid_start):
            return "interrupted"
        return self.state

    def duration_s(self) -> float | None:
        if not self.started_at:
            return None
        end = datetime.fromisoformat(self.ended_at) if self.ended_at else datetime.now(timezone.utc)
        return max(0.0, (end - datetime.fromisoformat(self.started_at)).total_seconds())

    def to_json(self) -> dict[str, object]:
        data = asdict(self)
        data["state"] = self.current_state()
        data["duration_s"] = self.duration_s()
        return data


def write(record: JobRecord, env: Mapping[str, str] = os.environ) -> Path:
    """Write the record atomically; raises OSError (the wrapper reports it and goes on)."""
    folder = state_dir(env)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{record.id}.json"
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{record.id}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(asdict(record), handle, indent=1, sort_keys=True)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_all(env: Mapping[str, str] = os.environ) -> list[JobRecord]:
    """Every readable record, oldest first; an unreadable one is skipped (a record is a courtesy, not a lock)."""
    known = {f.name for f in fields(JobRecord)}
    records = []
    for path in sorted(state_dir(env).glob("*.json")):
        if path.name.startswith("."):  # a detached job's description, or a record being written
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            records.append(JobRecord(**{k: v for k, v in data.items() if k in known}))
        except (OSError, ValueError, TypeError):
            continue
    return sorted(records, key=lambda r: (r.started_at or "", r.id))


def find(name: str, env: Mapping[str, str] = os.environ) -> JobRecord | None:
    """The newest job called ``name`` (or with that id)."""
    matches = [r for r in load_all(env) if name in (r.name, r.id)]
    return matches[-1] if matches else None


def table(records: list[JobRecord]) -> str:
    """``notify ls``: one line per job, oldest first, aligned."""
    from notify.report import format_duration

    rows = [("NAME", "STATE", "STARTED", "DURATION", "LOG")]
    for r in records:
        started = "-"
        if r.started_at:
            started = datetime.fromisoformat(r.started_at).astimezone().strftime("%Y-%m-%d %H:%M:%S")
        duration = r.duration_s()
        rows.append((r.name, r.current_state(), started, format_duration(duration) if duration is not None else "-",
                     r.log))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row[:4], widths)) + "  " + row[4] for row in rows)


def show_log(record: JobRecord, out: BinaryIO, follow: bool = False, env: Mapping[str, str] = os.environ,
             poll_s: float = 0.25) -> None:
    """Copy the job's log to ``out``; with ``follow``, keep copying until the job has ended (like ``tail -f``)."""
    path = Path(record.log)
    offset = 0
    while True:
        running = follow and (find(record.id, env) or record).current_state() == "running"
        try:
            with open(path, "rb") as log:
                log.seek(offset)
                data = log.read()
        except FileNotFoundError:
            data = b""
        if data:
            offset += len(data)
            out.write(data)
            out.flush()
        if not running:
            return
        if not data:
            time.sleep(poll_s)
