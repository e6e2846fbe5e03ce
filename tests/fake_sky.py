"""A stand-in `sky` executable for sweep tests: records every call and emulates managed jobs.

    install(folder, state) -> path of an executable `sky` (put its folder on PATH, or CFT_SKY=path)

It answers the three commands `cft sweep` uses, as SkyPilot 0.14.1 prints them: `sky jobs launch -y -d -n NAME
--env K=V ... [--secret-file F] YAML` ("Managed Job ID: N"), `sky jobs queue -o json --all` (one JSON row per task)
and `sky jobs cancel -y ID ...`. Every call is appended to <state>/calls.jsonl. What a job does depends on
FAKE_SKY_MODE:

    manual   nothing runs: a test moves jobs along with set_statuses()
    node     a detached runner executes each task of the YAML on an emulated node (tests/sky_node.Node): setup,
             then run, with the task's envs, the --env values, the secret file's values and FAKE_SKY_NODE_ENV (JSON)

FAKE_SKY_NO_RESOURCE=NAME makes the first launch of job NAME end FAILED_NO_RESOURCE without running anything (a
member that died before its node ran).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

HERE = Path(__file__).resolve().parent
TERMINAL = ("SUCCEEDED", "CANCELLED")


def install(folder: Path, state: Path, python: str = sys.executable) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    state.mkdir(parents=True, exist_ok=True)
    path = folder / "sky"
    pythonpath = os.pathsep.join(p for p in (os.environ.get("PYTHONPATH"), str(HERE)) if p)
    path.write_text(f'#!/bin/sh\nFAKE_SKY_STATE="${{FAKE_SKY_STATE:-{state}}}" PYTHONPATH="{pythonpath}" '
                    f'exec "{python}" "{__file__}" "$@"\n')
    path.chmod(0o755)
    return path


@contextmanager
def _locked(state: Path):
    with open(state / "lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        path = state / "jobs.json"
        jobs = json.loads(path.read_text()) if path.exists() else {}
        yield jobs
        path.write_text(json.dumps(jobs, indent=1))


def jobs(state: Path) -> dict:
    path = state / "jobs.json"
    return json.loads(path.read_text()) if path.exists() else {}


def calls(state: Path) -> list[list[str]]:
    path = state / "calls.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def set_statuses(state: Path, job_id: int, *statuses: str) -> None:
    with _locked(state) as all_jobs:
        all_jobs[str(job_id)]["statuses"] = list(statuses)


def _tasks(yaml_path: str) -> list[dict]:
    import yaml

    docs = [d for d in yaml.safe_load_all(Path(yaml_path).read_text()) if d]
    if len(docs) > 1 and set(docs[0]) <= {"name", "execution"}:
        docs = docs[1:]
    return docs


def _launch(state: Path, args: list[str]) -> int:
    envs, name, secret_file, rest = {}, None, None, []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in ("-y", "-d"):
            i += 1
        elif arg == "-n":
            name, i = args[i + 1], i + 2
        elif arg == "--env":
            key, _, value = args[i + 1].partition("=")
            envs[key], i = value, i + 2
        elif arg == "--secret-file":
            secret_file, i = args[i + 1], i + 2
        else:
            rest.append(arg)
            i += 1
    (yaml_path,) = rest
    tasks = _tasks(yaml_path)
    no_resource = os.environ.get("FAKE_SKY_NO_RESOURCE") == name
    with _locked(state) as all_jobs:
        job_id = max(map(int, all_jobs), default=0) + 1
        if no_resource:
            no_resource = not any(j["name"] == name for j in all_jobs.values())
        all_jobs[str(job_id)] = {"name": name, "envs": envs, "secret_file": secret_file, "yaml": yaml_path,
                                 "cwd": os.getcwd(), "tasks": [t.get("name") for t in tasks],
                                 "statuses": ["PENDING"] * len(tasks), "pid": None}
        if no_resource:
            all_jobs[str(job_id)]["statuses"] = ["FAILED_NO_RESOURCE"] + ["CANCELLED"] * (len(tasks) - 1)
    if os.environ.get("FAKE_SKY_MODE") == "node" and not no_resource:
        runner = subprocess.Popen([sys.executable, __file__, "run-job", str(job_id)], start_new_session=True,
                                  stdout=open(state / f"job-{job_id}.log", "ab"), stderr=subprocess.STDOUT)
        with _locked(state) as all_jobs:
            all_jobs[str(job_id)]["pid"] = runner.pid
    print(f"Job submitted.\n\U0001f4cb Useful Commands\nManaged Job ID: {job_id}\n\u251c\u2500\u2500 To cancel the job:\t\t"
          f"\x1b[1msky jobs cancel {job_id}\x1b[0m")
    return 0


def _run_job(state: Path, job_id: int) -> int:
    from sky_node import Node

    job = jobs(state)[str(job_id)]
    os.chdir(job["cwd"])
    secrets = {}
    if job["secret_file"]:
        for line in Path(job["secret_file"]).read_text().splitlines():
            if "=" in line and not line.startswith("#"):
                key, _, value = line.partition("=")
                secrets[key.strip()] = value.strip()
    node_env = json.loads(os.environ.get("FAKE_SKY_NODE_ENV") or "{}")
    tasks = _tasks(job["yaml"])
    ids = "\n".join(f"sky-managed_{job['name']}_{t.get('name')}_{job_id}-{i}" for i, t in enumerate(tasks))
    for index, task in enumerate(tasks):
        set_task(state, job_id, index, "RUNNING")
        node = Node(state / "nodes" / f"job-{job_id}-{index}")
        shutil.copytree(job["cwd"], node.workdir, dirs_exist_ok=True)  # SkyPilot syncs the workdir to the node
        envs = {k: ("" if v is None else str(v)) for k, v in (task.get("envs") or {}).items()}
        envs.update({k: v for k, v in job["envs"].items() if k in envs})  # SkyPilot: --env sets declared envs
        setup = node.run(task["setup"], {}, **node_env)
        result = setup if setup.returncode else node.run(
            task["run"], envs, SKYPILOT_TASK_ID=ids.splitlines()[index], SKYPILOT_TASK_IDS=ids, **secrets, **node_env)
        if result.returncode != 0:
            set_task(state, job_id, index, "FAILED_SETUP" if result is setup else "FAILED", rest="CANCELLED")
            return 1
        set_task(state, job_id, index, "SUCCEEDED")
    return 0


def set_task(state: Path, job_id: int, index: int, status: str, rest: str | None = None) -> None:
    with _locked(state) as all_jobs:
        statuses = all_jobs[str(job_id)]["statuses"]
        if statuses[index] in ("CANCELLED", "CANCELLING"):
            return
        statuses[index] = status
        if rest:
            statuses[index + 1:] = [rest] * (len(statuses) - index - 1)


def _queue(state: Path) -> int:
    rows = []
    for job_id, job in sorted(jobs(state).items(), key=lambda item: int(item[0])):
        for task_id, (task, status) in enumerate(zip(job["tasks"], job["statuses"])):
            rows.append({"job_id": int(job_id), "task_id": task_id, "job_name": job["name"], "task_name": task,
                         "status": status, "failure_reason": "no resources" if status == "FAILED_NO_RESOURCE" else None})
    print("Fetching managed job statuses...") if "--quiet-header" in sys.argv else None
    print(json.dumps(rows, indent=2))
    return 0


def _cancel(state: Path, ids: list[str]) -> int:
    with _locked(state) as all_jobs:
        for job_id in ids:
            job = all_jobs[job_id]
            job["statuses"] = [s if s in TERMINAL or s.startswith("FAILED") else "CANCELLED" for s in job["statuses"]]
            if job.get("pid"):
                try:
                    os.killpg(job["pid"], signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
    print(f"Cancelled managed job(s) {', '.join(ids)}.")
    return 0


def main(argv: list[str]) -> int:
    state = Path(os.environ["FAKE_SKY_STATE"])
    if argv[:1] == ["run-job"]:
        return _run_job(state, int(argv[1]))
    with open(state / "calls.jsonl", "a") as log:
        log.write(json.dumps(argv) + "\n")
    if argv[:2] == ["jobs", "launch"]:
        return _launch(state, argv[2:])
    if argv[:2] == ["jobs", "queue"]:
        return _queue(state)
    if argv[:2] == ["jobs", "cancel"]:
        return _cancel(state, [a for a in argv[2:] if a.isdigit()])
    print(f"fake sky: unsupported {' '.join(argv)}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
