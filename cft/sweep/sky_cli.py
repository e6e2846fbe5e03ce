"""SkyPilot's own CLI, run in SkyPilot's own environment: cft builds command lines and reads SkyPilot's answers.

SkyPilot pins `click<8.2` and the training stack needs a newer click, so the two never share an interpreter
(DESIGN.md, "Two environments"). The `sky` executable is `$CFT_SKY`, else the SkyPilot venv's `bin/sky`
(`$CFT_SKY_VENV`, default `./.venv-sky`), else `sky` on PATH. Nothing of SkyPilot's logic is copied here: a launch
is `sky jobs launch`, a state is what `sky jobs queue -o json` says, a cancel is `sky jobs cancel`, and a price is
SkyPilot's catalog asked by SkyPilot's interpreter (`sky_price.py`).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cft.errors import CFTError, one_line

PIPELINE_YAML = Path("jobs") / "pipeline.yaml"
LAUNCH_TIMEOUT_S = 900  # uploading the workdir and submitting to the controller; its first start takes minutes
QUEUE_TIMEOUT_S = 300
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_JOB_ID = re.compile(r"(?:Managed Job ID|Job submitted, ID)\D{0,5}(\d+)", re.IGNORECASE)

# A managed job's states (`sky jobs queue`) in the words of a sweep.
ACTIVE = {"PENDING": "starting", "SUBMITTED": "starting", "STARTING": "starting", "RUNNING": "running",
          "RECOVERING": "recovering", "CANCELLING": "cancelling"}
ENDED = {"SUCCEEDED": "succeeded", "CANCELLED": "cancelled"}  # and every FAILED* -> failed


class SkyUnavailable(Exception):
    """SkyPilot could not be asked (not installed, no API server, an error): the reason, one line."""


def sweep_state(sky_status: str) -> str:
    if sky_status in ACTIVE:
        return ACTIVE[sky_status]
    if sky_status in ENDED:
        return ENDED[sky_status]
    if sky_status.startswith("FAILED"):
        return "failed"
    return sky_status.lower()


@dataclass
class Job:
    """One managed job as `sky jobs queue` shows it: a pipeline has one row per task."""

    job_id: int
    name: str | None
    task_statuses: list[str] = field(default_factory=list)
    failure_reason: str | None = None

    @property
    def status(self) -> str:
        """The job's state: its first task that did not succeed (a pipeline runs its tasks in order)."""
        for status in self.task_statuses:
            if status != "SUCCEEDED":
                return status
        return "SUCCEEDED" if self.task_statuses else "PENDING"


def find_sky() -> str:
    explicit = os.environ.get("CFT_SKY")
    if explicit:
        if not (shutil.which(explicit) or os.access(explicit, os.X_OK)):
            raise CFTError(f"CFT_SKY={explicit}: not an executable; point it at SkyPilot's `sky`")
        return explicit
    venv = Path(os.environ.get("CFT_SKY_VENV") or ".venv-sky")
    if (venv / "bin" / "sky").exists():
        return str((venv / "bin" / "sky").resolve())
    found = shutil.which("sky")
    if found:
        return found
    raise CFTError("SkyPilot's `sky` not found: install it in its own environment (`uv tool install "
                   "'skypilot[lambda,aws]'`, see docs/cloud.md), or set CFT_SKY=/path/to/sky")


def _env() -> dict[str, str]:
    # Our interpreter's settings must not leak into SkyPilot's (another venv, other pins).
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}


