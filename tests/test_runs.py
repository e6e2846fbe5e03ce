"""`cft runs`: every run in a bucket is listed with the right status, locally and on S3, whatever state it is in."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from cft.cli.main import main
from cft.errors import CFTError
from cft.registry import Manifest, ManifestError, list_runs, load_run
from cft.registry.durations import format_duration
from cft.storage.bucket import open_bucket
from s3_server import S3Server

NOW = datetime.now(timezone.utc)  # heartbeats are written relative to this; the CLI compares with the real clock


def iso(delta: timedelta) -> str:
    return (NOW - delta).isoformat(timespec="seconds")


CONFIG_YAML = """name: tiny
model:
  name_or_path: HuggingFaceTB/SmolLM2-135M
  pooling: last_token
  max_length: 64
  prompt_template: null
data:
  train_file: data/triplets.csv
lora:
  r: 8
  alpha: 16
  target_modules: [q_proj, v_proj]
train:
  batch_size: 32
  learning_rate: 0.0002
  max_steps: 100
  temperature: 0.05
"""


def manifest(run_id: str, **changes) -> dict:
    """A manifest as cft.training.run writes it."""
    data = {
        "run_id": run_id, "status": "succeeded", "model": "HuggingFaceTB/SmolLM2-135M",
        "recipe": "recipes/smollm2-135m.yaml", "recipe_name": "smollm2-135m", "git_sha": "abc1234",
        "cft_version": "0.1.0", "started_at": iso(timedelta(hours=3)), "finished_at": iso(timedelta(hours=2)),
        "duration_s": 3725.0, "steps": 100, "resumed_from_step": None, "world_size": 1, "triplets": 3200,
        "metrics": {"train_loss": 0.81, "final_loss": 0.52, "first_loss": 1.9},
        "adapter": f"ROOT/runs/{run_id}/adapter", "error": None,
    }
    data.update(changes)
    return data


def failed_manifest(run_id: str) -> dict:
    """As cft.training.run._record_failure writes it."""
    return manifest(run_id, status="failed", steps=None, world_size=None, metrics={}, adapter=None,
                    duration_s=12.5, started_at=iso(timedelta(hours=5)), finished_at=iso(timedelta(hours=5)),
                    error="Traceback ...\nRuntimeError: CUDA out of memory")


def populate(root: str) -> None:
    """A bucket with one run in each state, written through the same Bucket API the runs use."""
    bucket = open_bucket(root)

    def put(key: str, content) -> None:
        bucket.write_text(key, content if isinstance(content, str) else json.dumps(content, indent=2))

    # succeeded, evaluated: STS mean in the manifest and per-task scores in eval/summary.json
    good = manifest("good", metrics={"train_loss": 0.81, "final_loss": 0.52, "first_loss": 1.9, "sts_mean": 78.5,
                                     "STS12": 70.0, "STSBenchmark": 87.0})
    good["adapter"] = bucket.join("runs/good/adapter")
    put("runs/good/config.yaml", CONFIG_YAML)
    put("runs/good/status.json", {"status": "succeeded", "updated_at": iso(timedelta(hours=2)), "step": 100})
    for name in ("adapter_config.json", "adapter_model.safetensors", "cft_metadata.json"):
        put(f"runs/good/adapter/{name}", "{}")
    for name in ("adapter_model.safetensors", "trainer_state.json", "_COMPLETE"):
        put(f"runs/good/checkpoints/checkpoint-100/{name}", "x")
    put("runs/good/eval/summary.json", {"tasks": {"STS12": 70.0, "STSBenchmark": 87.0}, "mean": 78.5})
    put("runs/good/manifest.json", good)

    # succeeded, not evaluated; an older baseline to compare with
    base = manifest("base", started_at=iso(timedelta(days=2)), metrics={"train_loss": 0.9, "final_loss": 0.6,
                                                                       "STS12": 65.0, "STSBenchmark": 80.0})
    put("runs/base/manifest.json", base)
    put("runs/base/config.yaml", CONFIG_YAML)

    # failed
    put("runs/oom/config.yaml", CONFIG_YAML)
    put("runs/oom/manifest.json", failed_manifest("oom"))

    # half-written: killed mid-run, stale heartbeat, a checkpoint without its marker
    put("runs/half/config.yaml", CONFIG_YAML)
    put("runs/half/status.json", {"status": "running", "updated_at": iso(timedelta(hours=5)), "step": 40})
    put("runs/half/checkpoints/checkpoint-50/adapter_model.safetensors", "partial")

    # running: fresh heartbeat, no manifest yet
    put("runs/live/config.yaml", CONFIG_YAML)
    put("runs/live/status.json", {"status": "running", "updated_at": iso(timedelta(minutes=3)), "step": 7})

    # nothing but a log
    put("runs/bare/logs/train-20250101-000000.log", "starting\n")

    # corrupt manifests: not JSON, a field missing, a field of the wrong type
    put("runs/garbled/manifest.json", '{"run_id": "garbled", "status": "succ')
    put("runs/nomodel/manifest.json", {k: v for k, v in manifest("nomodel").items() if k != "model"})
    put("runs/strsteps/manifest.json", manifest("strsteps", steps="100"))


EXPECTED = {
    "good": "succeeded", "base": "succeeded", "oom": "failed", "half": "incomplete", "live": "running",
    "bare": "incomplete", "garbled": "corrupt", "nomodel": "corrupt", "strsteps": "corrupt",
}


@pytest.fixture(scope="module")
def s3_server():
    with S3Server(buckets=["cft-runs-test", "cft-empty"]) as server, pytest.MonkeyPatch.context() as patch:
        for name, value in server.env.items():
            patch.setenv(name, value)
        patch.setenv("CFT_S3_ATTEMPTS", "1")
        yield server


@pytest.fixture(scope="module", params=["local", "s3"])
def root(request, tmp_path_factory):
    if request.param == "local":
        path = str(tmp_path_factory.mktemp("bucket"))
    else:
        request.getfixturevalue("s3_server")
        path = "s3://cft-runs-test/team/cft"
    populate(path)
    return path


def table_rows(text: str) -> dict[str, list[str]]:
    lines = text.splitlines()
    rows = {}
    for line in lines[1:]:
        if not line.strip():
            break
        cells = line.split()
        rows[cells[0]] = cells
    return rows


def test_every_run_is_listed_with_its_status(root):
    records = {r.run_id: r for r in list_runs(open_bucket(root), now=NOW)}
    assert {run_id: r.status for run_id, r in records.items()} == EXPECTED
    assert records["good"].score.label == "sts_mean" and records["good"].score.value == 78.5
    assert records["base"].score.label == "eval_mean" and records["base"].score.value == pytest.approx(72.5)
    assert records["oom"].reason == "RuntimeError: CUDA out of memory"
    assert "last heartbeat 5h00m ago at step 40" in records["half"].reason
    assert records["live"].steps == 7 and records["live"].model == "HuggingFaceTB/SmolLM2-135M"
    assert "no manifest.json and no status.json" in records["bare"].reason
    assert "not JSON" in records["garbled"].reason
    assert "missing field 'model'" in records["nomodel"].reason
    assert "steps must be an integer or null (got str '100')" in records["strsteps"].reason


def test_table_shows_a_status_per_run(root, capsys):
    assert main(["runs", root]) == 0
    out = capsys.readouterr().out
    rows = table_rows(out)
    assert {run_id: cells[1] for run_id, cells in rows.items()} == EXPECTED
    good = rows["good"]
    assert good[2:7] == ["HuggingFaceTB/SmolLM2-135M", "smollm2-135m", "100", "1h02m", "sts"]
    assert good[-1].endswith("runs/good/adapter")
    # newest first; runs with no timestamp at all last
    order = list(rows)
    assert order.index("live") < order.index("good") < order.index("base")
    assert order[-1] in ("bare", "garbled", "nomodel", "strsteps")
    # the reasons are printed under the table
    assert "garbled: manifest.json is not JSON" in out
    assert "9 runs in" in out and "3 corrupt" in out


def test_json_listing_for_scripts(root, capsys):
    assert main(["runs", "--json", "--bucket", root]) == 0
    data = {r["run_id"]: r for r in json.loads(capsys.readouterr().out)}
    assert {run_id: r["status"] for run_id, r in data.items()} == EXPECTED
    assert data["good"]["score"] == {"label": "sts_mean", "value": 78.5, "higher_is_better": True}
    assert data["oom"]["adapter"] is None


def test_show_prints_manifest_config_eval_and_files(root, capsys):
    assert main(["runs", "show", "good", "--bucket", root]) == 0
    out = capsys.readouterr().out
    for expected in ("status       succeeded", "smollm2-135m (recipes/smollm2-135m.yaml)", "steps        100 on 1 process",
                     "duration     1h02m", "git sha      abc1234", "config (config.yaml)", "lora r / alpha  8 / 16",
                     "eval (eval/summary.json)", "STSBenchmark  87.00", "mean          78.50",
                     "checkpoints/checkpoint-100/  (3 files, complete)", "adapter/  (3 files"):
        assert expected in out, expected


def test_show_half_written_and_corrupt_runs(root, capsys):
    assert main(["runs", "show", "half", "--bucket", root]) == 0
    out = capsys.readouterr().out
    assert "incomplete" in out and "checkpoints/checkpoint-50/  (1 files, INCOMPLETE" in out
    assert main(["runs", "show", "strsteps", root]) == 0
    out = capsys.readouterr().out
    assert "corrupt" in out and "reason" in out and "steps must be an integer" in out


def test_show_json_and_run_folder_reference(root, capsys):
    assert main(["runs", "show", f"{root}/runs/oom", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["run"]["status"] == "failed" and data["manifest"]["error"].endswith("CUDA out of memory")
    assert data["config"]["lora"]["r"] == 8 and "config.yaml" in data["run"]["files"]


def test_compare_side_by_side_with_delta(root, capsys):
    assert main(["runs", "compare", "base", "good", "--bucket", root]) == 0
    out = capsys.readouterr().out
    assert "STS12" in out and "+5.00  (better)" in out and "+7.00  (better)" in out
    assert "final_loss" in out and "-0.0800  (better)" in out
    assert main(["runs", "compare", "base", "good", root, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["scores"]["STSBenchmark"] == {"a": 80.0, "b": 87.0, "delta": 7.0}
    assert data["scores"]["mean (shared tasks)"]["delta"] == pytest.approx(6.0)
    assert data["fields"]["steps"] == {"a": 100, "b": 100}


def test_unknown_run_is_one_line_naming_run_and_bucket(root, capsys):
    assert main(["runs", "show", "nope", "--bucket", root]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith("cft: error: run 'nope' not found in ") and f"{root.rstrip('/')}/runs" in err
    assert "good" in err  # lists what is there


def test_empty_bucket_says_how_to_make_a_run(s3_server, tmp_path, capsys):
    assert main(["runs", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip().startswith(f"no runs in {tmp_path}/runs yet; make one with `cft demo`")
    assert main(["runs", "list", "s3://cft-empty"]) == 0
    assert "no runs in s3://cft-empty/runs yet" in capsys.readouterr().out


def test_fresh_machine_runs_says_no_runs_yet_and_how_to_make_one(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # no ./cft-runs here
    monkeypatch.delenv("BUCKET", raising=False)
    for argv in (["runs"], ["runs", "list"]):
        assert main(argv) == 0
        out, err = capsys.readouterr()
        assert out.startswith("no runs in ./cft-runs/runs yet; make one with `cft demo`") and "cft train" in out
        assert err == ""
    assert main(["runs", "--json"]) == 0
    assert capsys.readouterr().out.strip() == "[]"
    assert not (tmp_path / "cft-runs").exists()  # looking creates nothing


def test_missing_local_root_is_a_user_error(tmp_path, capsys):
    assert main(["runs", str(tmp_path / "absent")]) == 2
    assert "no such folder" in capsys.readouterr().err


def test_default_root_is_bucket_env(tmp_path, monkeypatch, capsys):
    populate(str(tmp_path))
    monkeypatch.setenv("BUCKET", str(tmp_path))
    assert main(["runs"]) == 0
    assert set(table_rows(capsys.readouterr().out)) == set(EXPECTED)


def test_conflicting_roots_and_bad_usage(tmp_path, capsys):
    assert main(["runs", "show", "a", str(tmp_path), "--bucket", str(tmp_path / "other")]) == 2
    assert "two bucket roots" in capsys.readouterr().err
    assert main(["runs", "compare", "only-one"]) == 2
    assert "the following arguments are required: B" in capsys.readouterr().err
    assert main(["runs", "a", "b"]) == 2
    assert "cft runs list takes one BUCKET_ROOT (got a b)" in capsys.readouterr().err


def test_runs_are_real_subcommands_and_the_old_spellings_still_work(root, capsys):
    """`list` is a subcommand, not a bucket path; the first build's `cft runs ROOT` and flags before it still work."""
    outputs = []
    for argv in (["runs", "list", "--bucket", root], ["runs", root], ["runs", "--bucket", root],
                 ["runs", "-b", root, "list"], ["runs", "list", root]):
        assert main(argv) == 0, argv
        outputs.append(capsys.readouterr().out)
    assert all(set(table_rows(out)) == set(EXPECTED) for out in outputs)
    assert main(["runs", "--bucket", root, "--json", "show", "good"]) == 0  # options given before the action
    assert json.loads(capsys.readouterr().out)["run"]["run_id"] == "good"
    assert main(["runs", "show", "--help"]) == 0
    assert "RUN_ID" in capsys.readouterr().out
    assert main(["runs", "-b"]) == 2  # not a bucket named "list"
    assert "argument --bucket/-b: expected one argument" in capsys.readouterr().err


