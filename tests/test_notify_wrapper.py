"""The run wrapper end to end: a real child process, a loopback ntfy server, a local-folder bucket."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from notify.testing import FakeNtfyServer

REPO = Path(__file__).resolve().parents[1]
DEADLINE = 1.5
SECRETS = {"NTFY_TOKEN": "tk_notify_0123", "HF_TOKEN": "hf_leakme_4567", "AWS_SECRET_ACCESS_KEY": "aws/Secret+89"}


@pytest.fixture
def server():
    with FakeNtfyServer() as s:
        yield s


def _base_env(server_url: str | None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("NTFY_", "SKYPILOT_", "AWS_")) and k not in ("RUN_ID", "BUCKET")}
    env.update(PYTHONPATH=str(REPO), NTFY_DEADLINE=str(DEADLINE))
    if server_url:
        env.update(NTFY_TOPIC="cft-test", NTFY_SERVER=server_url)
    env.update(extra)
    return env


def _wrap(tmp_path: Path, env: dict[str, str], command: list[str], *flags: str, timeout: float = 30):
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "notify", "run", "--log-dir", str(tmp_path / "logs"), *flags, "--", *command],
        env=env, cwd=tmp_path, capture_output=True, timeout=timeout,
    )
    return done, time.monotonic() - started


def _log(tmp_path: Path) -> Path:
    [log] = (tmp_path / "logs").glob("*.log")
    return log


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


KILL_SELF = "import os, signal; print('bye', flush=True); os.kill(os.getpid(), signal.SIG{})"


@pytest.mark.parametrize(
    ("command", "code", "title"),
    [
        (["bash", "-c", "echo fine"], 0, "bash succeeded"),
        (["bash", "-c", "echo broken >&2; exit 1"], 1, "bash failed: exit code 1"),
        ([sys.executable, "-c", KILL_SELF.format("KILL")], 137, "failed: exit code 137 (SIGKILL)"),
        ([sys.executable, "-c", KILL_SELF.format("TERM")], 143, "failed: exit code 143 (SIGTERM)"),
    ],
)
def test_exit_code_is_the_commands(tmp_path, server, command, code, title):
    done, _ = _wrap(tmp_path, _base_env(server.url), command)
    assert done.returncode == code, done.stderr
    [p] = server.published
    assert title in p.title
    if code:
        assert p.priority == "4" and p.tags == ["x"]
        assert "Last " in p.body and (b"broken" in _log(tmp_path).read_bytes()) == ("broken" in p.body)


def test_log_holds_stdout_and_stderr_in_order(tmp_path, server):
    script = "for i in $(seq 1 40); do echo out$i; echo err$i >&2; done; printf 'no newline'"
    done, _ = _wrap(tmp_path, _base_env(server.url), ["bash", "-c", script], "--name", "order")
    expected = "".join(f"out{i}\nerr{i}\n" for i in range(1, 41)) + "no newline"
    log = _log(tmp_path)
    assert log.name.startswith("order-") and len(log.stem) == len("order-YYYYmmdd-HHMMSS")
    assert log.read_text() == expected
    assert done.stdout.decode() == expected  # the terminal saw the same stream


def test_python_child_output_keeps_its_order(tmp_path, server):
    # Behind a pipe Python block-buffers stdout; the wrapper sets PYTHONUNBUFFERED so the log stays in order.
    code = "import sys\nfor i in range(20):\n    print('out', i)\n    print('err', i, file=sys.stderr)"
    _wrap(tmp_path, _base_env(server.url), [sys.executable, "-c", code])
    expected = "".join(f"out {i}\nerr {i}\n" for i in range(20))
    assert _log(tmp_path).read_text() == expected


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_reaches_the_command_and_reports_interrupted(tmp_path, server, signum):
    marker, ready = tmp_path / "got-signal", tmp_path / "ready"
    script = (f"trap 'echo trapped > {marker}; exit {128 + signum}' {signum.name[3:]}; "
              f"echo working; touch {ready}; while :; do sleep 0.05; done")
    wrapper = subprocess.Popen(
        [sys.executable, "-m", "notify", "run", "--log-dir", str(tmp_path / "logs"), "--", "bash", "-c", script],
        env=_base_env(server.url), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 15
    while not ready.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ready.exists(), "the command never started"
    wrapper.send_signal(signum)  # to the wrapper only, as a preempted node's init would
    _, err = wrapper.communicate(timeout=20)
    assert wrapper.returncode == 128 + signum, err
    assert marker.read_text().strip() == "trapped"
    [p] = server.published
    assert p.title == f"bash interrupted by {signum.name}"
    assert p.priority == "4" and "working" in p.body


@pytest.mark.parametrize("mode", ["closed", "500", "hang"])
def test_broken_server_never_changes_the_exit_code_or_holds_the_job(tmp_path, mode):
    if mode == "closed":
        done, wall = _wrap(tmp_path, _base_env(_closed_port_url()), ["bash", "-c", "echo x; exit 4"],
                           "--notify-start")
    else:
        with FakeNtfyServer(status=500, hang=mode == "hang") as bad:
            done, wall = _wrap(tmp_path, _base_env(bad.url), ["bash", "-c", "echo x; exit 4"], "--notify-start")
            assert len(bad.published) >= 2  # it did try: start and end
    assert done.returncode == 4
    # start runs beside the job (joined for <= 1 s), the end notification has DEADLINE s; the rest is slack for
    # interpreter start-up on a loaded machine
    assert wall < DEADLINE + 1.0 + 3.0, wall
    errors = [line for line in done.stderr.decode().splitlines() if "notification not sent" in line]
    assert 1 <= len(errors) <= 2 and all("cft-test" not in e for e in errors)


def test_secrets_never_reach_the_log_or_the_phone(tmp_path, server):
    env = _base_env(server.url, **SECRETS)
    script = 'echo "hf=$HF_TOKEN"; echo "aws=$AWS_SECRET_ACCESS_KEY ntfy=$NTFY_TOKEN" >&2; exit 2'
    done, _ = _wrap(tmp_path, env, ["bash", "-c", script], "--notify-start")
    assert done.returncode == 2
    written = [_log(tmp_path).read_text(), done.stdout.decode(), done.stderr.decode()]
    written += [f"{p.title}\n{p.body}\n{p.tags}" for p in server.published]
    for secret in SECRETS.values():
        assert all(secret not in text for text in written)
    assert "hf=***" in server.published[-1].body
    assert all(p.authorization == f"Bearer {SECRETS['NTFY_TOKEN']}" for p in server.published)


def test_success_reports_manifest_metrics_and_uploads_the_log(tmp_path, server):
    bucket = tmp_path / "bucket"
    # The command finds RUN_ID and BUCKET in its environment, as `cft train` does.
    write_manifest = (
        "import json, os, pathlib\n"
        "prefix = pathlib.Path(os.environ['BUCKET']) / 'runs' / os.environ['RUN_ID']\n"
        "prefix.mkdir(parents=True)\n"
        "manifest = {'run_id': os.environ['RUN_ID'], 'status': 'succeeded', 'duration_s': 12.5,\n"
        "            'model': 'm', 'recipe': 'r.yaml', 'started_at': None, 'finished_at': None, 'steps': 3,\n"
        "            'metrics': {'train_loss': 0.41234, 'sts_mean': 83.9, 'STSBenchmark': 85.12},\n"
        "            'adapter': str(prefix / 'adapter')}\n"
        "(prefix / 'manifest.json').write_text(json.dumps(manifest))\n"
        "print('trained')\n"
    )
    cluster = json.dumps({"cluster_name": "cft-a100", "cloud": "AWS", "region": "us-east-1"})
    env = _base_env(server.url, SKYPILOT_CLUSTER_INFO=cluster)
    done, _ = _wrap(tmp_path, env, [sys.executable, "-c", write_manifest], "--name", "train",
                    "--bucket", str(bucket), "--run-id", "run-1", "--notify-start")
    assert done.returncode == 0, done.stderr
    start, end = server.published
    assert start.title == "train started" and end.title == "train succeeded"
    assert "- sts_mean: **83.9**" in end.body and "- train_loss: **0.4123**" in end.body
    assert f"- adapter: `{bucket}/runs/run-1/adapter`" in end.body
    assert "`cft-a100 (AWS, us-east-1)`" in end.body
    [uploaded] = (bucket / "runs" / "run-1" / "logs").glob("train-*.log")
    assert uploaded.read_text() == "trained\n" == _log(tmp_path).read_text()
    assert f"- log: `{uploaded}`" in end.body


def test_without_topic_it_still_runs_logs_and_exits_with_the_code(tmp_path):
    done, _ = _wrap(tmp_path, _base_env(None), ["bash", "-c", "echo hello; exit 5"])
    assert done.returncode == 5
    assert _log(tmp_path).read_text() == "hello\n"
    disabled = [line for line in done.stderr.decode().splitlines() if "disabled" in line]
    assert disabled == ["notify: NTFY_TOPIC is not set; notifications are disabled"]


def test_missing_command_exits_127_and_reports(tmp_path, server):
    done, _ = _wrap(tmp_path, _base_env(server.url), ["no-such-command-xyz"])
    assert done.returncode == 127
    [p] = server.published
    assert "failed: exit code 127" in p.title and "no-such-command-xyz" in p.body


def test_secret_printed_in_pieces_with_a_pause_is_masked(tmp_path, server):
    """The wrapper shows partial lines when the child goes quiet; a secret split across that pause stays masked."""
    env = _base_env(server.url, BUCKET=str(tmp_path / "bucket"), RUN_ID="split", **SECRETS)
    token = SECRETS["HF_TOKEN"]
    script = ("import os, sys, time; t = os.environ['HF_TOKEN']; w = sys.stdout.write; w('token=' + t[:5]); "
              "sys.stdout.flush(); time.sleep(0.8); w(t[5:] + ' done\\n'); sys.stdout.flush(); sys.exit(3)")
    done, _ = _wrap(tmp_path, env, [sys.executable, "-c", script])
    assert done.returncode == 3
    [uploaded] = (tmp_path / "bucket" / "runs" / "split" / "logs").glob("*.log")
    written = [_log(tmp_path).read_text(), uploaded.read_text(), done.stdout.decode()]
    written += [p.body for p in server.published]
    for text in written:
        assert token not in text and token[:5] not in text and token[5:] not in text, text
    assert "token=*** done" in _log(tmp_path).read_text()


def test_a_storage_error_is_one_line_on_stderr(tmp_path):
    """botocore lists its regexes over several lines; the wrapper says it in one, and keeps the exit code."""
    done, _ = _wrap(tmp_path, _base_env(None), ["bash", "-c", "exit 4"], "--bucket", "s3://Bad_Bucket!!/x")
    assert done.returncode == 4
    lines = done.stderr.decode().splitlines()
    [upload] = [line for line in lines if "log upload" in line]
    assert "Bad_Bucket!!" in upload and all(line.startswith("notify: ") for line in lines), lines


def test_within_a_sweep_only_failures_notify(tmp_path, server):
    """NOTIFY_QUIET_SUCCESS=1 (set by the job YAMLs for a sweep member): the sweep tells successes once, at its end."""
    env = _base_env(server.url, NOTIFY_QUIET_SUCCESS="1")
    for name in ("ok", "bad"):
        (tmp_path / name).mkdir()
    done, _ = _wrap(tmp_path / "ok", env, ["bash", "-c", "echo fine"])
    assert done.returncode == 0 and server.published == []
    done, _ = _wrap(tmp_path / "bad", env, ["bash", "-c", "echo broken >&2; exit 3"])
    assert done.returncode == 3
    [note] = server.published
    assert "bash failed: exit code 3" in note.title and "broken" in note.body


def _start_wrapper(tmp_path: Path, env: dict[str, str], script: str, *flags: str) -> subprocess.Popen:
    """The wrapper around `bash -c SCRIPT`, returned once SCRIPT has touched tmp_path/ready."""
    wrapper = subprocess.Popen(
        [sys.executable, "-m", "notify", "run", "--log-dir", str(tmp_path / "logs"), *flags, "--", "bash", "-c",
         script],
        env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 15
    while not (tmp_path / "ready").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (tmp_path / "ready").exists(), "the command never started"
    return wrapper


@pytest.mark.parametrize(("flags", "code", "title"), [
    ((), 0, "bash succeeded"),  # the default: a dropped SSH connection must not end the training run
    (("--on-hangup", "keep"), 0, "bash succeeded"),
    (("--on-hangup", "stop"), 128 + signal.SIGHUP, "bash interrupted by SIGHUP"),
])
def test_a_hang_up_keeps_the_command_unless_asked_to_stop(tmp_path, server, flags, code, title):
    script = f"echo start; touch {tmp_path / 'ready'}; sleep 1; echo end"
    wrapper = _start_wrapper(tmp_path, _base_env(server.url), script, *flags)
    wrapper.send_signal(signal.SIGHUP)  # what the terminal's hang-up sends the wrapper (CMD has its own session)
    _, err = wrapper.communicate(timeout=20)
    assert wrapper.returncode == code, err
    assert ("end" in _log(tmp_path).read_text()) == (code == 0)
    [p] = server.published
    assert p.title == title


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except OSError:
        return True
    return state == "Z"  # a zombie waiting for init to reap it has ended


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
@pytest.mark.parametrize("script", [
    "echo $$ > {pid}; touch {ready}; exec sleep 60",  # CMD itself
    "sleep 60 & echo $! > {pid}; touch {ready}; wait",  # a shell's child: the signal must reach the whole group
], ids=["command", "shell-child"])
def test_sigkill_of_the_wrapper_takes_its_command_with_it(tmp_path, script):
    env = _base_env(None, NOTIFY_STATE_DIR=str(tmp_path / "state"))
    pid_file = tmp_path / "pid"
    wrapper = _start_wrapper(tmp_path, env, script.format(pid=pid_file, ready=tmp_path / "ready"))
    child = int(pid_file.read_text())
    wrapper.kill()  # SIGKILL: the wrapper can do nothing about it
    wrapper.wait(timeout=10)
    deadline = time.monotonic() + 10
    while not _gone(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    if not _gone(child):
        os.kill(child, signal.SIGKILL)
        pytest.fail("the command outlived its wrapper")
    listed = subprocess.run([sys.executable, "-m", "notify", "ls", "--json"], env=env, capture_output=True, text=True,
                            timeout=30)
    [record] = json.loads(listed.stdout)
    assert record["state"] == "interrupted"  # nobody was left to write its end
