"""The shell in jobs/*.yaml, run as SkyPilot runs it, with stand-ins for the programs.

SkyPilot exports the task's envs, its secrets and the SKYPILOT_* variables,
then runs ``setup`` and ``run`` with bash in the workdir. Here ``python``,
``uv`` and ``curl`` are small stand-ins that record how they were called, so
these tests pin the glue (node topology, run id, exit codes, idempotent setup,
controller events) without torch, a cloud or a network.
"""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

import pytest
from sky_env import job_tasks

BUCKET = "s3://my-bucket/cft"
TRAIN_ID = "sky-managed-2026-01-02-03-04-05-678901_cft-pipeline_train_7-0"
EVAL_ID = "sky-managed-2026-01-02-03-04-05-678901_cft-pipeline_eval_7-1"

RECORDER = """#!/bin/bash
# Stand-in: records its arguments (one per line) and its environment.
printf '%s\\n' "$@" > "$STUB_LOG/$(basename "$0").args"
env > "$STUB_LOG/$(basename "$0").env"
exit "${STUB_RC:-0}"
"""


def task(file_name: str, name: str | None = None) -> dict:
    tasks = job_tasks(file_name)
    return next(t for t in tasks if name is None or t["name"] == name)


def stub(folder: Path, name: str, body: str = RECORDER) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


class Node:
    """One emulated node: a home, a venv whose ``python`` is a recorder, a log of calls."""

    def __init__(self, root: Path):
        self.root = root
        self.home = root / "home"
        self.venv = root / "venv"
        self.log = root / "calls"
        self.workdir = root / "workdir"
        for folder in (self.home, self.log, self.workdir):
            folder.mkdir(parents=True, exist_ok=True)
        stub(self.venv / "bin", "python")

    def run(self, script: str, task_envs: dict, **env: str) -> subprocess.CompletedProcess:
        full_env = {
            "PATH": f"{self.root / 'bin'}:/usr/bin:/bin",
            "HOME": str(self.home),
            "CFT_VENV": str(self.venv),
            "STUB_LOG": str(self.log),
        }
        # SkyPilot exports every env of the task (values from --env win).
        full_env.update({k: "" if v is None else str(v) for k, v in task_envs.items()})
        full_env.update(env)
        return subprocess.run(
            ["bash", "-c", script], cwd=self.workdir, env=full_env, capture_output=True, text=True, timeout=60
        )

    def calls(self, program: str) -> list[str] | None:
        path = self.log / f"{program}.args"
        return path.read_text().splitlines() if path.exists() else None

    def call_env(self, program: str) -> dict[str, str]:
        lines = (self.log / f"{program}.env").read_text().splitlines()
        return dict(line.split("=", 1) for line in lines if "=" in line)


@pytest.fixture
def node(tmp_path) -> Node:
    return Node(tmp_path)


# --------------------------------------------------------------------------
# train


def test_train_starts_one_torchrun_per_node_with_skypilots_topology(node):
    train = task("train.yaml")
    proc = node.run(
        train["run"],
        train["envs"],
        BUCKET=BUCKET,
        SKYPILOT_NUM_NODES="2",
        SKYPILOT_NODE_RANK="1",
        SKYPILOT_NODE_IPS="10.0.0.1\n10.0.0.2",
        SKYPILOT_NUM_GPUS_PER_NODE="8",
        SKYPILOT_TASK_ID="sky-2026-01-02_cft_3",
    )
    assert proc.returncode == 0, proc.stderr
    assert node.calls("python") == [
        "-m", "notify", "run", "--name", "train", "--",
        "torchrun", "--nnodes=2", "--nproc_per_node=8", "--node_rank=1",
        "--master_addr=10.0.0.1", "--master_port=29500",
        "-m", "cft", "train", "--config", "recipes/minicpm-2b.yaml", "--bucket", BUCKET,
    ]  # fmt: skip
    env = node.call_env("python")
    # RUN_ID: "" is unset, so cft and the wrapper fall back to SKYPILOT_TASK_ID.
    assert "RUN_ID" not in env
    assert "AWS_ENDPOINT_URL" not in env  # "" would be an empty endpoint to some clients
    assert "cft: train on node 1 exited with code 0" in proc.stdout


