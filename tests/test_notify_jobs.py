"""Jobs that outlive their terminal, and the list of what runs: `notify run --detach`, `notify ls`, `notify logs`.

Real processes throughout: a shell on a real pseudo-terminal that is hung up, tmux when it is installed, a
loopback ntfy server that counts what reaches the phone.
"""

import fcntl
import json
import os
import pty
import shutil
import signal
import subprocess
import sys
import tempfile
import termios
import time
from pathlib import Path

import pytest

from notify.testing import FakeNtfyServer

REPO = Path(__file__).resolve().parents[1]
TMUX = shutil.which("tmux")
needs_tmux = pytest.mark.skipif(TMUX is None, reason="tmux is not installed (.ci/run installs it where it can)")


@pytest.fixture
def server():
    with FakeNtfyServer() as s:
        yield s


@pytest.fixture
def tmux_dir():
    """A private tmux server for the test (its socket path must stay short), ended afterwards."""
    folder = tempfile.mkdtemp(prefix="tmx", dir="/tmp")
    yield folder
    if TMUX:
        subprocess.run([TMUX, "kill-server"], env={**os.environ, "TMUX_TMPDIR": folder}, capture_output=True)
    shutil.rmtree(folder, ignore_errors=True)


def _env(tmp_path: Path, server_url: str | None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("NTFY_", "SKYPILOT_", "AWS_", "TMUX", "APPRISE_")) and k not in ("RUN_ID", "BUCKET")}
    env.update(PYTHONPATH=str(REPO), NTFY_DEADLINE="2", NOTIFY_STATE_DIR=str(tmp_path / "state"))
    if server_url:
        env.update(NTFY_TOPIC="cft-test", NTFY_SERVER=server_url)
    env.update(extra)
    return env


