"""`cft sweep`: grids, the OVERRIDES env, the launcher against a stand-in `sky` (tests/fake_sky.py) with moto S3,
resuming, cancelling, the table, the one end-of-sweep notification, SkyPilot's parser, and --local for real."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import fake_sky
import pytest
from conftest import REPO, tiny_recipe_yaml
from s3_server import serving

from cft.cli.main import main
from cft.overrides import join_overrides, split_overrides
from cft.storage.bucket import open_bucket
from cft.sweep import record as records
from cft.sweep.announce import member_ended
from cft.sweep.grid import build_spec
from notify.run_identity import validate_run_id
from notify.testing import FakeNtfyServer

TOPIC = "cft-sweep-test"


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


# --------------------------------------------------------------------------
# The grid and the overrides


def test_a_grid_is_one_member_per_combination_named_after_the_sweep(tmp_path):
    sweep_file = tmp_path / "sweep.yaml"
    sweep_file.write_text("config: recipes/qwen2.5-0.5b.yaml\nset: {train.num_epochs: 1}\n"
                          "grid:\n  lora.target_modules: [[q_proj, v_proj], all-linear]\n")
    spec = build_spec("lr-rank", None, [], ["train.learning_rate=1e-5,5e-5,1e-4"], str(sweep_file))
    members = spec.members()
    assert len(members) == 6
    assert [m.run_id for m in members[:3]] == ["lr-rank-00", "lr-rank-01", "lr-rank-02"]
    assert all(validate_run_id(m.run_id) for m in members)
    assert members[0].settings == {"lora.target_modules": "[q_proj, v_proj]", "train.learning_rate": "1e-5"}
    assert spec.sets == ["train.num_epochs=1"]


@pytest.mark.parametrize("argv, message", [
    (["--grid", "train.learning_rate"], "--grid 'train.learning_rate': expected section.key=value1,value2"),
    (["--grid", "train.learning_rate=1e-5", "--name", "Bad Name"], "--name 'Bad Name': a sweep name is"),
    (["--grid", "lora.r=8,8"], "--grid lora.r: a value is listed twice"),
    (["--grid", "lora.rr=8,16"], "member s-00 (rr=8): --set lora.rr=8: unknown key `lora.rr`; did you mean lora.r?"),
    (["--grid", "lora.r=8", "--set", "lora.r=4"], "--set lora.r: also in the grid"),
])
def test_a_bad_grid_is_one_line_before_anything_runs(capsys, argv, message, monkeypatch):
    monkeypatch.chdir(REPO)
    argv = ["sweep", "launch", "-c", "recipes/smollm2-135m.yaml", "--name", "s", "--local", *argv]
    assert main(argv) == 2
    line = one_error_line(capsys)
    assert line.startswith("cft: error: ") and message in line, line


def test_overrides_travel_as_one_env_and_are_checked_on_the_node(tmp_path, tiny_model_dir, triplets_csv):
    pairs = ["train.learning_rate=1e-4", "model.prompt_template=This sentence : \"{}\" means"]
    assert split_overrides(join_overrides(pairs)) == pairs
    recipe = tiny_recipe_yaml(tmp_path / "r.yaml", tiny_model_dir, triplets_csv)
    env = {k: v for k, v in os.environ.items()}

    def node(overrides: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "cft.overrides"], capture_output=True, text=True,
                              env=dict(env, OVERRIDES=overrides, RECIPE=str(recipe)))

    good = node(join_overrides(pairs))
    assert good.returncode == 0 and good.stdout.splitlines() == pairs
    for bad, says in (("train.learning_rate", "--set expects section.key=value"),
                      ("lora.rank=8", "unknown key `lora.rank`"), ("'lora.r=8", "No closing quotation")):
        result = node(bad)
        assert result.returncode == 2 and result.stdout == ""
        assert len(result.stderr.strip().splitlines()) == 1 and says in result.stderr, result.stderr


def test_the_jobs_take_overrides_and_a_sweep_name_by_hand_too():
    """Both are plain envs with empty defaults (tests/test_sky_scripts.py runs what the train script does with them)."""
    from sky_env import job_tasks

    for file_name in ("train.yaml", "pipeline.yaml"):
        train = job_tasks(file_name)[0]
        assert train["envs"]["OVERRIDES"] == "" and train["envs"]["SWEEP"] == ""
    assert all(task["envs"]["SWEEP"] == "" for task in [*job_tasks("eval.yaml"), job_tasks("pipeline.yaml")[1]])


# --------------------------------------------------------------------------
# The launcher, against a stand-in `sky`


@pytest.fixture
def repo(tmp_path, monkeypatch, tiny_model_dir, triplets_csv):
    """A working copy to launch from: jobs/pipeline.yaml and a recipe inside it."""
    root = tmp_path / "repo"
    (root / "jobs").mkdir(parents=True)
    shutil.copy(REPO / "jobs" / "pipeline.yaml", root / "jobs" / "pipeline.yaml")
    tiny_recipe_yaml(root / "recipes" / "tiny.yaml" if (root / "recipes").mkdir() is None else None,
                     tiny_model_dir, triplets_csv, max_steps=6, save_steps=3, logging_steps=2)
    monkeypatch.chdir(root)
    return root


@pytest.fixture
def sky(tmp_path, monkeypatch):
    state = tmp_path / "sky-state"
    path = fake_sky.install(tmp_path / "bin", state)
    monkeypatch.setenv("PATH", f"{path.parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("CFT_SKY", str(path))
    monkeypatch.setenv("FAKE_SKY_STATE", str(state))
    monkeypatch.setenv("CFT_SWEEP_POLL_S", "0.2")
    return state


@pytest.fixture
def ntfy(monkeypatch):
    with FakeNtfyServer() as server:
        monkeypatch.setenv("NTFY_TOPIC", TOPIC)
        monkeypatch.setenv("NTFY_SERVER", server.url)
        yield server


def launches(state: Path) -> list[str]:
    return [call[call.index("-n") + 1] for call in fake_sky.calls(state) if call[:2] == ["jobs", "launch"]]


def job_ids(uri: str) -> list[list[int]]:
    found = records.load(open_bucket(uri), "sw")
    return [m.job_ids for m in found[0].members] if found else []


def wait_until(condition, timeout: float = 60, process: subprocess.Popen | None = None, what: str = "") -> None:
    start = time.monotonic()
    while not condition():
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the launcher exited ({process.returncode}) before {what}: {process.stdout.read()}")
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not within {timeout}s: {what}")
        time.sleep(0.1)


LAUNCH = ["sweep", "launch", "-c", "recipes/tiny.yaml", "--grid", "train.learning_rate=1e-3,5e-3,1e-2",
          "--name", "sw", "--max-parallel", "1"]


def start_launcher(bucket: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "cft", *LAUNCH, "--bucket", bucket], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def test_the_launcher_caps_resumes_relaunches_failures_and_cancels(repo, sky, ntfy, monkeypatch, capsys):
    monkeypatch.setenv("FAKE_SKY_MODE", "manual")
    monkeypatch.setenv("FAKE_SKY_NO_RESOURCE", "sw-00")  # its first job dies before a node runs it
    with serving("cft-sweep") as s3:
        uri = "s3://cft-sweep/cft"
        first = start_launcher(uri)
        wait_until(lambda: job_ids(uri) == [[1], [2], []], process=first, what="two launches recorded")
        time.sleep(0.6)  # a few polls: sw-01 holds the only slot, so sw-02 waits
        assert launches(sky) == ["sw-00", "sw-01"]
        first.send_signal(signal.SIGKILL)  # the laptop closes
        first.wait(10)

        fake_sky.set_statuses(sky, 2, "RUNNING", "PENDING")

        second = start_launcher(uri)  # the same command resumes
        time.sleep(1.0)
        assert launches(sky) == ["sw-00", "sw-01"], "sw-01 runs: nothing may start beside it"
        fake_sky.set_statuses(sky, 2, "SUCCEEDED", "SUCCEEDED")
        wait_until(lambda: job_ids(uri)[0] == [1, 3], process=second, what="sw-00 relaunched")
        fake_sky.set_statuses(sky, 3, "SUCCEEDED", "SUCCEEDED")
        wait_until(lambda: job_ids(uri)[2] == [4], process=second, what="sw-02 launched")
        out, _ = second.communicate(timeout=30)
        assert second.returncode == 0, out
        assert "launched sw-00 (learning_rate=1e-3) again (was failed): managed job 3" in out
        assert "every member is launched or done" in out

        assert launches(sky) == ["sw-00", "sw-01", "sw-00", "sw-02"]
        assert job_ids(uri) == [[1, 3], [2], [4]]
        launch_call = next(c for c in fake_sky.calls(sky) if c[:2] == ["jobs", "launch"] and "sw-02" in c)
        envs = dict(c.split("=", 1) for c in launch_call[launch_call.index("-n") + 3:-1:2])
        assert envs["OVERRIDES"] == "train.learning_rate=1e-2" and envs["SWEEP"] == "sw"
        assert envs["RUN_ID"] == "sw-02" and envs["BUCKET"] == uri and launch_call[-1] == "jobs/pipeline.yaml"

        capsys.readouterr()
        assert main(["sweep", "cancel", "sw", "--bucket", uri]) == 0
        assert "cancelled sw-02: managed job 4 (was starting)" in capsys.readouterr().out
        assert ["jobs", "cancel", "-y", "4"] in fake_sky.calls(sky)

        assert main(["sweep", "status", "sw", "--bucket", uri, "--sort", "test"]) == 0
        out = capsys.readouterr().out
        rows = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith("sw-")}
        assert rows["sw-00"][1:4] == ["1e-3", "succeeded", "3"]
        assert rows["sw-02"][1:4] == ["1e-2", "cancelled", "4"]
        assert "end of sweep: ended; announced" in out
        assert main(["sweep", "status", "sw", "--bucket", uri]) == 0
        assert "end of sweep: ended; already announced" in capsys.readouterr().out
        ended = [n for n in ntfy.published if n.title.startswith("sweep sw ended")]
        assert len(ended) == 1 and "2 succeeded, 1 cancelled" in ended[0].body


def test_members_ending_together_announce_the_sweep_once(tmp_path, ntfy):
    bucket = open_bucket(tmp_path / "runs")
    spec = build_spec("tie", "recipes/smollm2-135m.yaml", [], ["lora.r=4,8,16,32"], None)
    records.create(bucket, records.SweepRecord.new(spec, spec.members(), None))
    barrier = threading.Barrier(4)
    said = []

    def end(run_id: str) -> None:
        barrier.wait()
        said.append(member_ended(bucket, "tie", run_id, "eval", 0))

    threads = [threading.Thread(target=end, args=(f"tie-0{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(ntfy.published) == 1, [n.title for n in ntfy.published]
    assert said.count("ended; announced") == 1


def test_a_dry_run_prints_members_commands_and_the_price_and_launches_nothing(repo, sky, capsys):
    assert main([*LAUNCH, "--bucket", "s3://cft-sweep/cft", "--dry-run", "--secrets", str(REPO / "pyproject.toml")]) == 0
    out = capsys.readouterr().out
    assert "sweep sw: 3 members of recipes/tiny.yaml" in out and "members beyond 1 wait for a free slot" in out
    assert f"{sky.parent / 'bin' / 'sky'} jobs launch -y -d -n sw-01 --env RECIPE=recipes/tiny.yaml" in out
    assert "--env OVERRIDES=train.learning_rate=5e-3 --env SWEEP=sw" in out
    assert "hourly price: unknown (no SkyPilot interpreter next to" in out
    assert fake_sky.calls(sky) == []


@pytest.mark.slow
def test_every_members_job_spec_passes_skypilots_parser(repo, sky, tmp_path):
    import sky_env

    from cft.sweep.launcher import member_envs

    spec = build_spec("sw", "recipes/tiny.yaml", ["train.max_steps=6"], ["train.learning_rate=1e-3,5e-3"], None)
    record = records.SweepRecord.new(spec, spec.members(), None)
    python = sky_env.ensure_sky_venv()
    for member in record.members:
        envs = member_envs(record, member, "s3://cft-sweep/cft", {"TASKS": "sts", "NTFY_TOPIC": TOPIC})
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        env["HOME"] = str(tmp_path)
        done = subprocess.run([str(python), sky_env.__file__, "validate-task", "jobs/pipeline.yaml",
                               *(f"{k}={v}" for k, v in envs.items())], capture_output=True, text=True, env=env)
        line = [x for x in done.stdout.splitlines() if x.startswith(sky_env.RESULT_MARK)]
        assert done.returncode == 0 and line, done.stdout + done.stderr
        train, evaluation = json.loads(line[0][len(sky_env.RESULT_MARK):])["tasks"]
        assert train["envs"]["OVERRIDES"] == envs["OVERRIDES"] and train["envs"]["RUN_ID"] == member.run_id
        assert evaluation["envs"]["SWEEP"] == "sw" and evaluation["envs"]["RUN_ID"] == member.run_id


# --------------------------------------------------------------------------
# --local: the same grid, for real, on this machine


def test_local_runs_a_tiny_grid_for_real(tmp_path, tiny_model_dir, triplets_csv, ntfy, capsys):
    recipe = tiny_recipe_yaml(tmp_path / "tiny.yaml", tiny_model_dir, triplets_csv, max_steps=4, save_steps=4,
                              logging_steps=2)
    root = tmp_path / "runs"
    argv = ["sweep", "launch", "--local", "-c", str(recipe), "--grid", "train.learning_rate=1e-3,1e-2",
            "--name", "loc", "--bucket", str(root), "--tasks", "none"]
    assert main(argv) == 0
    assert "loc-01: train succeeded; ended; announced" in capsys.readouterr().out
    assert main(["sweep", "status", "loc", "--bucket", str(root), "--sort", "loss"]) == 0
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines() if line.startswith("loc-")]
    assert [row[1:5] for row in sorted(rows)] == [["1e-3", "succeeded", "-", "4"], ["1e-2", "succeeded", "-", "4"]]
    losses = [float(row[5]) for row in rows]
    assert losses == sorted(losses)
    manifest = json.loads((root / "runs" / "loc-01" / "manifest.json").read_text())
    assert manifest["status"] == "succeeded" and "learning_rate: 0.01" in (root / "runs" / "loc-01" / "config.yaml").read_text()
    best = min(rows, key=lambda row: float(row[5]))[0]  # no scores without evaluation: the lowest loss wins
    assert [n.title for n in ntfy.published] == [f"sweep loc ended: {best} wins"]
    assert (root / "sweeps" / "loc.png").exists()


@pytest.mark.slow
def test_local_evaluates_each_member_and_ranks_them(tmp_path, tiny_model_dir, triplets_csv, ntfy, capsys):
    from test_sky_node import write_sts_data

    recipe = tiny_recipe_yaml(tmp_path / "tiny.yaml", tiny_model_dir, triplets_csv, max_steps=4, save_steps=4,
                              logging_steps=2)
    data = write_sts_data(tmp_path / "data")
    root = tmp_path / "runs"
    argv = ["sweep", "launch", "--local", "-c", str(recipe), "--grid", "train.learning_rate=1e-3,1e-2",
            "--name", "loc", "--bucket", str(root), "--tasks", "BIOSSES", "--data-dir", str(data)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "loc-01: eval succeeded; ended; announced" in out
    assert main(["sweep", "status", "loc", "--bucket", str(root), "--sort", "test"]) == 0
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines() if line.startswith("loc-")]
    assert {row[0] for row in rows} == {"loc-00", "loc-01"} and all(row[2] == "succeeded" for row in rows)
    assert all(row[4] == "4" for row in rows)  # steps
    scores = [float(row[-1]) for row in rows]
    assert scores == sorted(scores, reverse=True)
    assert (root / "sweeps" / "loc.png").stat().st_size > 1000
    assert len(ntfy.published) == 1 and ntfy.published[0].title.startswith("sweep loc ended: loc-0")
    assert main(argv) == 0  # again: both succeeded, nothing is trained again
    assert capsys.readouterr().out.count("already succeeded; skipped") == 2


# --------------------------------------------------------------------------
# Members on emulated nodes: train then eval through moto S3, as jobs/pipeline.yaml runs them


@pytest.mark.slow
def test_a_sweep_on_emulated_nodes_ends_with_one_notification(repo, sky, ntfy, monkeypatch, tmp_path, capsys):
    from test_sky_node import write_sts_data

    monkeypatch.setenv("FAKE_SKY_MODE", "node")
    monkeypatch.setenv("FAKE_SKY_NO_RESOURCE", "nd-00")  # its first job dies before a node runs it
    secrets = tmp_path / "secrets.env"
    secrets.write_text("AWS_ACCESS_KEY_ID=testing\nAWS_SECRET_ACCESS_KEY=testing\nHF_TOKEN=\nNTFY_TOKEN=\n")
    data = write_sts_data(tmp_path / "data")
    with serving("cft-sweep") as s3:
        monkeypatch.setenv("FAKE_SKY_NODE_ENV", json.dumps({"AWS_DEFAULT_REGION": "us-east-1"}))
        uri = "s3://cft-sweep/cft"
        argv = [sys.executable, "-m", "cft", "sweep", "launch", "-c", "recipes/tiny.yaml", "--grid",
                "train.learning_rate=1e-3,1e-2", "--name", "nd", "--max-parallel", "1", "--bucket", uri,
                "--secrets", str(secrets), "--tasks", "BIOSSES", "--data-dir", str(data)]
        first = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        assert first.returncode == 0, first.stdout + first.stderr  # nd-00 failed at once, nd-01 took the slot
        assert "launched nd-01 (learning_rate=1e-2): managed job 2" in first.stdout

        second = subprocess.run(argv, capture_output=True, text=True, timeout=600)  # resumes: waits for nd-01, relaunches nd-00
        assert second.returncode == 0, second.stdout + second.stderr
        assert "launched nd-00 (learning_rate=1e-3) again (was failed): managed job 3" in second.stdout
        wait_until(lambda: fake_sky.jobs(sky)["3"]["statuses"][-1] in ("SUCCEEDED", "FAILED"), timeout=300,
                   what="nd-00's second job to end")
        assert fake_sky.jobs(sky)["3"]["statuses"] == ["SUCCEEDED", "SUCCEEDED"], (sky / "job-3.log").read_text()

        assert [n.title for n in ntfy.published] == ["sweep nd ended: " + ntfy.published[0].title.split(": ", 1)[1]]
        assert "2 members: 2 succeeded" in ntfy.published[0].body  # the members' own successes stayed quiet
        assert main(["sweep", "status", "nd", "--bucket", uri]) == 0
        out = capsys.readouterr().out
        rows = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith("nd-")}
        assert rows["nd-00"][2:5] == ["succeeded", "3", "6"] and rows["nd-01"][2:5] == ["succeeded", "2", "6"]
        assert all(row[-1] != "-" for row in rows.values())  # a test score each
        assert "end of sweep: ended; already announced" in out
        assert len(ntfy.published) == 1
        config = open_bucket(uri).read_text("runs/nd-00/config.yaml")
        assert "learning_rate: 0.001" in config  # the member's OVERRIDES reached cft train on the node
        launched = [c for c in fake_sky.calls(sky) if c[:2] == ["jobs", "launch"]]
        assert all(c[c.index("--secret-file") + 1] == str(secrets) for c in launched)
        assert "testing" not in json.dumps(launched)  # secrets travel in their file, never on a command line


def test_cft_sweep_stays_light():
    """`cft sweep ...` runs on a laptop with only SkyPilot's and cft's light parts: no torch at import time."""
    code = ("import sys, contextlib, io\nfrom cft.cli.main import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    for argv in (['sweep', 'launch', '--help'], ['sweep', 'status', '--help']):\n        main(argv)\n"
            "import cft.sweep.launcher, cft.sweep.status, cft.sweep.announce, cft.sweep.plan, cft.sweep.local\n"
            "print(sorted(m for m in ('torch', 'transformers', 'mteb', 'peft', 'matplotlib') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stdout + done.stderr


def test_the_table_shows_dev_and_test_scores_and_a_dash_for_what_a_run_lacks(tmp_path, capsys):
    root = tmp_path / "runs"
    bucket = open_bucket(root)
    spec = build_spec("dv", "recipes/smollm2-135m.yaml", [], ["train.learning_rate=1e-4,5e-4,1e-3"], None)
    records.create(bucket, records.SweepRecord.new(spec, spec.members(), None))
    fixture = json.loads((REPO / "tests" / "fixtures" / "first_build" / "manifest.json").read_text())
    for run_id, metrics in (("dv-00", {"dev_score": 71.5, "best_dev_score": 73.25, "best_step": 80}),
                            ("dv-01", {"dev_score": 80.0, "best_dev_score": 81.0, "best_step": 100})):
        manifest = dict(fixture, run_id=run_id, metrics={**fixture["metrics"], **metrics},
                        adapter=f"{root}/runs/{run_id}/adapter")
        if run_id == "dv-01":
            manifest["metrics"].pop("sts_mean")
            manifest["metrics"].pop("STS12")
            manifest["metrics"].pop("STSBenchmark")
        (root / "runs" / run_id).mkdir(parents=True)
        (root / "runs" / run_id / "manifest.json").write_text(json.dumps(manifest))
        records.mark_ended(bucket, "dv", run_id, "eval", 0)
    assert main(["sweep", "status", "dv", "--bucket", str(root), "--sort", "best_dev"]) == 0
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines() if line.startswith("dv-")]
    assert rows[0] == ["dv-01", "5e-4", "succeeded", "-", "100", "0.5200", "80.00", "81.00", "-"]
    assert rows[1] == ["dv-00", "1e-4", "succeeded", "-", "100", "0.5200", "71.50", "73.25", "78.50"]
    assert rows[2] == ["dv-02", "1e-3", "pending", "-", "-", "-", "-", "-", "-"]
    assert "best by test: dv-00 (learning_rate=1e-4) 78.50" in out and "sweep dv (in progress)" in out
    assert (root / "sweeps" / "dv.png").exists()


@pytest.mark.slow
def test_a_dry_run_prices_a_member_from_skypilots_local_catalog(repo, tmp_path, monkeypatch, capsys):
    import sky_env

    sky = sky_env.ensure_sky_venv().parent / "sky"
    monkeypatch.setenv("CFT_SKY", str(sky))
    monkeypatch.setenv("HOME", str(tmp_path))  # SkyPilot reads ~/.sky/catalogs; this one is fresh, so offline
    catalog = tmp_path / ".sky" / "catalogs" / "v8" / "lambda" / "vms.csv"
    catalog.parent.mkdir(parents=True)
    catalog.write_text("InstanceType,AcceleratorName,AcceleratorCount,vCPUs,MemoryGiB,Price,Region,GpuInfo,SpotPrice\n"
                       "gpu_8x_h100_sxm5,H100,8.0,208.0,1800.0,23.92,us-east-1,,\n"
                       "gpu_1x_h100_pcie,H100,1.0,26.0,200.0,2.49,us-east-1,,\n")
    argv = ["sweep", "launch", "-c", "recipes/tiny.yaml", "--grid", "train.learning_rate=1e-3,5e-3,1e-2", "--name",
            "sw", "--max-parallel", "2", "--bucket", "s3://cft-sweep/cft", "--dry-run"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "hourly price, train task: $23.92/h on lambda H100:8 (SkyPilot's catalog; the first of 3" in out
    assert "hourly price, eval task: $2.49/h on lambda H100:1" in out
    assert "at most 2 training member(s) at once: up to $47.84/h" in out


def test_a_failed_task_ends_its_member_only_after_skypilots_restarts(tmp_path, ntfy):
    from sky_env import job_tasks

    for task in job_tasks("pipeline.yaml"):
        assert task["resources"]["job_recovery"]["max_restarts_on_errors"] == records.RESTARTS_ON_ERRORS
    bucket = open_bucket(tmp_path / "runs")
    spec = build_spec("rs", "recipes/smollm2-135m.yaml", [], ["lora.r=4,8"], None)
    records.create(bucket, records.SweepRecord.new(spec, spec.members(), None))
    assert member_ended(bucket, "rs", "rs-00", "eval", 0) == "not ended"
    assert member_ended(bucket, "rs", "rs-01", "train", 143).startswith("train was interrupted")  # preempted
    for attempt in range(1, records.RESTARTS_ON_ERRORS + 1):
        assert member_ended(bucket, "rs", "rs-01", "train", 1).startswith(f"train failed ({attempt} time(s))")
        from cft.sweep.status import sweep_status

        record, _ = records.require(bucket, "rs")
        assert [s.state for s in sweep_status(bucket, record, None)] == ["succeeded", "restarting"]
    assert member_ended(bucket, "rs", "rs-01", "train", 1) == "ended; announced"  # the last restart failed too
    assert len(ntfy.published) == 1 and "1 succeeded, 1 failed" in ntfy.published[0].body