def test_a_cpu_only_node_still_starts_one_process(node):
    train = task("train.yaml")
    proc = node.run(train["run"], train["envs"], BUCKET=BUCKET, SKYPILOT_NUM_GPUS_PER_NODE="0")
    assert proc.returncode == 0, proc.stderr
    args = node.calls("python")
    assert "--nproc_per_node=1" in args
    assert "--nnodes=1" in args and "--node_rank=0" in args and "--master_addr=127.0.0.1" in args


@pytest.mark.parametrize("exit_code", [1, 3, 130])
def test_train_fails_with_the_wrappers_exit_code(node, exit_code):
    train = task("train.yaml")
    proc = node.run(train["run"], train["envs"], BUCKET=BUCKET, STUB_RC=str(exit_code))
    assert proc.returncode == exit_code
    assert f"exited with code {exit_code}" in proc.stdout


def test_a_given_run_id_and_endpoint_reach_the_job(node):
    train = task("train.yaml")
    endpoint = "https://acct.r2.cloudflarestorage.com"
    proc = node.run(train["run"], train["envs"], BUCKET=BUCKET, RUN_ID="my-run", AWS_ENDPOINT_URL=endpoint)
    assert proc.returncode == 0, proc.stderr
    env = node.call_env("python")
    assert env["RUN_ID"] == "my-run"
    assert env["AWS_ENDPOINT_URL"] == endpoint


def test_the_rendezvous_port_can_be_moved(node):
    train = task("train.yaml")
    proc = node.run(train["run"], train["envs"], BUCKET=BUCKET, MASTER_PORT="29611")
    assert proc.returncode == 0, proc.stderr
    assert "--master_port=29611" in node.calls("python")


# --------------------------------------------------------------------------
# pipeline: eval finds what train wrote


def test_pipeline_tasks_share_the_train_tasks_run_id(tmp_path):
    task_ids = f"{TRAIN_ID}\n{EVAL_ID}"
    train_node, eval_node = Node(tmp_path / "train"), Node(tmp_path / "eval")
    train, evaluation = task("pipeline.yaml", "train"), task("pipeline.yaml", "eval")

    proc = train_node.run(
        train["run"], train["envs"], BUCKET=BUCKET, SKYPILOT_TASK_ID=TRAIN_ID, SKYPILOT_TASK_IDS=task_ids
    )
    assert proc.returncode == 0, proc.stderr
    assert train_node.call_env("python")["RUN_ID"] == TRAIN_ID

    proc = eval_node.run(
        evaluation["run"], evaluation["envs"], BUCKET=BUCKET, SKYPILOT_TASK_ID=EVAL_ID, SKYPILOT_TASK_IDS=task_ids
    )
    assert proc.returncode == 0, proc.stderr
    assert eval_node.calls("python") == [
        "-m", "notify", "run", "--name", "eval", "--",
        "cft", "eval", "--adapter", f"{BUCKET}/runs/{TRAIN_ID}/adapter", "--tasks", "sts",
    ]  # fmt: skip
    assert eval_node.call_env("python")["RUN_ID"] == TRAIN_ID


