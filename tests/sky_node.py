"""An emulated SkyPilot node: a task's ``setup``/``run`` executed by bash on this machine, as SkyPilot runs them.

SkyPilot exports the task's ``envs``, its secrets and the ``SKYPILOT_*`` variables, then runs ``setup`` and
``run`` with bash in the synced workdir (``~/sky_workdir``). A ``Node`` here runs them through SkyPilot's own
script builder (``sky.skylet.log_lib.make_task_bash_script``, called in the SkyPilot venv), with:

- its own home and workdir (two nodes on one machine share no disk, as two VMs would not);
- a "venv" (``CFT_VENV``) whose ``python`` execs the project's ``.venv`` interpreter and whose ``torchrun``
  and ``cft`` are the project's, so ``setup`` finds nothing to install but runs its real script, and ``run``
  starts the real ``python -m notify run -- torchrun -m cft train``;
- a stand-in ``uv`` on PATH that only records calls (``setup``'s install must never touch the project's venv).

``MotoS3`` is a real S3 API on loopback (tests/s3_server.py: moto's ThreadedMotoServer on a free port) that tests
can stop mid-run.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from s3_server import CREDENTIALS, S3Server, free_port

REPO = Path(__file__).resolve().parents[1]
PROJECT_VENV = Path(os.environ.get("CFT_TEST_VENV") or Path(sys.executable).parent.parent)

S3_CREDENTIALS = CREDENTIALS


_SCRIPT_SERVER: subprocess.Popen | None = None
# What the machine itself provides; every other variable of a node's environment SkyPilot exports in the script.
_MACHINE_ENV = ("PATH", "HOME", "LANG")


def sky_task_script(codegen: str, env_vars: dict[str, str]) -> str:
    """``codegen`` wrapped by SkyPilot's script builder, as a node runs a task's setup or run."""
    global _SCRIPT_SERVER
    import json

    import sky_env

    if _SCRIPT_SERVER is None or _SCRIPT_SERVER.poll() is not None:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
        _SCRIPT_SERVER = subprocess.Popen(
            [str(sky_env.ensure_sky_venv()), sky_env.__file__, "serve-task-scripts"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
        )
    assert _SCRIPT_SERVER.stdin is not None and _SCRIPT_SERVER.stdout is not None
    _SCRIPT_SERVER.stdin.write(json.dumps({"codegen": codegen, "env_vars": env_vars}) + "\n")
    _SCRIPT_SERVER.stdin.flush()
    line = _SCRIPT_SERVER.stdout.readline()
    if not line:
        raise AssertionError("SkyPilot's script builder stopped (see stderr above)")
    return json.loads(line)["script"]


class MotoS3(S3Server):
    """``with MotoS3() as s3: s3.endpoint ... s3.objects() ... s3.stop()``: tests/s3_server.py's moto server with
    one bucket, plus what node tests ask of it. ``stop()`` is an outage: the port closes, and every request,
    on a new or a pooled connection, fails to connect."""

    def __init__(self, bucket: str | None = None) -> None:
        # moto keeps its buckets per process, not per server: a bucket of its own per test.
        bucket = bucket or f"cft-node-{uuid.uuid4().hex[:12]}"
        super().__init__(buckets=[bucket])
        self.bucket = bucket

    def uri(self, prefix: str = "cft") -> str:
        return f"s3://{self.bucket}/{prefix}"

    def objects(self, prefix: str = "") -> list[str]:
        return self.keys(self.bucket, prefix)

    def read(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()

    def exists(self, key: str) -> bool:
        return key in self.objects(key)

    def wait_for(self, key: str, timeout: float, process: subprocess.Popen | None = None) -> float:
        """Polls until ``key`` exists; returns the seconds waited. Fails early if ``process`` has exited."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if self.exists(key):
                return time.monotonic() - start
            if process is not None and process.poll() is not None:
                raise AssertionError(f"the job exited with code {process.returncode} before {key} appeared")
            time.sleep(0.1)
        raise AssertionError(f"{key} did not appear in {timeout:g}s")