def _run(args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=_env(), stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise SkyUnavailable(f"{args[0]}: not found") from None
    except subprocess.TimeoutExpired:
        raise SkyUnavailable(f"`{shlex.join(args[1:4])}` gave no answer in {timeout:g}s") from None


def _last_line(text: str) -> str:
    lines = [line.strip() for line in _ANSI.sub("", text).splitlines() if line.strip()]
    return one_line(lines[-1])[:300] if lines else "no output"


def pipeline_yaml() -> Path:
    if not PIPELINE_YAML.is_file():
        raise CFTError(f"{PIPELINE_YAML}: not found in {Path.cwd()}; run cft sweep from the cft repository "
                       "(it is the workdir SkyPilot syncs to every node)")
    return PIPELINE_YAML


def launch_args(sky: str, name: str, envs: dict[str, str], secrets_file: str | None) -> list[str]:
    """`sky jobs launch` for one member: detached (-d), no prompt (-y), named after the member's run id."""
    args = [sky, "jobs", "launch", "-y", "-d", "-n", name]
    for key, value in envs.items():
        args += ["--env", f"{key}={value}"]
    if secrets_file:
        args += ["--secret-file", secrets_file]
    return [*args, str(PIPELINE_YAML)]


def launch(args: list[str]) -> int | None:
    """Runs a `launch_args` command line; the managed job's id (None if SkyPilot's output did not say it)."""
    done = _run(args, LAUNCH_TIMEOUT_S)
    output = _ANSI.sub("", done.stdout + "\n" + done.stderr)
    if done.returncode != 0:
        raise CFTError(f"`sky jobs launch -n {args[args.index('-n') + 1]}` failed (exit {done.returncode}): "
                       f"{_last_line(done.stderr or done.stdout)}")
    found = _JOB_ID.findall(output)
    return int(found[-1]) if found else None


def queue(sky: str) -> dict[int, Job]:
    """Every managed job of this user (`sky jobs queue -o json --all`), by id; SkyUnavailable if it cannot be read."""
    done = _run([sky, "jobs", "queue", "-o", "json", "--all"], QUEUE_TIMEOUT_S)
    if done.returncode != 0:
        raise SkyUnavailable(f"sky jobs queue failed (exit {done.returncode}): {_last_line(done.stderr or done.stdout)}")
    text = done.stdout
    start = text.find("[")
    try:
        rows = json.loads(text[start:]) if start >= 0 else None
    except ValueError:
        rows = None
    if not isinstance(rows, list):
        raise SkyUnavailable(f"sky jobs queue -o json: not a JSON list ({_last_line(text)})")
    jobs: dict[int, Job] = {}
    for row in sorted((r for r in rows if isinstance(r, dict) and isinstance(r.get("job_id"), int)),
                      key=lambda r: (r["job_id"], r.get("task_id") or 0)):
        job = jobs.setdefault(row["job_id"], Job(row["job_id"], row.get("job_name")))
        job.task_statuses.append(str(row.get("status") or "PENDING"))
        job.failure_reason = job.failure_reason or row.get("failure_reason")
    return jobs


def newest_job_named(jobs: dict[int, Job], name: str, known: list[int]) -> int | None:
    ids = [job_id for job_id, job in jobs.items() if job.name == name and job_id not in known]
    return max(ids) if ids else None


def cancel(sky: str, job_ids: list[int]) -> None:
    done = _run([sky, "jobs", "cancel", "-y", *map(str, job_ids)], QUEUE_TIMEOUT_S)
    if done.returncode != 0:
        raise CFTError(f"sky jobs cancel {' '.join(map(str, job_ids))} failed (exit {done.returncode}): "
                       f"{_last_line(done.stderr or done.stdout)}")


def hourly_price(sky: str, envs: dict[str, str]) -> dict[str, Any]:
    """{"tasks": [...]} from `sky_price.py` run by SkyPilot's interpreter, or {"error": why} when it cannot run."""
    python = Path(sky).resolve().parent / "python"
    if not python.exists():
        return {"error": f"no SkyPilot interpreter next to {sky}"}
    script = Path(__file__).with_name("sky_price.py")
    args = [str(python), str(script), str(PIPELINE_YAML), *(f"{k}={v}" for k, v in envs.items())]
    try:
        done = _run(args, 120)
    except SkyUnavailable as error:
        return {"error": str(error)}
    if done.returncode != 0:
        return {"error": _last_line(done.stderr or done.stdout)}
    try:
        return json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"error": f"unreadable answer: {_last_line(done.stdout)}"}
