"""Notification text: durations, host, exit codes, log tails and headline metrics."""

import json

import pytest

from notify import report


@pytest.mark.parametrize(("seconds", "text"), [(0.42, "0.4s"), (12, "12s"), (245, "4m 05s"), (3723, "1h 02m 03s")])
def test_format_duration(seconds, text):
    assert report.format_duration(seconds) == text


def test_describe_host_prefers_skypilot_cluster_info():
    info = {"cluster_name": "cft-a100", "cloud": "Lambda", "region": "us-east-1", "zone": None}
    assert report.describe_host({"SKYPILOT_CLUSTER_INFO": json.dumps(info)}) == "cft-a100 (Lambda, us-east-1)"
    env = {"SKYPILOT_CLUSTER_INFO": json.dumps(info), "SKYPILOT_NODE_RANK": "1", "SKYPILOT_NUM_NODES": "2"}
    assert report.describe_host(env) == "cft-a100 (Lambda, us-east-1), node 1"
    assert report.describe_host({"SKYPILOT_CLUSTER_INFO": "not json"}) == report.socket.gethostname()


@pytest.mark.parametrize(("code", "text"), [(0, "exit code 0"), (1, "exit code 1"), (137, "exit code 137 (SIGKILL)"),
                                            (130, "exit code 130 (SIGINT)")])
def test_exit_phrase(code, text):
    assert report.exit_phrase(code) == text


def test_tail_collapses_progress_bars_and_keeps_the_last_lines(tmp_path):
    log = tmp_path / "x.log"
    log.write_bytes(b"".join(b"line %d\n" % i for i in range(30)) + b"10%\r50%\r100%\r\nTraceback\n" + b"y" * 500
                    + b"\n\n")
    lines = report.tail(log)
    assert len(lines) == report.TAIL_LINES
    assert lines[-3:-1] == ["100%", "Traceback"]
    assert len(lines[-1]) == report.MAX_LINE_CHARS and lines[-1].endswith("…")
    assert report.tail(tmp_path / "missing.log") == []


def test_headline_metrics_order_and_limit():
    metrics = {f"task{i}": float(i) for i in range(10)} | {"train_loss": 0.123456, "sts_mean": 83.9, "note": "x"}
    shown = report.headline_metrics({"metrics": metrics})
    assert shown[:2] == [("sts_mean", "83.9"), ("train_loss", "0.1235")]
    assert len(shown) == report.MAX_METRICS and ("note", "x") not in shown
    assert report.headline_metrics({}) == []