def _executable(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


class Node:
    """One emulated node of a cluster: ``Node(root).run(task["run"], task["envs"], SKYPILOT_NODE_RANK="0", ...)``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.home = root / "home"
        self.workdir = root / "workdir"
        self.venv = root / "cft-venv"
        self.bin = root / "bin"
        self.uv_calls = root / "uv.calls"
        self.home.mkdir(parents=True, exist_ok=True)
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.home / "sky_workdir").symlink_to(self.workdir)  # where SkyPilot's script changes into
        # The synced workdir: setup hashes pyproject.toml; the code itself is the project's editable install.
        (self.workdir / "pyproject.toml").write_bytes((REPO / "pyproject.toml").read_bytes())
        python = PROJECT_VENV / "bin" / "python"
        _executable(self.venv / "bin" / "python", f'#!/bin/sh\nexec "{python}" "$@"\n')
        for script in ("torchrun", "cft"):
            (self.venv / "bin" / script).symlink_to(PROJECT_VENV / "bin" / script)
        _executable(self.bin / "uv", f'#!/bin/sh\necho "$*" >> "{self.uv_calls}"\n')

    def env(self, task_envs: dict[str, Any], **overrides: str) -> dict[str, str]:
        env = {
            "PATH": f"{self.bin}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(self.home),
            "LANG": "C.UTF-8",
            "CFT_VENV": str(self.venv),
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "HF_DATASETS_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
            "OMP_NUM_THREADS": "1",
            "MPLBACKEND": "Agg",
            "SKYPILOT_NODE_RANK": "0",
            "SKYPILOT_NUM_NODES": "1",
            "SKYPILOT_NODE_IPS": "127.0.0.1",
            "SKYPILOT_NUM_GPUS_PER_NODE": "0",
            "SKYPILOT_CLUSTER_INFO": '{"cluster_name": "cft-test", "cloud": "local", "num_nodes": 1}',
            "MASTER_PORT": str(free_port()),
        }
        # SkyPilot exports every env of the task (values from --env win) and the secrets.
        env.update({k: "" if v is None else str(v) for k, v in task_envs.items()})
        env.update(overrides)
        # The code under test: the project venv's editable install points at one checkout, PYTHONPATH at this one
        # (after a test's own sitecustomize folder).
        if os.environ.get("PYTHONPATH"):
            env["PYTHONPATH"] = os.pathsep.join(p for p in (overrides.get("PYTHONPATH"), os.environ["PYTHONPATH"]) if p)
        return env

    def start(self, script: str, task_envs: dict[str, Any], **overrides: str) -> subprocess.Popen:
        """Starts ``script`` as SkyPilot would, in a session of its own; stdout and stderr to files."""
        env = self.env(task_envs, **overrides)
        machine = {k: v for k, v in env.items() if k in _MACHINE_ENV}
        text = sky_task_script(script, {k: v for k, v in env.items() if k not in _MACHINE_ENV})
        out = open(self.root / "stdout.txt", "ab")
        err = open(self.root / "stderr.txt", "ab")
        try:
            return subprocess.Popen(["bash", "-c", text], cwd=self.home, env=machine,
                                    stdout=out, stderr=err, start_new_session=True)
        finally:
            out.close()
            err.close()

    def run(self, script: str, task_envs: dict[str, Any], timeout: float = 240, **overrides: str) -> Result:
        process = self.start(script, task_envs, **overrides)
        return self.wait(process, timeout)

    def wait(self, process: subprocess.Popen, timeout: float = 240) -> Result:
        start = time.monotonic()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            kill_tree(process)
            raise AssertionError(f"{self.root.name}: still running after {timeout:g}s\n{self.output()[-4000:]}")
        return Result(process.returncode, self.output(), time.monotonic() - start)

    def output(self) -> str:
        """Everything the node's scripts wrote so far (stdout then stderr, across calls)."""
        texts = [(self.root / name).read_text(errors="replace") for name in ("stdout.txt", "stderr.txt")
                 if (self.root / name).exists()]
        return "\n".join(texts)

    def files(self) -> list[Path]:
        """Every file the node's runs wrote: the workdir (the wrapper's logs/), the home (cft's work dir), and
        the console output (what SkyPilot keeps as the job's log)."""
        console = [self.root / name for name in ("stdout.txt", "stderr.txt") if (self.root / name).exists()]
        return console + sorted(p for folder in (self.workdir, self.home) for p in folder.rglob("*") if p.is_file())


class Result:
    def __init__(self, returncode: int, output: str, seconds: float) -> None:
        self.returncode, self.output, self.seconds = returncode, output, seconds

    def __repr__(self) -> str:
        return f"Result(rc={self.returncode}, {self.seconds:.1f}s)\n{self.output[-6000:]}"


def process_tree(pid: int) -> list[int]:
    import psutil

    try:
        parent = psutil.Process(pid)
        return [pid, *(child.pid for child in parent.children(recursive=True))]
    except psutil.NoSuchProcess:
        return []


def kill_tree(process: subprocess.Popen, sig: int = signal.SIGKILL) -> list[int]:
    """What a lost VM does to a job: every process of it dies at once, with no chance to clean up.

    The notify wrapper starts the job in a session (process group) of its own, so the bash script's group and
    the job's group are both killed, each as a whole; returns the pids that were alive.
    """
    import psutil

    pids = process_tree(process.pid)
    groups = set()
    for pid in pids:
        try:
            groups.add(os.getpgid(pid))
        except ProcessLookupError:
            pass
    for group in groups:
        try:
            os.killpg(group, sig)
        except (ProcessLookupError, PermissionError):
            pass
    process.wait(30)
    survivors = []
    for pid in pids:
        try:
            survivors.append(psutil.Process(pid))
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(survivors, timeout=30)
    return pids


HOOKS = """
# sitecustomize for emulated nodes (tests/sky_node.py): faults that only a test asks for, by environment variable.
import os

# CFT_TEST_DIE_UPLOADING="<part of a key>:<n>": after n uploads of keys containing that part, the next upload
# freezes (after touching $CFT_TEST_DYING) until the test kills the node: a VM lost in the middle of an upload.
_target = os.environ.get("CFT_TEST_DIE_UPLOADING")
# CFT_TEST_LEAK_SECRETS=1: when the run writes its config.yaml, a log line and a stderr line quote the secrets,
# as an error message or a library's debug output might.
_leak = os.environ.get("CFT_TEST_LEAK_SECRETS")
if _target or _leak:
    import logging
    import sys
    import time
    from pathlib import Path

    import cft.storage.bucket as _bucket

    _part, _, _count = (_target or "").rpartition(":")
    _done = []
    _upload_file = _bucket.S3Bucket.upload_file
    _write_text = _bucket.S3Bucket.write_text

    def upload_file(self, local, key):
        if _target and _part in key:
            if len(_done) >= int(_count):
                Path(os.environ["CFT_TEST_DYING"]).write_text(key)
                time.sleep(600)
            _done.append(key)
        return _upload_file(self, local, key)

    def write_text(self, key, text):
        if _leak and key.endswith("/config.yaml"):
            quoted = " ".join(f"{name}={os.environ.get(name, '')}"
                              for name in ("AWS_SECRET_ACCESS_KEY", "HF_TOKEN", "NTFY_TOKEN"))
            logging.getLogger("cft").warning("environment: %s", quoted)
            print(f"environment: {quoted}", file=sys.stderr, flush=True)
        return _write_text(self, key, text)

    _bucket.S3Bucket.upload_file = upload_file
    _bucket.S3Bucket.write_text = write_text
"""


def install_hooks(folder: Path) -> Path:
    """A folder holding HOOKS as sitecustomize.py: put it on a node's PYTHONPATH."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(HOOKS)
    return folder
