"""Detached runs: ``notify run --detach`` starts the wrapper where a dropped SSH connection cannot reach it.

With tmux on PATH the wrapper runs in a tmux session named after the job (``tmux attach -t NAME`` shows it
live; ``tmux kill-session -t NAME`` stops it, reported as interrupted). Without tmux it runs in a new session
with no terminal (``setsid``), which no hang-up reaches. Either way the launcher returns once the job has
started, after printing where its log is. The job's environment travels in a file only its owner can read,
deleted as soon as the job has read it: tmux would show it in the process list, or lose it to the environment
of a tmux server that was already running.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import TextIO

from notify import jobs
from notify.run_identity import resolve_run_id, sanitize_run_id
from notify.wrapper import RunOptions, log_path_for, run

# The detached wrapper imports notify from where this one did, whatever tmux's environment says.
_BOOT = "import sys; sys.path.insert(0, sys.argv[1]); from notify.detach import serve; sys.exit(serve(sys.argv[2]))"
_PACKAGE_PARENT = str(Path(__file__).resolve().parents[1])
START_TIMEOUT_S = 15.0


class DetachError(Exception):
    """The job could not be started; the message says why and what to do."""


def launch(options: RunOptions, env: Mapping[str, str], use_tmux: bool = True, prog: str = "python -m notify",
           out: TextIO = sys.stdout) -> int:
    """Start ``options.command`` detached; print where its log is; 0 once it runs, DetachError otherwise."""
    env = dict(env)
    name = sanitize_run_id(options.name or Path(options.command[0]).name) or "run"
    tmux = shutil.which("tmux", path=env.get("PATH")) if use_tmux else None
    session = name.replace(".", "_")  # tmux reads '.' in a target as a pane separator
    if tmux and _tmux(tmux, ["has-session", "-t", f"={session}"], env).returncode == 0:
        raise DetachError(f"--name {name}: a tmux session of that name exists; choose another --name, or end it "
                          f"with: tmux kill-session -t {session}")
    options.log_dir.mkdir(parents=True, exist_ok=True)
    job = RunOptions(
        command=options.command, name=name, notify_start=options.notify_start, log_dir=options.log_dir.absolute(),
        bucket=options.bucket, run_id=resolve_run_id(options.run_id, env),
        # in tmux, a hang-up means the session was killed on purpose; outside it none can come
        on_hangup="stop" if tmux else "keep",
        log_file=log_path_for(options.log_dir.absolute(), name, env), job_id=jobs.new_job_id(name),
        tmux=session if tmux else None,
    )
    folder = jobs.state_dir(env)
    folder.mkdir(parents=True, exist_ok=True)
    spec = folder / f".{job.job_id}.spec.json"
    argv = [sys.executable, "-c", _BOOT, _PACKAGE_PARENT, str(spec)]
    errors = folder / f"{job.job_id}.err"
    fd = os.open(spec, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump({"options": asdict(job), "env": env}, handle, default=str)
        process = None
        if tmux:
            done = _tmux(tmux, ["new-session", "-d", "-s", session, "-c", os.getcwd(), shlex.join(argv)], env)
            if done.returncode != 0:
                raise DetachError(f"tmux new-session -s {session} failed: {' '.join(done.stderr.split())}")
        else:
            with open(errors, "ab") as err:
                process = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                           stderr=err, start_new_session=True)
        record = _wait_for_start(job.job_id, process, errors, env)
    finally:
        spec.unlink(missing_ok=True)  # read by the job by now, or never to be read
    if tmux:
        print(f"{name} runs in tmux session {session} (see it: tmux attach -t {session}; stop it: "
              f"tmux kill-session -t {session})", file=out)
    else:
        print(f"{name} runs detached as pid {record.pid}, immune to hang-ups (stop it: kill {record.pid})", file=out)
    print(f"log: {record.log}", file=out)
    print(f"follow: {prog} logs {name} -f   list: {prog} ls", file=out, flush=True)
    return 0


def _tmux(tmux: str, args: list[str], env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([tmux, *args], env=dict(env), capture_output=True, text=True, timeout=30,
                          stdin=subprocess.DEVNULL)


def _wait_for_start(job_id: str, process: subprocess.Popen[bytes] | None, errors: Path,
                    env: Mapping[str, str]) -> jobs.JobRecord:
    record_path = jobs.state_dir(env) / f"{job_id}.json"
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if record_path.exists():
            record = jobs.find(job_id, env)
            if record is not None:
                return record
        if process is not None and process.poll() is not None:
            break
        time.sleep(0.05)
    said = errors.read_text(errors="replace").strip().splitlines()[-1:] if errors.exists() else []
    raise DetachError(f"the detached job did not start within {START_TIMEOUT_S:g}s"
                      + (f": {said[0]}" if said else "") + f" (its wrapper's own messages: {errors})")


def serve(spec_path: str) -> int:
    """The detached side: read (and delete) the job's description, then run it like an attached run."""
    path = Path(spec_path)
    spec = json.loads(path.read_text(encoding="utf-8"))
    path.unlink(missing_ok=True)
    o = spec["options"]
    options = RunOptions(
        command=o["command"], name=o["name"], notify_start=o["notify_start"], log_dir=Path(o["log_dir"]),
        bucket=o["bucket"], run_id=o["run_id"], on_hangup=o["on_hangup"], log_file=Path(o["log_file"]),
        job_id=o["job_id"], tmux=o["tmux"],
    )
    return run(options, spec["env"])