def _notify(env: dict[str, str], cwd: Path, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "notify", *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


def _records(env: dict[str, str], cwd: Path) -> dict[str, dict]:
    done = _notify(env, cwd, "ls", "--json")
    assert done.returncode == 0, done.stderr
    return {r["name"]: r for r in json.loads(done.stdout)}


def _wait(predicate, timeout: float = 20.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _path_without_tmux(tmp_path: Path) -> str:
    """A PATH with the job's tools and no tmux: the machine as it is without tmux installed."""
    folder = tmp_path / "bin"
    folder.mkdir()
    for tool in ("bash", "sleep", "echo"):
        (folder / tool).symlink_to(shutil.which(tool))
    return str(folder)


def _terminal_shell(command: str, env: dict[str, str], cwd: Path) -> tuple[subprocess.Popen, int]:
    """`bash -c COMMAND` as an SSH login runs it: session leader, with a pseudo-terminal as controlling terminal."""
    master, slave = pty.openpty()

    def login_like() -> None:
        signal.signal(signal.SIGHUP, signal.SIG_DFL)  # pytest may run under nohup: a login shell does not ignore HUP
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    shell = subprocess.Popen(
        ["bash", "-c", command], stdin=slave, stdout=slave, stderr=slave, env=env, cwd=cwd,
        start_new_session=True, preexec_fn=login_like,
    )
    os.close(slave)
    return shell, master


def _read_until(master: int, marker: bytes, timeout: float = 30.0) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout
    while marker not in seen and time.monotonic() < deadline:
        try:
            seen += os.read(master, 4096)
        except OSError:
            break
    return seen


@pytest.mark.parametrize("with_tmux", [pytest.param(True, marks=needs_tmux), False], ids=["tmux", "no-tmux"])
def test_detached_job_survives_the_hang_up_of_its_shell_and_notifies_once(tmp_path, server, tmux_dir, with_tmux):
    env = _env(tmp_path, server.url, TMUX_TMPDIR=tmux_dir)
    if not with_tmux:
        env["PATH"] = _path_without_tmux(tmp_path)
    job = "echo begin; sleep 2; echo end"
    launcher = f"{sys.executable} -m notify run --detach --name survivor -- bash -c '{job}'; sleep 60"
    shell, master = _terminal_shell(launcher, env, tmp_path)
    said = _read_until(master, b"follow:").decode(errors="replace")
    assert "follow:" in said, said
    assert ("tmux attach -t survivor" in said) == with_tmux, said
    assert _records(env, tmp_path)["survivor"]["state"] == "running"

    os.close(master)  # the SSH connection drops: the kernel hangs up the terminal's session
    try:
        os.killpg(shell.pid, signal.SIGHUP)  # and the shell's process group gets SIGHUP as well
    except ProcessLookupError:
        pass
    assert shell.wait(timeout=10) != 0  # the launching shell died of the hang-up ...

    record = _wait(lambda: (r := _records(env, tmp_path)["survivor"])["state"] != "running" and r, what="the job")
    assert record["state"] == "succeeded" and record["exit_code"] == 0  # ... the job ran to its end
    assert Path(record["log"]).read_text() == "begin\nend\n"
    assert record["tmux"] == ("survivor" if with_tmux else None)
    _wait(lambda: server.published, what="the notification")
    time.sleep(0.5)
    [note] = server.published
    assert note.title == "survivor succeeded"


def test_attached_run_keeps_going_when_its_terminal_hangs_up(tmp_path, server):
    """No --detach: the wrapper is in the terminal's foreground group and gets the hang-up; by default it keeps CMD."""
    env = _env(tmp_path, server.url)
    launcher = f"{sys.executable} -m notify run --name attached -- bash -c 'echo begin; sleep 2; echo end'; exit 0"
    shell, master = _terminal_shell(launcher, env, tmp_path)
    assert b"begin" in _read_until(master, b"begin")
    os.close(master)
    try:
        os.killpg(shell.pid, signal.SIGHUP)
    except ProcessLookupError:
        pass
    assert shell.wait(timeout=10) != 0
    record = _wait(lambda: (r := _records(env, tmp_path)["attached"])["state"] != "running" and r, what="the job")
    assert record["state"] == "succeeded" and Path(record["log"]).read_text() == "begin\nend\n"
    _wait(lambda: server.published, what="the notification")
    time.sleep(0.5)
    assert [p.title for p in server.published] == ["attached succeeded"]


def test_ls_shows_running_succeeded_failed_and_interrupted(tmp_path, server):
    env = _env(tmp_path, server.url)
    assert _notify(env, tmp_path, "run", "--name", "good", "--", "bash", "-c", "exit 0").returncode == 0
    assert _notify(env, tmp_path, "run", "--name", "bad", "--", "bash", "-c", "exit 3").returncode == 3
    started = _notify(env, tmp_path, "run", "--detach", "--no-tmux", "--name", "long", "--", "sleep", "60")
    assert started.returncode == 0, started.stderr
    records = _records(env, tmp_path)
    assert {name: r["state"] for name, r in records.items()} == {"good": "succeeded", "bad": "failed",
                                                                "long": "running"}
    assert records["bad"]["exit_code"] == 3
    table = _notify(env, tmp_path, "ls").stdout.splitlines()
    assert table[0].split() == ["NAME", "STATE", "STARTED", "DURATION", "LOG"]
    assert [line.split()[:2] for line in table[1:]] == [["good", "succeeded"], ["bad", "failed"], ["long", "running"]]
    assert all(line.endswith(".log") for line in table[1:])

    os.kill(records["long"]["pid"], signal.SIGTERM)  # `kill PID`, as the launcher's hint says
    _wait(lambda: _records(env, tmp_path)["long"]["state"] == "interrupted", what="the interrupted state")
    _wait(lambda: len(server.published) == 3, what="three notifications")
    assert server.published[-1].title == "long interrupted by SIGTERM"


def test_logs_follows_a_detached_job_to_its_end(tmp_path, server):
    env = _env(tmp_path, server.url)
    job = "for i in 1 2 3 4 5; do echo line$i; sleep 0.3; done"
    assert _notify(env, tmp_path, "run", "--detach", "--no-tmux", "--name", "chatty", "--", "bash", "-c",
                   job).returncode == 0
    followed = _notify(env, tmp_path, "logs", "chatty", "-f")
    assert followed.returncode == 0, followed.stderr
    assert followed.stdout == "".join(f"line{i}\n" for i in range(1, 6))
    assert _records(env, tmp_path)["chatty"]["state"] == "succeeded"
    missing = _notify(env, tmp_path, "logs", "nope")
    assert missing.returncode == 2 and missing.stderr.startswith("notify: error: logs: no job called 'nope'")


@needs_tmux
def test_tmux_job_can_be_watched_and_killing_its_session_stops_it(tmp_path, server, tmux_dir):
    env = _env(tmp_path, server.url, TMUX_TMPDIR=tmux_dir)
    started = _notify(env, tmp_path, "run", "--detach", "--name", "watched", "--", "bash", "-c",
                      "echo visible; sleep 60")
    assert started.returncode == 0, started.stderr
    pane = _wait(lambda: "visible" in (out := subprocess.run(
        [TMUX, "capture-pane", "-p", "-t", "watched"], env=env, capture_output=True, text=True).stdout) and out,
        what="the output in the tmux pane")
    assert "visible" in pane
    again = _notify(env, tmp_path, "run", "--detach", "--name", "watched", "--", "true")
    assert again.returncode == 2 and "a tmux session of that name exists" in again.stderr
    subprocess.run([TMUX, "kill-session", "-t", "watched"], env=env, check=True)
    _wait(lambda: _records(env, tmp_path)["watched"]["state"] == "interrupted", what="the interrupted state")
    _wait(lambda: server.published, what="the notification")
    assert server.published[-1].title == "watched interrupted by SIGHUP"


def test_cft_notify_is_the_same_command(tmp_path, server, monkeypatch, capsys):
    from cft.cli.main import main

    for name, value in _env(tmp_path, server.url).items():
        monkeypatch.setenv(name, value)
    assert main(["notify", "send", "from cft", "--title", "t"]) == 0
    assert [(p.title, p.body) for p in server.published] == [("t", "from cft")]
    assert main(["notify", "ls"]) == 0
    assert "no wrapped jobs recorded" in capsys.readouterr().out


def test_a_state_dir_that_cannot_be_written_never_changes_the_run(tmp_path, server):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    env = _env(tmp_path, server.url, NOTIFY_STATE_DIR=str(blocker))
    done = _notify(env, tmp_path, "run", "--name", "anyway", "--", "bash", "-c", "echo ok; exit 4")
    assert done.returncode == 4
    said = [line for line in done.stderr.splitlines() if "job record" in line]
    assert len(said) == 1 and said[0].startswith(f"notify: job record not written to {blocker}")
    assert [p.title for p in server.published] == ["anyway failed: exit code 4"]
    detached = _notify(env, tmp_path, "run", "--detach", "--no-tmux", "--", "true")
    assert detached.returncode == 2 and detached.stderr.startswith("notify: error: run --detach:")
