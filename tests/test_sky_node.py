"""jobs/*.yaml run for real on emulated nodes: train, evaluate, two nodes, recovery and faults, through S3 on loopback.

Each node runs the task's ``setup`` and ``run`` with bash, as SkyPilot does (``tests/sky_node.py``): the
``SKYPILOT_*`` variables, the task's envs, the secrets. The bucket is moto's S3 server on 127.0.0.1, reached
through ``AWS_ENDPOINT_URL``; ntfy is ``notify.testing.FakeNtfyServer``. The model is the tiny Llama of
``conftest.py``, so a whole run takes seconds on a CPU; torchrun and gloo stand in for NCCL.
"""

from __future__ import annotations

import json
import re
import signal
import time
from pathlib import Path

import pytest
from conftest import tiny_recipe_yaml
from sky_env import job_tasks
from sky_node import S3_CREDENTIALS, MotoS3, Node, free_port, install_hooks, kill_tree

from notify.testing import FakeNtfyServer

pytestmark = pytest.mark.slow

TOPIC = "cft-node-test"
TRAIN_ID = "sky-managed-2026-01-02-03-04-05-678901_cft-pipeline_train_7-0"
EVAL_ID = "sky-managed-2026-01-02-03-04-05-678901_cft-pipeline_eval_7-1"
SECRETS = {
    "AWS_SECRET_ACCESS_KEY": "cftSecretAwsKey-7f3e9c2a",
    "HF_TOKEN": "hf_cftSecretHubToken51d2a8",
    "NTFY_TOKEN": "tk_cftSecretNtfy0b6e44",
}


def task(file_name: str, name: str | None = None) -> dict:
    return next(t for t in job_tasks(file_name) if name is None or t["name"] == name)


@pytest.fixture
def s3():
    with MotoS3() as server:
        yield server


@pytest.fixture
def ntfy():
    with FakeNtfyServer() as server:
        yield server


@pytest.fixture
def recipe(tmp_path, tiny_model_dir, triplets_csv):
    def make(**train) -> Path:
        return tiny_recipe_yaml(tmp_path / "recipe.yaml", tiny_model_dir, triplets_csv, **train)

    return make


def bucket_env(s3: MotoS3, ntfy: FakeNtfyServer, **extra: str) -> dict[str, str]:
    """What `sky launch --env BUCKET=... --env NTFY_TOPIC=... --secret ...` gives a node (plus the endpoint)."""
    return {"BUCKET": s3.uri(), "AWS_ENDPOINT_URL": s3.endpoint, **S3_CREDENTIALS, "HF_TOKEN": "",
            "NTFY_TOKEN": "", "NTFY_TOPIC": TOPIC, "NTFY_SERVER": ntfy.url, **extra}


def run_keys(s3: MotoS3, run_id: str) -> list[str]:
    """The run's objects, relative to runs/<run_id>/."""
    prefix = f"cft/runs/{run_id}/"
    return [key[len(prefix):] for key in s3.objects(prefix)]


def manifest(s3: MotoS3, run_id: str) -> dict:
    return json.loads(s3.read(f"cft/runs/{run_id}/manifest.json"))


def complete_steps(keys: list[str]) -> list[int]:
    return sorted(int(m.group(1)) for k in keys if (m := re.fullmatch(r"checkpoints/checkpoint-(\d+)/_COMPLETE", k)))


def titles(ntfy: FakeNtfyServer) -> list[str]:
    return [note.title or "" for note in ntfy.published]


def assert_setup_skips_the_install_next_time(node: Node, setup: str) -> None:
    first = node.run(setup, {})
    assert first.returncode == 0, first
    assert "installed .[train]" in first.output
    assert node.uv_calls.read_text().splitlines() == [f"pip install --python {node.venv}/bin/python -e .[train]"]
    again = node.run(setup, {})
    assert again.returncode == 0 and "skipping install" in again.output, again
    assert len(node.uv_calls.read_text().splitlines()) == 1


def assert_no_secret_in_the_bucket(s3: MotoS3) -> None:
    values = [value.encode() for value in SECRETS.values()]
    objects = s3.objects()
    assert objects
    for key in objects:
        data = s3.read(key)
        assert not [v for v in values if v in data], f"a secret in s3://{s3.bucket}/{key}"


