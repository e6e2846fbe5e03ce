"""The SkyPilot managed-jobs event callback: one notification per state change worth knowing."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from notify import event_callback
from notify.testing import FakeNtfyServer

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def server():
    with FakeNtfyServer() as s:
        yield s


def _event_env(server_url: str, status: str) -> dict[str, str]:
    # Exactly what SkyPilot's controller sets (sky/jobs/utils.py event_callback_func), plus a topic and no token.
    return {
        "NTFY_TOPIC": "cft-test", "NTFY_SERVER": server_url, "NTFY_DEADLINE": "2",
        "JOB_ID": "42", "TASK_ID": "0", "TASK_NAME": "cft-train", "JOB_STATUS": status,
        "CLUSTER_NAME": "cft-train-42", "SKYPILOT_TASK_ID": "sky-managed-2026-01-02-03-04-05-000001_cft-train_42-0",
        "SKYPILOT_TASK_IDS": "N.A.", "EVENT_TYPE": "Spot",
    }


@pytest.mark.parametrize(
    ("status", "title", "priority", "tags"),
    [
        ("STARTED", "cft-train #42 started", "2", ["arrow_forward"]),
        ("RECOVERING", "cft-train #42 recovering", "4", ["arrows_counterclockwise"]),
        ("RECOVERED", "cft-train #42 recovered", "3", ["arrow_forward"]),
        ("SUCCEEDED", "cft-train #42 succeeded", "3", ["white_check_mark"]),
        ("FAILED", "cft-train #42 failed", "5", ["x"]),
        ("FAILED_SETUP", "cft-train #42 failed (FAILED_SETUP)", "5", ["x"]),
        ("FAILED_NO_RESOURCE", "cft-train #42 failed (FAILED_NO_RESOURCE)", "5", ["x"]),
        ("CANCELLED", "cft-train #42 cancelled", "3", ["no_entry"]),
    ],
)
def test_one_notification_per_state_change(server, status, title, priority, tags):
    assert event_callback.main(_event_env(server.url, status)) == 0
    [p] = server.published
    assert (p.title, p.priority, p.tags) == (title, priority, tags)
    assert f"`{status}`" in p.body and "id 42" in p.body and "cft-train-42" in p.body
    assert "- run: `sky-managed-2026-01-02-03-04-05-000001_cft-train_42-0`" in p.body
    assert p.authorization is None  # a topic alone is enough


@pytest.mark.parametrize("status", ["STARTING", "CANCELLING", "PENDING", ""])
def test_transitional_states_are_skipped(server, status, capsys):
    assert event_callback.main(_event_env(server.url, status)) == 0
    assert server.published == []
    assert "not worth a notification" in capsys.readouterr().err


def test_callback_exits_zero_when_the_server_is_down(capsys):
    env = _event_env("http://127.0.0.1:9", "FAILED")
    env["NTFY_DEADLINE"] = "0.5"
    assert event_callback.main(env) == 0
    assert "notification not sent" in capsys.readouterr().err


def test_python_m_notify_event(server):
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(REPO), **_event_env(server.url, "RECOVERING")}
    done = subprocess.run([sys.executable, "-m", "notify", "event"], env=env, capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 0, done.stderr
    assert server.published[0].title == "cft-train #42 recovering"
