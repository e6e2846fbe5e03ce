"""The ntfy client against a loopback server: headers, auth, redaction, retries, and the deadline."""

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from notify.client import NtfyClient, parse_priority
from notify.notifier import notify
from notify.testing import FakeNtfyServer

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def server():
    with FakeNtfyServer() as s:
        yield s


def _env(server_url: str, **extra: str) -> dict[str, str]:
    return {"NTFY_TOPIC": "cft-test", "NTFY_SERVER": server_url, **extra}


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_publish_sends_ntfy_headers_and_token(server):
    env = _env(server.url, NTFY_TOKEN="tk_0123456789")
    ok = notify("**done**: STS 83.9", title="cft train", priority="high", tags=["tada", "cft"],
                click="https://example.com/run", env=env)
    assert ok
    [p] = server.published
    assert (p.method, p.topic) == ("POST", "cft-test")
    assert p.title == "cft train"
    assert p.priority == "4"
    assert p.tags == ["tada", "cft"]
    assert p.click == "https://example.com/run"
    assert p.markdown == "yes"
    assert p.authorization == "Bearer tk_0123456789"
    assert p.body == "**done**: STS 83.9"


def test_basic_auth_and_unicode_title(server):
    env = _env(server.url, NTFY_USER="phil", NTFY_PASSWORD="s3cret-pw")
    assert notify("body", title="✅ eval — 83.9", priority=5, tags="a, b", env=env)
    [p] = server.published
    assert p.authorization == "Basic cGhpbDpzM2NyZXQtcHc="  # base64("phil:s3cret-pw")
    assert p.title == "✅ eval — 83.9"
    assert p.priority == "5"
    assert p.tags == ["a", "b"]


def test_topic_may_be_a_full_url(server):
    assert notify("hi", env={"NTFY_TOPIC": f"{server.url}/other-topic"})
    assert server.published[0].topic == "other-topic"


def test_secrets_are_redacted_from_all_text(server):
    env = _env(server.url, NTFY_TOKEN="tk_0123456789", HF_TOKEN="hf_ABCDEFGH")
    notify("token hf_ABCDEFGH and tk_0123456789", title="leak hf_ABCDEFGH", tags=["hf_ABCDEFGH"], env=env)
    [p] = server.published
    assert p.body == "token *** and ***"
    assert p.title == "leak ***"
    assert p.tags == ["***"]
    assert p.authorization == "Bearer tk_0123456789"  # used, never shown


def test_long_messages_are_truncated(server):
    assert notify("x" * 10_000, env=_env(server.url))
    assert len(server.published[0].body.encode()) <= 4000


def test_no_topic_disables_with_one_line(capsys, server):
    client = NtfyClient.from_env({"NTFY_SERVER": server.url})
    assert not client.publish("a") and not client.publish("b")
    assert server.published == []
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["notify: NTFY_TOPIC is not set; notifications are disabled"]


@pytest.mark.parametrize(
    ("value", "level"), [("min", 1), ("low", 2), ("default", 3), ("HIGH", 4), ("urgent", 5), ("max", 5), (2, 2),
                         ("3", 3), (None, None)]
)
def test_parse_priority(value, level):
    assert parse_priority(value) == level


@pytest.mark.parametrize("value", ["0", "6", "loud", "-1"])
def test_parse_priority_rejects(value):
    with pytest.raises(ValueError, match="priority must be 1-5 or one of min, low, default, high, urgent"):
        parse_priority(value)


def test_bad_priority_falls_back_without_raising(server, capsys):
    assert notify("x", priority="loud", env=_env(server.url))
    assert server.published[0].priority is None
    assert "using the default priority" in capsys.readouterr().err


def test_server_error_is_retried_then_one_line(capsys):
    with FakeNtfyServer(status=500) as failing:
        start = time.monotonic()
        assert not notify("x", env=_env(failing.url, NTFY_DEADLINE="1.5"))
        elapsed = time.monotonic() - start
        assert len(failing.published) >= 2  # retried with backoff
    assert elapsed < 2.0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "HTTP 500" in err[0]
    assert "cft-test" not in err[0]  # the topic is a capability; keep it out of logs


def test_client_error_is_not_retried(capsys):
    with FakeNtfyServer(status=403) as forbidden:
        assert not notify("x", env=_env(forbidden.url))
        assert len(forbidden.published) == 1
    assert "HTTP 403" in capsys.readouterr().err