def assert_no_secret_on_the_nodes(nodes: list[Node], ntfy: FakeNtfyServer) -> None:
    """No secret value in any file a node wrote, or in any notification's text."""
    values = [value.encode() for value in SECRETS.values()]
    for node in nodes:
        files = node.files()
        assert any(path.parent.name == "logs" for path in files), "the wrapper's local logs/ is scanned too"
        for path in files:
            data = path.read_bytes()
            assert not [v for v in values if v in data], f"a secret in {path}"
    for note in ntfy.published:
        text = " ".join(str(part) for part in (note.title, note.body, note.tags, note.click))
        assert not [v for v in SECRETS.values() if v in text], f"a secret in the notification {note.title!r}"
        # The token was there to be leaked: it authenticated every publish.
        assert note.authorization == f"Bearer {SECRETS['NTFY_TOKEN']}"


def write_sts_data(folder: Path) -> Path:
    """A data folder laid out like ../shared/data with one small STS task (BIOSSES): no hub needed."""
    rows = ["sentence1\tsentence2\tscore"]
    subjects = ["a man", "a woman", "the dog", "a cat", "two kids"]
    places = ["the park", "the beach", "a small house", "the river"]
    for i in range(20):
        subject, place = subjects[i % 5], places[i % 4]
        other = places[(i + 1 + i // 4) % 4]
        rows.append(f"{subject} walks to {place} .\t{subject} is near {place if i % 2 else other} .\t{4 if i % 2 else i % 3}")
    (folder / "sts").mkdir(parents=True)
    (folder / "sts" / "biosses.tsv").write_text("\n".join(rows) + "\n")
    return folder


# --------------------------------------------------------------------------
# The managed pipeline: train on one node, evaluate on another, everything in the bucket


def test_pipeline_trains_then_evaluates_through_the_bucket(tmp_path, s3, ntfy, recipe):
    train, evaluation = task("pipeline.yaml", "train"), task("pipeline.yaml", "eval")
    ids = {"SKYPILOT_TASK_IDS": f"{TRAIN_ID}\n{EVAL_ID}"}
    env = bucket_env(s3, ntfy, **SECRETS)

    train_node = Node(tmp_path / "train-node")
    assert_setup_skips_the_install_next_time(train_node, train["setup"])
    trained = train_node.run(train["run"], train["envs"], RECIPE=str(recipe(max_steps=30, save_steps=10)),
                             SKYPILOT_TASK_ID=TRAIN_ID, PYTHONPATH=str(install_hooks(tmp_path / "hooks")),
                             CFT_TEST_LEAK_SECRETS="1", **ids, **env)
    assert trained.returncode == 0, trained
    assert "environment: AWS_SECRET_ACCESS_KEY=*** HF_TOKEN=*** NTFY_TOKEN=***" in trained.output  # leaked, redacted
    assert "cft: train on node 0 exited with code 0" in trained.output

    eval_node = Node(tmp_path / "eval-node")  # its own cluster: only the bucket connects the two tasks
    setup = eval_node.run(evaluation["setup"], {})
    assert setup.returncode == 0, setup
    evaluated = eval_node.run(evaluation["run"], evaluation["envs"], TASKS="BIOSSES",
                              DATA_DIR=str(write_sts_data(tmp_path / "data")), SKYPILOT_TASK_ID=EVAL_ID, **ids, **env)
    assert evaluated.returncode == 0, evaluated
    assert f"cft: eval of {s3.uri()}/runs/{TRAIN_ID}/adapter exited with code 0" in evaluated.output

    keys = run_keys(s3, TRAIN_ID)
    assert "config.yaml" in keys
    assert complete_steps(keys) == [20, 30]  # save_total_limit 2: the oldest was removed
    checkpoint = {k.split("/", 2)[2] for k in keys if k.startswith("checkpoints/checkpoint-30/")}
    assert {"adapter_model.safetensors", "optimizer.pt", "trainer_state.json", "_COMPLETE"} <= checkpoint
    adapter = {k.split("/", 1)[1] for k in keys if k.startswith("adapter/")}
    assert {"adapter_config.json", "adapter_model.safetensors", "cft_metadata.json", "tokenizer.json",
            "tokenizer_config.json"} <= adapter
    logs = [k.split("/", 1)[1] for k in keys if k.startswith("logs/")]
    stamp = r"\d{8}-\d{6}"
    assert sorted(re.sub(stamp, "T", name) for name in logs) == ["eval-T.log", "train-T-rank0.log", "train-T.log"]
    eval_files = [k for k in keys if k.startswith("eval/")]
    assert {"eval/summary.json", "eval/summary.md"} <= set(eval_files)
    assert any(k.endswith("/BIOSSES.json") for k in eval_files)
    assert "BIOSSES" in json.dumps(json.loads(s3.read(f"cft/runs/{TRAIN_ID}/eval/summary.json")))

    run = manifest(s3, TRAIN_ID)
    assert run["status"] == "succeeded" and run["error"] is None
    assert run["run_id"] == TRAIN_ID and run["steps"] == 30 and run["world_size"] == 1
    assert run["resumed_from_step"] is None
    assert run["adapter"] == f"{s3.uri()}/runs/{TRAIN_ID}/adapter"
    assert run["metrics"]["train_loss"] > 0

    assert titles(ntfy) == ["train succeeded", "eval succeeded"]
    assert f"{s3.uri()}/runs/{TRAIN_ID}/adapter" in ntfy.published[0].body  # where the adapter is
    assert all(note.topic == TOPIC for note in ntfy.published)
    assert_no_secret_in_the_bucket(s3)
    assert_no_secret_on_the_nodes([train_node, eval_node], ntfy)


# --------------------------------------------------------------------------
# Two nodes: one job, world size 2, only rank 0 writes the run


def test_two_nodes_train_one_job_and_only_rank_zero_writes_it(tmp_path, s3, ntfy, recipe):
    train = task("train.yaml")
    run_id = "sky-2026-01-02-03-04-05-678901_cft-train_3"
    cluster = dict(
        SKYPILOT_TASK_ID=run_id, SKYPILOT_NUM_NODES="2", SKYPILOT_NODE_IPS="127.0.0.1\n127.0.0.1",
        SKYPILOT_NUM_GPUS_PER_NODE="0", MASTER_PORT=str(free_port()),
        SKYPILOT_CLUSTER_INFO=json.dumps({"cluster_name": "cft-2", "num_nodes": 2}),
        RECIPE=str(recipe(max_steps=20, save_steps=10, batch_size=4)), **bucket_env(s3, ntfy),
    )
    nodes = [Node(tmp_path / f"node{rank}") for rank in (0, 1)]
    processes = [node.start(train["run"], train["envs"], SKYPILOT_NODE_RANK=str(rank), **cluster)
                 for rank, node in enumerate(nodes)]
    results = [node.wait(process) for node, process in zip(nodes, processes)]
    for rank, result in enumerate(results):
        assert result.returncode == 0, result
        assert f"cft: train on node {rank} exited with code 0" in result.output
        assert f"--nnodes=2 --nproc_per_node=1 --node_rank={rank} --master_addr=127.0.0.1" in result.output
    assert "distributed: world size 2" in results[0].output

    run = manifest(s3, run_id)
    assert run["status"] == "succeeded"
    assert run["world_size"] == 2 and run["steps"] == 20

    keys = run_keys(s3, run_id)
    # Logs: each node's wrapper uploads its own (node 1's with a -node1 suffix); cft's log is rank 0's only.
    logs = sorted(re.sub(r"\d{8}-\d{6}", "T", k.split("/", 1)[1]) for k in keys if k.startswith("logs/"))
    assert logs == ["train-T-node1.log", "train-T-rank0.log", "train-T.log"]
    # Training artifacts: rank 0's alone. The Trainer saves an RNG state per process; rank 1's stays on node 1.
    for step in complete_steps(keys):
        files = {k.rsplit("/", 1)[1] for k in keys if k.startswith(f"checkpoints/checkpoint-{step}/")}
        assert "rng_state_0.pth" in files and "rng_state_1.pth" not in files
    assert complete_steps(keys) == [10, 20]
    assert not [k for k in keys if "rank1" in k or ("node1" in k and not k.startswith("logs/"))]
    node1_files = [p.relative_to(nodes[1].root).as_posix() for p in nodes[1].files()]
    assert not [f for f in node1_files if "/adapter/" in f or "rank" in f or "training.png" in f], node1_files
    assert any(f.endswith("rng_state_1.pth") for f in node1_files)  # rank 1 did train, on its own disk

    # One success notification, from node 0; node 1 reports only problems.
    assert titles(ntfy) == ["train succeeded"]


# --------------------------------------------------------------------------
# Recovery: a lost node, and a node lost in the middle of an upload


def test_a_killed_job_resumes_from_its_newest_complete_checkpoint(tmp_path, s3, ntfy, recipe):
    train = task("train.yaml")
    run_id = "sky-managed-2026-01-02-03-04-05-678901_cft-train_9-0"
    env = dict(RECIPE=str(recipe(max_steps=400, save_steps=10)), SKYPILOT_TASK_ID=run_id, **bucket_env(s3, ntfy))
    prefix = f"cft/runs/{run_id}"

    first = Node(tmp_path / "first")
    process = first.start(train["run"], train["envs"], **env)
    s3.wait_for(f"{prefix}/checkpoints/checkpoint-20/_COMPLETE", timeout=180, process=process)
    killed = kill_tree(process, signal.SIGKILL)  # the VM is gone: bash, wrapper, torchrun, worker at once
    assert len(killed) >= 4 and process.returncode == -signal.SIGKILL
    keys = run_keys(s3, run_id)
    assert "manifest.json" not in keys
    newest = complete_steps(keys)[-1]
    assert 20 <= newest < 400

    # SkyPilot recovers the managed job on a fresh node, with the same SKYPILOT_TASK_ID.
    second = Node(tmp_path / "second")
    resumed = second.run(train["run"], train["envs"], **env)
    assert resumed.returncode == 0, resumed
    assert f"cft: run {run_id} resumed from checkpoint step {newest}" in resumed.output
    run = manifest(s3, run_id)
    assert run["status"] == "succeeded" and run["steps"] == 400
    assert run["resumed_from_step"] == newest >= 20
    assert titles(ntfy) == ["cft: resumed", "train succeeded"]
    assert f"checkpoint step {newest}" in ntfy.published[0].body


@pytest.mark.parametrize(
    ("dies_uploading", "complete_before", "resumes_from"),
    [("/checkpoints/checkpoint-20/", [10], 10), ("/adapter/", [20, 30], 30)],
    ids=["checkpoint", "adapter"],
)
def test_a_job_killed_mid_upload_leaves_nothing_that_looks_complete(tmp_path, s3, ntfy, recipe, dies_uploading,
                                                                     complete_before, resumes_from):
    train = task("train.yaml")
    run_id = "mid-upload"
    dying = tmp_path / "dying"
    env = dict(RECIPE=str(recipe(max_steps=30, save_steps=10)), RUN_ID=run_id, **bucket_env(s3, ntfy))
    node = Node(tmp_path / "node")
    process = node.start(train["run"], train["envs"], PYTHONPATH=str(install_hooks(tmp_path / "hooks")),
                         CFT_TEST_DYING=str(dying), CFT_TEST_DIE_UPLOADING=f"{dies_uploading}:2", **env)
    deadline = time.monotonic() + 180
    while not dying.exists():
        assert process.poll() is None, node.output()[-4000:]
        assert time.monotonic() < deadline, "the upload never started"
        time.sleep(0.1)
    kill_tree(process, signal.SIGKILL)

    keys = run_keys(s3, run_id)
    part = dies_uploading.strip("/")
    partial = [k for k in keys if k.startswith(part + "/")]
    assert len(partial) == 2, partial  # half of it is there ...
    assert f"{part}/_COMPLETE" not in keys and "manifest.json" not in keys  # ... and nothing says it is whole
    assert complete_steps(keys) == complete_before

    # `sky launch` again on the same cluster with --env RUN_ID: the run picks up where it was.
    again = node.run(train["run"], train["envs"], **env)
    assert again.returncode == 0, again
    assert f"cft: run {run_id} resumed from checkpoint step {resumes_from}" in again.output
    run = manifest(s3, run_id)
    assert run["status"] == "succeeded" and run["steps"] == 30 and run["resumed_from_step"] == resumes_from
    keys = run_keys(s3, run_id)
    assert complete_steps(keys) == [20, 30]  # and no checkpoint-31: not one step past max_steps
    assert {"adapter/adapter_model.safetensors", "adapter/cft_metadata.json"} <= set(keys)
    if resumes_from == 30:  # nothing was left to train: the adapter is the final checkpoint's
        assert tensors(s3, f"cft/runs/{run_id}/adapter/adapter_model.safetensors") == tensors(
            s3, f"cft/runs/{run_id}/checkpoints/checkpoint-30/adapter_model.safetensors")


def tensors(s3: MotoS3, key: str) -> dict[str, list]:
    from safetensors.torch import load

    return {name: tensor.tolist() for name, tensor in load(s3.read(key)).items()}


# --------------------------------------------------------------------------
# Faults


@pytest.fixture(scope="module")
def s3_outage(tmp_path_factory, tiny_model_dir, triplets_csv):
    """A training job whose S3 server dies after its first checkpoint (a run with secrets in its environment)."""
    tmp_path = tmp_path_factory.mktemp("s3-outage")
    train = task("train.yaml")
    run_id = "s3-outage"
    node = Node(tmp_path / "node")
    recipe = tiny_recipe_yaml(tmp_path / "recipe.yaml", tiny_model_dir, triplets_csv, max_steps=400, save_steps=10)
    with MotoS3() as s3, FakeNtfyServer() as ntfy:
        env = dict(RECIPE=str(recipe), RUN_ID=run_id, CFT_S3_ATTEMPTS="2", CFT_TEST_LEAK_SECRETS="1",
                   PYTHONPATH=str(install_hooks(tmp_path / "hooks")), **bucket_env(s3, ntfy, **SECRETS))
        process = node.start(train["run"], train["envs"], **env)
        s3.wait_for(f"cft/runs/{run_id}/checkpoints/checkpoint-10/_COMPLETE", timeout=180, process=process)
        keys_before = run_keys(s3, run_id)
        assert_no_secret_in_the_bucket(s3)  # all the run could write: the server and its objects die next
        s3.stop()
        stopped = time.monotonic()
        result = node.wait(process, timeout=180)
        elapsed = time.monotonic() - stopped
    return dict(run_id=run_id, bucket=s3.bucket, node=node, ntfy=ntfy, result=result, elapsed=elapsed,
                keys_before=keys_before)


def test_an_s3_outage_fails_the_job_loudly_and_soon(s3_outage):
    result, run_id, ntfy = s3_outage["result"], s3_outage["run_id"], s3_outage["ntfy"]
    assert result.returncode != 0, result
    # The reason, in the job's output: which object, and that S3 could not be reached (after CFT_S3_ATTEMPTS).
    assert re.search(rf"cft: error: (uploading to|writing|reading|listing) s3://{s3_outage['bucket']}/cft/runs/"
                     rf"{run_id}/\S+ failed after retries: EndpointConnectionError", result.output), result
    assert f"cft: train on node 0 exited with code {result.returncode}" in result.output
    assert "notify: train failed with exit code" in result.output
    # Bounded: every S3 request gives up after 2 attempts, the wrapper's log upload too; nothing hangs.
    assert s3_outage["elapsed"] < 30, f"the job took {s3_outage['elapsed']:.0f}s to fail after S3 went away"
    assert "manifest.json" not in s3_outage["keys_before"]  # nothing claims the run finished

    assert titles(ntfy) == [f"train failed: exit code {result.returncode}"]
    assert ntfy.published[0].priority in ("high", "4")
    assert_no_secret_on_the_nodes([s3_outage["node"]], ntfy)


def test_the_failure_notification_says_why(s3_outage):
    assert "EndpointConnectionError" in s3_outage["ntfy"].published[0].body


# --------------------------------------------------------------------------
# One event, one notification: a failing two-node managed job, nodes and jobs controller together


def controller_events(controller: Node, task_envs: dict, ntfy: FakeNtfyServer, *statuses: str) -> None:
    """The jobs controller running the task's event_callback for each status, as sky/jobs/utils.py does."""
    callback = task("train.yaml")["event_callback"]
    for status in statuses:
        # The controller passes the task's envs and these, never the secrets.
        result = controller.run(callback, task_envs, JOB_STATUS=status, JOB_ID="7", TASK_ID="0",
                                TASK_NAME="train", CLUSTER_NAME="train-7", EVENT_TYPE="Spot",
                                NTFY_TOPIC=TOPIC, NTFY_SERVER=ntfy.url, SKYPILOT_TASK_ID=TRAIN_ID)
        assert result.returncode == 0, result


def test_a_failing_two_node_job_reaches_the_phone_once_with_its_reason(tmp_path, s3, ntfy):
    train = task("train.yaml")
    cluster = dict(
        SKYPILOT_TASK_ID=TRAIN_ID, SKYPILOT_NUM_NODES="2", SKYPILOT_NODE_IPS="127.0.0.1\n127.0.0.1",
        SKYPILOT_NUM_GPUS_PER_NODE="0", MASTER_PORT=str(free_port()),
        RECIPE=str(tmp_path / "no-such-recipe.yaml"), **bucket_env(s3, ntfy),
    )
    controller = Node(tmp_path / "controller")
    controller_events(controller, train["envs"], ntfy, "SUBMITTED", "STARTING", "STARTED")
    nodes = [Node(tmp_path / f"node{rank}") for rank in (0, 1)]
    processes = [node.start(train["run"], train["envs"], SKYPILOT_NODE_RANK=str(rank), **cluster)
                 for rank, node in enumerate(nodes)]
    results = [node.wait(process) for node, process in zip(nodes, processes)]
    assert all(result.returncode != 0 for result in results), results
    controller_events(controller, train["envs"], ntfy, "FAILED")

    assert len(ntfy.published) == 1, titles(ntfy)
    note = ntfy.published[0]
    assert note.title.startswith("train failed"), note.title
    assert "no-such-recipe.yaml" in note.body  # the reason, from rank 0's log


def test_a_job_that_fails_before_it_runs_is_reported_by_the_controller(tmp_path, ntfy):
    # No capacity, a failed launch: no node ever ran the wrapper, so the controller's FAILED is the news.
    controller = Node(tmp_path / "controller")
    controller_events(controller, task("train.yaml")["envs"], ntfy, "SUBMITTED", "STARTING", "FAILED")
    assert len(ntfy.published) == 1, titles(ntfy)
    assert "FAILED" in ntfy.published[0].title


def test_the_controller_reports_what_the_nodes_cannot_see(tmp_path, ntfy):
    controller = Node(tmp_path / "controller")
    envs = task("train.yaml")["envs"]
    controller_events(controller, envs, ntfy, "SUBMITTED", "STARTING", "STARTED", "RECOVERING", "RECOVERED",
                      "CANCELLING", "CANCELLED")
    assert [t.split(": ", 1)[1] for t in titles(ntfy)] == ["RECOVERING", "RECOVERED", "CANCELLED"]


def test_within_a_sweep_the_controller_reports_only_failures(tmp_path, ntfy):
    envs = dict(task("train.yaml")["envs"], SWEEP="lr-rank")  # what `cft sweep launch` passes
    controller_events(Node(tmp_path / "controller"), envs, ntfy, "SUBMITTED", "STARTING", "STARTED", "RECOVERING",
                      "RECOVERED", "CANCELLING", "CANCELLED")
    assert titles(ntfy) == []  # `cft sweep cancel` of ten members is not ten notifications
    controller_events(Node(tmp_path / "other"), envs, ntfy, "SUBMITTED", "STARTING", "FAILED")
    assert [t.split(": ", 1)[1] for t in titles(ntfy)] == ["FAILED"]
