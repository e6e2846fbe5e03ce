"""jobs/*.yaml and sky/config.yaml, checked by SkyPilot's own parser and by eye.

SkyPilot runs in its own venv (``tests/sky_env.py``; it pins ``click<8.2``), so
its parser is driven through a subprocess. The parser checks need no network:
schema validation and ``Resources`` construction are offline; only checking
accelerator names against the clouds' catalogs (downloaded from GitHub) is left
out, and a real ``sky launch --dryrun`` covers that on a machine with a cloud.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import sky_env
from sky_env import JOB_FILES, JOBS_DIR, REPO_ROOT, job_tasks

SECRETS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "HF_TOKEN", "NTFY_TOKEN")
# Required: null in the YAML, so SkyPilot wants a value at launch. Optional:
# an empty default, so leaving them out is harmless.
REQUIRED_SECRETS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
OPTIONAL_SECRETS = ("HF_TOKEN", "NTFY_TOKEN")
# The names notify/redact.py treats as secrets (spec: "Secrets").
SECRET_LIKE = re.compile(r"TOKEN|KEY|SECRET|PASSWORD|PASSWD|CREDENTIAL")
COMMON_ENVS = {"BUCKET", "RUN_ID", "NTFY_TOPIC", "NTFY_SERVER", "AWS_ENDPOINT_URL"}
BUCKET = "s3://my-bucket/cft"


# --------------------------------------------------------------------------
# SkyPilot's parser, in its own venv


@pytest.fixture(scope="session")
def sky_python() -> Path:
    try:
        return sky_env.ensure_sky_venv()
    except subprocess.CalledProcessError as exc:
        pytest.fail(f"could not build the SkyPilot venv ({sky_env.SKYPILOT_PIN}) at {sky_env.sky_venv_path()}: {exc}")


@pytest.fixture(scope="session")
def sky_home(tmp_path_factory) -> Path:
    # SkyPilot writes ~/.sky on import and reads ~/.sky/config.yaml: keep both
    # away from the developer's own.
    return tmp_path_factory.mktemp("sky-home")


def _run_sky(sky_python: Path, sky_home: Path, *args: str) -> tuple[bool, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("SKYPILOT_") and k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")
    }
    env.update(HOME=str(sky_home), SKYPILOT_DISABLE_USAGE_COLLECTION="1")
    proc = subprocess.run(
        [str(sky_python), str(Path(sky_env.__file__)), *args],
        cwd=REPO_ROOT,  # workdir: . is relative to where `sky` runs
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    for line in proc.stdout.splitlines():
        if line.startswith(sky_env.RESULT_MARK):
            return True, line[len(sky_env.RESULT_MARK):]
        if line.startswith(sky_env.ERROR_MARK):
            return False, line[len(sky_env.ERROR_MARK):]
    raise AssertionError(f"no result from SkyPilot's parser (rc {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")


def sky_validate(sky_python, sky_home, command: str, path: Path, *overrides: str) -> dict:
    ok, text = _run_sky(sky_python, sky_home, command, str(path), *overrides)
    assert ok, f"SkyPilot rejects {path}: {text}"
    return json.loads(text)


def sky_error(sky_python, sky_home, command: str, path: Path, *overrides: str) -> str:
    ok, text = _run_sky(sky_python, sky_home, command, str(path), *overrides)
    assert not ok, f"SkyPilot accepted {path}, expected an error"
    return text


@pytest.fixture(scope="session")
def parsed(sky_python, sky_home) -> dict[str, dict]:
    """Each jobs/*.yaml as SkyPilot parses it with --env BUCKET=..."""
    return {
        name: sky_validate(sky_python, sky_home, "validate-task", JOBS_DIR / name, f"BUCKET={BUCKET}")
        for name in JOB_FILES
    }


@pytest.mark.parametrize("name", JOB_FILES)
def test_skypilot_accepts_the_job_yaml(parsed, name):
    tasks = parsed[name]["tasks"]
    assert tasks
    for task in tasks:
        assert task["envs"]["BUCKET"] == BUCKET  # --env reaches every task
        assert task["workdir"] == str(REPO_ROOT)


def test_pipeline_is_train_then_eval(parsed):
    pipeline = parsed["pipeline.yaml"]
    assert pipeline["dag_name"] == "cft-pipeline"
    assert [t["name"] for t in pipeline["tasks"]] == ["train", "eval"]


def test_each_pipeline_document_is_a_valid_task_on_its_own(sky_python, sky_home, tmp_path):
    text = (JOBS_DIR / "pipeline.yaml").read_text()
    documents = re.split(r"(?m)^---$", text)
    assert len(documents) == 3, "header, train, eval"
    for index, document in enumerate(documents[1:], start=1):
        path = tmp_path / f"pipeline-doc{index}.yaml"
        path.write_text(document)
        result = sky_validate(sky_python, sky_home, "validate-task", path, f"BUCKET={BUCKET}")
        assert len(result["tasks"]) == 1


def test_skypilot_sees_the_resources_we_mean(parsed):
    def resources(name, index=0):
        return parsed[name]["tasks"][index]["resources"]

    train = resources("train.yaml")
    # In this order: SkyPilot tries the first and falls back to the next only
    # when it cannot get it (an `any_of` set would take the cheapest).
    assert [r["accelerators"] for r in train] == [{"H100": 8}, {"A100-80GB": 8}, {"A100": 8}]
    assert [r["accelerators"] for r in resources("eval.yaml")] == [
        {"H100": 1}, {"A100-80GB": 1}, {"A100": 1}, {"A10": 1}]
    for name, result in parsed.items():
        for task in result["tasks"]:
            assert task["resources_ordered"], f"{name}:{task['name']}: GPU candidates are a set (cheapest wins)"
    for r in train + resources("eval.yaml"):
        assert r["cloud"] == "Lambda"
        assert r["use_spot"] is False  # Lambda has no spot instances
        assert r["disk_size"] >= 100
    assert {next(iter(r["accelerators"].values())) for r in resources("eval.yaml")} == {1}
    assert resources("pipeline.yaml", 0) == train
    assert resources("pipeline.yaml", 1) == resources("eval.yaml")


def test_managed_jobs_restart_on_errors(parsed):
    # Without it a managed job ends FAILED on the first non-zero exit of a
    # healthy cluster (a transient S3 outage, an NCCL timeout).
    for name, result in parsed.items():
        for task in result["tasks"]:
            for r in task["resources"]:
                assert r["job_recovery"]["max_restarts_on_errors"] >= 1, f"{name}:{task['name']}"


def test_skypilot_takes_the_secrets_at_launch_time(parsed):
    for name, result in parsed.items():
        for task in result["tasks"]:
            assert task["secret_refs"] == sorted(REQUIRED_SECRETS), name
            # The optional ones are inline but empty: no secret value in the YAML.
            assert task["inline_secrets"] == task["empty_secrets"] == sorted(OPTIONAL_SECRETS), name
            assert not [k for k in task["envs"] if SECRET_LIKE.search(k)], f"{name}: a secret under envs"


@pytest.mark.parametrize("name", JOB_FILES)
def test_optional_secrets_may_be_left_out_required_ones_may_not(sky_python, sky_home, name):
    # SkyPilot's own check (run by `sky launch`, --dryrun included, before it
    # provisions anything; `sky jobs launch` leaves it to the controller,
    # which then retries forever, hence the dry run in docs/cloud.md).
    path = JOBS_DIR / name
    aws = [f"secret:{key}=dummy-value" for key in REQUIRED_SECRETS]
    result = sky_validate(sky_python, sky_home, "resolve-secrets", path, f"BUCKET={BUCKET}", *aws)
    for task_secrets in result["tasks"]:
        assert task_secrets == sorted(SECRETS)
    message = sky_error(sky_python, sky_home, "resolve-secrets", path, f"BUCKET={BUCKET}",
                        "secret:HF_TOKEN=hf_dummy", aws[0])
    assert "AWS_SECRET_ACCESS_KEY" in message and "HF_TOKEN" not in message


def test_bucket_must_be_given(sky_python, sky_home):
    # A folder on the node dies with it: SkyPilot itself refuses to launch.
    for name in ("train.yaml", "pipeline.yaml"):
        message = sky_error(sky_python, sky_home, "validate-task", JOBS_DIR / name)
        assert "BUCKET" in message


@pytest.mark.parametrize(
    ("field", "typo"),
    [("resources:", "resorces:"), ("accelerators:", "accelerator:")],
)
def test_a_typo_fails_validation(sky_python, sky_home, tmp_path, field, typo):
    text = (JOBS_DIR / "train.yaml").read_text()
    assert field in text
    path = tmp_path / "train-typo.yaml"
    path.write_text(text.replace(field, typo))
    message = sky_error(sky_python, sky_home, "validate-task", path, f"BUCKET={BUCKET}")
    assert typo.rstrip(":") in message
    assert f"did you mean '{field.rstrip(':')}'" in message


def test_skypilot_accepts_the_config(sky_python, sky_home):
    config = sky_validate(sky_python, sky_home, "validate-config", REPO_ROOT / "sky" / "config.yaml")["config"]
    infra = config["jobs"]["controller"]["resources"]["infra"]
    # SkyPilot cannot host controllers on Lambda.
    assert not infra.lower().startswith("lambda")


def test_a_config_typo_fails_validation(sky_python, sky_home, tmp_path):
    text = (REPO_ROOT / "sky" / "config.yaml").read_text()
    path = tmp_path / "config-typo.yaml"
    path.write_text(text.replace("    resources:", "    resorces:", 1))
    assert "resorces" in sky_error(sky_python, sky_home, "validate-config", path)


# --------------------------------------------------------------------------
# What the parser does not check: our own conventions


def _all_tasks():
    for name in JOB_FILES:
        for task in job_tasks(name):
            yield name, task


def _scripts():
    for name, task in _all_tasks():
        for field in ("setup", "run", "event_callback"):
            if task.get(field):
                yield f"{name}:{task['name']}:{field}", task[field]


def test_files_open_with_a_usage_comment():
    for name in JOB_FILES:
        head = (JOBS_DIR / name).read_text().split("\n\n", 1)[0]
        assert all(line.startswith("#") for line in head.splitlines()), name
        assert "sky jobs launch" in head or "sky launch" in head, name


def test_secrets_are_null_and_never_envs():
    for name, task in _all_tasks():
        expected = {**dict.fromkeys(REQUIRED_SECRETS), **dict.fromkeys(OPTIONAL_SECRETS, "")}
        assert task["secrets"] == expected, f"{name}: secrets must be {expected}"
        for key in task["envs"]:
            assert not SECRET_LIKE.search(key), f"{name}: {key} looks like a secret but is under envs"


def test_scripts_never_touch_a_secret():
    # Secrets reach the programs through their environment; a script that
    # names one risks echoing it (set -x, error messages, ...).
    for where, script in _scripts():
        for secret in SECRETS:
            assert secret not in script, f"{where} mentions {secret}"
        assert "set -x" not in script and "xtrace" not in script, where


def test_envs_have_defaults_for_everything_but_the_bucket():
    for name, task in _all_tasks():
        envs = task["envs"]
        assert COMMON_ENVS <= set(envs), f"{name}: missing {COMMON_ENVS - set(envs)}"
        kind = "train" if "train" in task["name"] else "eval"
        assert ({"RECIPE"} if kind == "train" else {"ADAPTER", "TASKS"}) <= set(envs), name
        for key, value in envs.items():
            if key == "BUCKET":
                continue
            assert value is not None, f"{name}: {key} needs a default"
        assert envs["NTFY_SERVER"].startswith("https://")


def test_no_spot_on_lambda():
    for name, task in _all_tasks():
        resources = task["resources"]
        assert "use_spot" not in resources, name
        assert "any_of" not in resources, f"{name}: any_of takes the cheapest candidate; use ordered"
        candidates = resources.get("ordered") or [resources]
        assert len(candidates) >= 3, f"{name}: fall back across GPU types"
        for candidate in candidates:
            assert candidate.get("use_spot") in (None, False), name
            assert candidate.get("infra", "").startswith("lambda"), name


def test_scripts_are_strict_and_parse():
    for where, script in _scripts():
        if not where.endswith(":event_callback"):
            first = next(line for line in script.splitlines() if line.strip() and not line.startswith("#"))
            assert first == "set -euo pipefail", f"{where} must start with set -euo pipefail"
        proc = subprocess.run(["bash", "-n"], input=script, capture_output=True, text=True)
        assert proc.returncode == 0, f"{where}: bash -n: {proc.stderr}"


def test_every_job_runs_inside_the_notify_wrapper():
    for name, task in _all_tasks():
        kind = "train" if "train" in task["name"] else "eval"
        run = task["run"]
        assert re.search(rf"python -m notify run --name {kind} -- ", run.replace("\\\n", " ")), name
        # The wrapper's exit code is the job's: captured, reported, returned.
        assert "|| rc=$?" in run and run.rstrip().endswith('exit "$rc"'), name


def test_train_starts_torchrun_on_all_gpus_of_all_nodes():
    for name, task in _all_tasks():
        if "train" not in task["name"]:
            continue
        launch = " ".join(task["run"].replace("\\\n", " ").split())
        for flag in (
            '--nnodes="${SKYPILOT_NUM_NODES:-1}"',
            '--nproc_per_node="$NPROC"',
            '--node_rank="${SKYPILOT_NODE_RANK:-0}"',
            '--master_addr="$MASTER_ADDR"',
            '--master_port="$MASTER_PORT"',
            '-m cft train --config "$RECIPE" --bucket "$BUCKET"',
        ):
            assert flag in launch, f"{name}: torchrun lacks {flag}"
        assert "SKYPILOT_NUM_GPUS_PER_NODE" in launch and "SKYPILOT_NODE_IPS" in launch


def test_eval_reads_the_adapter_from_the_bucket():
    for name, task in _all_tasks():
        if "eval" in task["name"]:
            run = task["run"]
            assert 'cft eval --adapter "$ADAPTER" --tasks "$TASKS"' in run, name
            assert 'ADAPTER="${BUCKET%/}/runs/$RUN_ID/adapter"' in run, name


def test_managed_jobs_report_controller_events():
    for name, task in _all_tasks():
        callback = task.get("event_callback") or ""
        # It runs on the jobs controller: no workdir, no notify package, no venv.
        assert "python" not in callback and "curl" in callback, name
        for status in ("RECOVERING", "RECOVERED", "FAILED", "CANCELLED"):
            assert status in callback, f"{name}: callback ignores {status}"


def test_setup_installs_the_train_extra_once():
    for name, task in _all_tasks():
        setup = task["setup"]
        assert '-e ".[train]"' in setup, name
        assert "sha256sum pyproject.toml" in setup and 'touch "$STAMP"' in setup, name


def test_pipeline_tasks_are_the_standalone_tasks():
    train, evaluation = job_tasks("pipeline.yaml")
    for piped, alone in ((train, job_tasks("train.yaml")[0]), (evaluation, job_tasks("eval.yaml")[0])):
        for field in ("setup", "run", "event_callback", "secrets", "resources", "num_nodes", "workdir"):
            assert piped[field] == alone[field], f"pipeline {piped['name']}: {field} differs from the standalone YAML"
        expected_envs = dict(alone["envs"], BUCKET=None)  # the pipeline needs a bucket between its tasks
        assert piped["envs"] == expected_envs


def test_sky_folder_holds_yaml_only():
    # An __init__.py would turn sky/ into a package shadowing SkyPilot's `sky`.
    files = [p for p in (REPO_ROOT / "sky").rglob("*") if p.is_file()]
    assert files
    assert not [p for p in files if p.suffix not in (".yaml", ".yml")], files