def test_hanging_server_is_bounded_by_the_deadline(capsys):
    with FakeNtfyServer(hang=True) as hanging:
        start = time.monotonic()
        assert not notify("x", env=_env(hanging.url, NTFY_DEADLINE="1"))
        elapsed = time.monotonic() - start
    assert 0.9 < elapsed < 1.6
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_closed_port_is_bounded_and_never_raises(capsys):
    start = time.monotonic()
    assert not notify("x", env=_env(_closed_port_url(), NTFY_DEADLINE="1"))
    assert time.monotonic() - start < 1.6
    assert "ConnectionError" in capsys.readouterr().err


def test_cli_send(server):
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), **_env(server.url)}
    done = subprocess.run(
        [sys.executable, "-m", "notify", "send", "eval done: STS mean 83.9", "--title", "cft",
         "--priority", "high", "--tags", "tada,cft", "--click", "https://example.com"],
        env=env, capture_output=True, text=True, timeout=30,
    )
    assert done.returncode == 0, done.stderr
    [p] = server.published
    assert (p.title, p.priority, p.tags, p.click, p.body) == (
        "cft", "4", ["tada", "cft"], "https://example.com", "eval done: STS mean 83.9")


def test_cli_send_rejects_bad_priority():
    done = subprocess.run([sys.executable, "-m", "notify", "send", "x", "--priority", "loud"],
                          env={"PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert "priority must be 1-5" in done.stderr


def test_a_newline_in_a_title_does_not_lose_the_notification(server):
    """A job name with a newline (SkyPilot passes TASK_NAME through) must not make the header invalid."""
    assert notify("body", title="train\nnode 1", env=_env(server.url))
    [p] = server.published
    assert p.title == "train node 1"


def _send(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), **env}
    return subprocess.run([sys.executable, "-m", "notify", "send", *args], env=env, capture_output=True, text=True,
                          timeout=30)


@pytest.mark.parametrize("env", [{"NTFY_TOPIC": "cft-test", "NTFY_DEADLINE": "1"}, {}], ids=["dead-server", "no-topic"])
def test_cli_send_exits_non_zero_when_not_delivered(env):
    if env:
        env["NTFY_SERVER"] = _closed_port_url()
    done = _send(env, "x")
    assert done.returncode == 1
    assert ("notification not sent" if env else "notifications are disabled") in done.stderr


def _apprise_json_url(server: FakeNtfyServer, path: str = "hook") -> str:
    return server.url.replace("http://", "json://") + f"/{path}"


def test_apprise_url_reaches_a_local_endpoint_redacted(server):
    pytest.importorskip("apprise", reason="the apprise extra is not installed")
    env = {"APPRISE_URLS": _apprise_json_url(server), "HF_TOKEN": "hf_leak_0123"}
    done = _send(env, "eval done: hf_leak_0123", "--title", "cft hf_leak_0123", "--tags", "x")
    assert done.returncode == 0, done.stderr
    [p] = server.published
    sent = json.loads(p.body)
    assert p.topic == "hook"
    assert (sent["title"], sent["message"].strip(), sent["type"]) == ("cft ***", "eval done: ***", "failure")
    assert "disabled" not in done.stderr  # no NTFY_TOPIC is no complaint when Apprise is the channel


@pytest.mark.parametrize("hang", [False, True], ids=["http-500", "no-answer"])
def test_apprise_failure_is_bounded_and_keeps_the_url_secret(hang):
    pytest.importorskip("apprise", reason="the apprise extra is not installed")
    with FakeNtfyServer(status=500, hang=hang) as failing:
        url = _apprise_json_url(failing, "secret-hook-path")
        started = time.monotonic()
        done = _send({"APPRISE_URLS": url, "NTFY_DEADLINE": "1.5"}, "x")
        elapsed = time.monotonic() - started
        assert len(failing.published) >= (1 if hang else 2)  # an error is retried with backoff
    assert done.returncode == 1
    assert elapsed < 1.5 + 3.0  # the deadline, plus interpreter start-up on a loaded machine
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("notify: notification not sent to json://…") and "secret-hook-path" not in line


def test_ntfy_and_apprise_together_both_receive(server):
    pytest.importorskip("apprise", reason="the apprise extra is not installed")
    from notify.notifier import Notifier

    with FakeNtfyServer() as hook:
        notifier = Notifier.from_env({**_env(server.url), "APPRISE_URLS": f"{_apprise_json_url(hook)} , "})
        assert notifier.publish("both", title="t")
        assert [p.body for p in server.published] == ["both"]
        assert json.loads(hook.published[0].body)["message"].strip() == "both"


def test_apprise_urls_are_secrets_each_on_its_own():
    from notify.redact import redact

    env = {"APPRISE_URLS": "slack://TokenA/TokenB/TokenC, discord://webhook_id/webhook_token"}
    assert redact("posting to discord://webhook_id/webhook_token now", env) == "posting to *** now"