def test_a_user_run_id_wins_in_the_pipeline(node):
    evaluation = task("pipeline.yaml", "eval")
    proc = node.run(
        evaluation["run"], evaluation["envs"], BUCKET=BUCKET + "/", RUN_ID="mine",
        SKYPILOT_TASK_IDS=f"{TRAIN_ID}\n{EVAL_ID}",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert f"{BUCKET}/runs/mine/adapter" in node.calls("python")


# --------------------------------------------------------------------------
# eval on its own


def test_eval_of_an_adapter_logs_under_its_run(node):
    evaluation = task("eval.yaml")
    adapter = f"{BUCKET}/runs/20260102-030405/adapter"
    proc = node.run(evaluation["run"], evaluation["envs"], ADAPTER=adapter, TASKS="retrieval")
    assert proc.returncode == 0, proc.stderr
    assert node.calls("python")[-4:] == ["--adapter", adapter, "--tasks", "retrieval"]
    assert node.call_env("python")["RUN_ID"] == "20260102-030405"
    # ... and its log goes to that run's logs/: the wrapper gets the bucket the adapter lives in.
    assert node.call_env("python")["BUCKET"] == BUCKET


@pytest.mark.parametrize("file_name", ["eval.yaml", "pipeline.yaml"])
def test_eval_reads_local_mteb_data_when_given(node, file_name):
    evaluation = task(file_name, "eval" if file_name == "pipeline.yaml" else None)
    adapter = f"{BUCKET}/runs/r1/adapter"
    proc = node.run(evaluation["run"], evaluation["envs"], ADAPTER=adapter, DATA_DIR="/mnt/data dir")
    assert proc.returncode == 0, proc.stderr
    assert node.calls("python")[-6:] == ["--adapter", adapter, "--tasks", "sts", "--data-dir", "/mnt/data dir"]


def test_eval_without_an_adapter_or_a_run_is_a_user_error(node):
    evaluation = task("eval.yaml")
    proc = node.run(evaluation["run"], evaluation["envs"], BUCKET=BUCKET, SKYPILOT_TASK_ID="sky-x_cft-eval_1")
    assert proc.returncode == 2
    assert "set ADAPTER=" in proc.stderr
    assert node.calls("python") is None


# --------------------------------------------------------------------------
# setup


UV = """#!/bin/bash
# Stand-in for uv: `uv venv DIR` makes DIR/bin/python; every call is logged.
echo "$*" >> "$STUB_LOG/uv.calls"
if [ "$1" = venv ]; then mkdir -p "${@: -1}/bin" && touch "${@: -1}/bin/python" && chmod +x "${@: -1}/bin/python"; fi
"""


@pytest.mark.parametrize("file_name", ["train.yaml", "eval.yaml"])
def test_setup_installs_once_per_pyproject(tmp_path, file_name):
    node = Node(tmp_path)
    node.venv = tmp_path / "fresh-venv"  # nothing installed yet
    stub(node.root / "bin", "uv", UV)
    (node.workdir / "pyproject.toml").write_text('[project]\nname = "cft"\n')
    setup = task(file_name)["setup"]
    uv_calls = node.log / "uv.calls"

    first = node.run(setup, {}, CFT_VENV=str(node.venv))
    assert first.returncode == 0, first.stderr
    calls = uv_calls.read_text().splitlines()
    assert calls[0].startswith("venv ") and calls[1].startswith("pip install")
    assert calls[1].endswith('-e .[train]')

    again = node.run(setup, {}, CFT_VENV=str(node.venv))
    assert again.returncode == 0, again.stderr
    assert "skipping install" in again.stdout
    assert len(uv_calls.read_text().splitlines()) == 2  # nothing ran

    (node.workdir / "pyproject.toml").write_text('[project]\nname = "cft"\ndependencies = ["x"]\n')
    changed = node.run(setup, {}, CFT_VENV=str(node.venv))
    assert changed.returncode == 0, changed.stderr
    calls = uv_calls.read_text().splitlines()
    assert len(calls) == 3 and calls[2].startswith("pip install")  # same venv, new dependencies
    assert len(list(node.venv.glob(".cft-installed-*"))) == 1


def test_a_failed_install_fails_setup_and_is_retried(tmp_path):
    node = Node(tmp_path)
    node.venv = tmp_path / "fresh-venv"
    stub(node.root / "bin", "uv", UV.replace('echo "$*"', 'echo "$*"; [ "$1" = pip ] && exit 1;'))
    (node.workdir / "pyproject.toml").write_text("[project]\n")
    setup = task("train.yaml")["setup"]
    assert node.run(setup, {}, CFT_VENV=str(node.venv)).returncode != 0
    assert not list(node.venv.glob(".cft-installed-*"))


# --------------------------------------------------------------------------
# event_callback, as the jobs controller runs it


def controller(node: Node, notify_importable: bool, curl_rc: int = 0) -> None:
    # The controller has no workdir: `import notify` fails there unless installed.
    stub(node.root / "bin", "python3", RECORDER if notify_importable else "#!/bin/bash\nexit 1\n")
    stub(node.root / "bin", "curl", RECORDER.replace('"${STUB_RC:-0}"', str(curl_rc)))


def callback_env(status: str, **extra: str) -> dict:
    env = dict(task("train.yaml")["envs"], BUCKET=BUCKET, NTFY_TOPIC="cft-test-topic")
    env.update(JOB_STATUS=status, JOB_ID="7", TASK_NAME="train", SKYPILOT_TASK_ID=TRAIN_ID, CLUSTER_NAME="c")
    env.update(extra)
    return env


# SkyPilot passes the callback plain FAILED for every kind of failure (sky/jobs/state.py), never FAILED_SETUP.
@pytest.mark.parametrize("status", ["RECOVERING", "RECOVERED", "FAILED", "CANCELLED"])
def test_callback_posts_controller_events_to_ntfy(node, status):
    controller(node, notify_importable=False)
    proc = node.run(task("pipeline.yaml", "train")["event_callback"], callback_env(status))
    assert proc.returncode == 0, proc.stderr
    args = node.calls("curl")
    assert args[-1] == "https://ntfy.sh/cft-test-topic"
    assert f"Title: cft train: {status}" in args
    assert any(status in a and TRAIN_ID in a for a in args)


@pytest.mark.parametrize("status", ["SUBMITTED", "STARTING", "STARTED", "SUCCEEDED", "CANCELLING"])
def test_callback_leaves_node_events_to_the_wrapper(node, status):
    controller(node, notify_importable=False)
    proc = node.run(task("train.yaml")["event_callback"], callback_env(status))
    assert proc.returncode == 0
    assert node.calls("curl") is None


def test_callback_without_a_topic_is_silent(node):
    controller(node, notify_importable=False)
    proc = node.run(task("eval.yaml")["event_callback"], callback_env("FAILED", NTFY_TOPIC=""))
    assert proc.returncode == 0
    assert node.calls("curl") is None


def test_callback_never_fails_the_job(node):
    controller(node, notify_importable=False, curl_rc=7)  # ntfy unreachable
    proc = node.run(task("train.yaml")["event_callback"], callback_env("FAILED", NTFY_SERVER="http://127.0.0.1:9"))
    assert proc.returncode == 0
    assert node.calls("curl")[-1] == "http://127.0.0.1:9/cft-test-topic"



def test_overrides_become_set_flags_and_a_bad_one_stops_the_job(node):
    import sys

    repo = Path(__file__).resolve().parents[1]
    # `python -m cft.overrides` is the real one (it checks the pairs); everything else is the recorder.
    stub(node.venv / "bin", "python", RECORDER.replace(
        "#!/bin/bash\n", f'#!/bin/bash\n[ "$2" = cft.overrides ] && PYTHONPATH="{repo}" exec "{sys.executable}" "$@"\n'))
    train = task("train.yaml")
    overrides = "train.learning_rate=1e-4 'model.prompt_template=Say: {}' lora.r=16"
    proc = node.run(train["run"], train["envs"], BUCKET=BUCKET, OVERRIDES=overrides, RECIPE="no-such-file.yaml")
    assert proc.returncode == 0, proc.stderr
    args = node.calls("python")
    assert args[args.index("--bucket"):] == ["--bucket", BUCKET, "--set", "train.learning_rate=1e-4",
                                             "--set", "model.prompt_template=Say: {}", "--set", "lora.r=16"]

    (node.log / "python.args").unlink()
    proc = node.run(train["run"], train["envs"], BUCKET=BUCKET, OVERRIDES="train.learning_rate 1e-4")
    assert proc.returncode == 2
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("cft: error: OVERRIDES: --set expects section.key=value"), proc.stderr
    # torchrun never started; the phone hears why
    assert node.calls("python") == ["-m", "notify", "send", line, "--title", "train failed: OVERRIDES rejected",
                                    "--priority", "high"]