def test_compare_shows_how_the_configs_differ(tmp_path, capsys):
    bucket = open_bucket(str(tmp_path))
    for run_id, config in (("a", CONFIG_YAML), ("b", CONFIG_YAML.replace("r: 8", "r: 16").replace(
            "learning_rate: 0.0002", "learning_rate: 0.0005"))):
        bucket.write_text(f"runs/{run_id}/config.yaml", config)
        bucket.write_text(f"runs/{run_id}/manifest.json", json.dumps(manifest(run_id)))
    assert main(["runs", "compare", "a", "b", "--bucket", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "config (fields that differ)" in out
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.startswith(("lora.", "train."))}
    assert rows == {"lora.r": ["8", "16"], "train.learning_rate": ["0.0002", "0.0005"]}
    assert main(["runs", "compare", "a", "b", "--bucket", str(tmp_path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["config"]["differences"] == {"lora.r": {"a": 8, "b": 16},
                                             "train.learning_rate": {"a": 0.0002, "b": 0.0005}}
    assert main(["runs", "compare", "a", "a", "--bucket", str(tmp_path)]) == 0
    assert "config: identical" in capsys.readouterr().out
    bucket.write_text("runs/c/manifest.json", json.dumps(manifest("c")))  # a run without config.yaml
    assert main(["runs", "compare", "a", "c", "--bucket", str(tmp_path)]) == 0
    assert "config: cannot compare (c: no config.yaml)" in capsys.readouterr().out


def test_heartbeat_age_decides_running_or_incomplete(tmp_path):
    bucket = open_bucket(tmp_path)
    bucket.write_text("runs/r/status.json", json.dumps({"status": "running", "updated_at": iso(timedelta(minutes=90))}))
    assert list_runs(bucket, now=NOW)[0].status == "running"
    assert list_runs(bucket, now=NOW + timedelta(hours=1))[0].status == "incomplete"


def test_failed_run_restarted_under_its_id_is_running(tmp_path):
    """A recovered job keeps its old failed manifest until it ends; a newer heartbeat means it runs again."""
    bucket = open_bucket(tmp_path)
    bucket.write_text("runs/r/manifest.json", json.dumps(failed_manifest("r")))  # finished 5h ago
    bucket.write_text("runs/r/status.json", json.dumps({"status": "running", "updated_at": iso(timedelta(minutes=1)),
                                                        "step": 30}))
    (record,) = list_runs(bucket, now=NOW)
    assert record.status == "running" and record.steps == 30
    assert "resumed after failing with: RuntimeError: CUDA out of memory" in record.reason
    assert list_runs(bucket, now=NOW + timedelta(hours=3))[0].status == "failed"  # the restart died too


MANIFEST_CASES = [
    ("[1, 2]", "holds list, not an object"),
    (json.dumps({**manifest("r"), "status": "done"}), "status must be one of succeeded, failed, running, interrupted (got 'done')"),
    (json.dumps({**manifest("r"), "steps": True}), "steps must be an integer or null (got bool True)"),
    (json.dumps({**manifest("r"), "duration_s": "1h"}), "duration_s must be a number or null"),
    (json.dumps({**manifest("r"), "metrics": [1]}), "metrics must be an object"),
    (json.dumps({**manifest("r"), "metrics": {"sts_mean": "high"}}), "metrics.sts_mean must be a number or null"),
    (json.dumps({**manifest("r"), "adapter": None}), "a succeeded run needs adapter"),
    (json.dumps({**manifest("r"), "run_id": None}), "run_id must be a string (got null)"),
]


@pytest.mark.parametrize(("text", "message"), MANIFEST_CASES)
def test_manifest_problems_are_named(text, message):
    with pytest.raises(ManifestError, match="manifest.json") as error:
        Manifest.from_json(text)
    assert message in str(error.value)


def test_valid_manifests_parse():
    assert Manifest.from_json(json.dumps(manifest("r"))).steps == 100
    assert Manifest.from_json(json.dumps(failed_manifest("r"))).status == "failed"


@pytest.mark.parametrize(("seconds", "text"), [(None, "-"), (0.4, "0s"), (42, "42s"), (185, "3m05s"),
                                               (3725, "1h02m"), (183600, "2d03h")])
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text


@pytest.mark.parametrize("run_id", ["good/adapter", "..", "."])
def test_load_run_rejects_paths(tmp_path, run_id):
    populate(str(tmp_path))
    with pytest.raises(CFTError, match="not a valid run id"):
        load_run(open_bucket(tmp_path), run_id)
