"""Notification text: durations, host, exit codes, log tails and headline metrics."""

import json

import pytest

from notify import report
from notify.manifest import Manifest


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
    scores = {f"task{i}": float(i) for i in range(10)} | {"sts_mean": 83.9}
    manifest = Manifest(run_id="r", status="succeeded", model="m", recipe="r.yaml", scores=scores,
                        metrics={"train_loss": 0.123456, "note": None})
    shown = report.headline_metrics(manifest)
    assert shown[:2] == [("sts_mean", "83.9"), ("train_loss", "0.1235")]
    assert len(shown) == report.MAX_METRICS and ("note", "None") not in shown
    assert report.headline_metrics(None) == []


TORCHRUN_FAILURE = """step 10 loss 2.1
cft: error: uploading to s3://b/cft/runs/r/checkpoints/checkpoint-20/README.md failed after retries: EndpointConnectionError
E1125 21:00:00 torch/distributed/elastic/multiprocessing/api.py:882] failed (exitcode: 2) local_rank: 0
Traceback (most recent call last):
  File "/usr/bin/torchrun", line 8, in <module>
torch.distributed.elastic.multiprocessing.errors.ChildFailedError:
============================================================
cft.train FAILED
------------------------------------------------------------
Failures:
  <NO_OTHER_FAILURES>
------------------------------------------------------------
Root Cause (first observed failure):
[0]:
  time      : 2026-11-25_21:00:00
  host      : node
  rank      : 0 (local_rank: 0)
  exitcode  : 2 (pid: 1)
  error_file: <N/A>
============================================================
"""


def test_failure_reason_sees_past_the_launchers_report(tmp_path):
    from notify.report import failure_reason

    log = tmp_path / "train.log"
    log.write_text(TORCHRUN_FAILURE)
    assert failure_reason(log).startswith("cft: error: uploading to s3://")


def test_failure_reason_falls_back_to_the_last_exception(tmp_path):
    from notify.report import failure_reason

    log = tmp_path / "train.log"
    log.write_text("Traceback (most recent call last):\n  File 'x', line 1\ntorch.OutOfMemoryError: CUDA out of memory\n")
    assert failure_reason(log) == "torch.OutOfMemoryError: CUDA out of memory"
    log.write_text("all good\n")
    assert failure_reason(log) is None
