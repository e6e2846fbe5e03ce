"""One writer per run: conditional writes on a local folder and on S3 (moto), and the run lease built on them."""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from cft.cli.main import main
from cft.storage.bucket import PreconditionFailed, open_bucket
from cft.storage.lease import LeaseHeld, LeaseLost, RunLease
from conftest import tiny_recipe_yaml
from s3_server import serving

REPO = Path(__file__).resolve().parents[1]
S3_BUCKET = "cft-lease"


@pytest.fixture(scope="module")
def s3_server():
    with serving(S3_BUCKET) as server:
        yield server


@pytest.fixture(params=["local", "s3"])
def root(request, tmp_path):
    if request.param == "local":
        return str(tmp_path / "bucket")
    request.getfixturevalue("s3_server")
    return f"s3://{S3_BUCKET}/{tmp_path.name}"


def test_conditional_writes_are_honoured(root):
    """The store (moto's server >= 5.1.5, or a local folder) refuses a create over an object and a stale replace."""
    bucket = open_bucket(root)
    first = bucket.write_if_absent("k.json", "one")
    with pytest.raises(PreconditionFailed):
        bucket.write_if_absent("k.json", "two")
    second = bucket.write_if_match("k.json", "three", first)
    with pytest.raises(PreconditionFailed):
        bucket.write_if_match("k.json", "four", first)  # stale version
    with pytest.raises(PreconditionFailed):
        bucket.write_if_match("missing.json", "five", second)
    assert bucket.read_versioned("k.json") == ("three", second)


HOLDER = """
import sys, time
from cft.storage.bucket import open_bucket
from cft.storage.lease import RunLease
lease = RunLease(open_bucket(sys.argv[1]), "runs/r", ttl_s=30, heartbeat_s=0.5)
lease.acquire()
print("held", flush=True)
time.sleep(120)
"""


def test_second_writer_exits_2_naming_the_holder_then_resumes_once_it_is_dead(root, tmp_path, tiny_model_dir,
                                                                              triplets_csv, monkeypatch, capsys):
    monkeypatch.setenv("CFT_WORK_DIR", str(tmp_path / "work"))
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, root], stdout=subprocess.PIPE, text=True,
                              env=dict(os.environ, PYTHONPATH=str(REPO)))
    try:
        assert holder.stdout.readline().strip() == "held"
        recipe = tiny_recipe_yaml(tmp_path / "tiny.yaml", tiny_model_dir, triplets_csv, max_steps=10)
        args = ["train", "--config", str(recipe), "--bucket", root, "--run-id", "r"]
        assert main(args) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith(f"cft: error: run r is being written by host {socket.gethostname()} "
                                  f"pid {holder.pid} since ")
        assert sorted(key.rsplit("/", 1)[-1] for key in open_bucket(root).list_keys("runs/r/")
                      if not key.rsplit("/", 1)[-1].startswith(".")) == ["lease.json"]  # the second wrote nothing
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert main(args) == 0  # its holder is dead (same host, pid gone): this start takes the lease over
    lease = json.loads(open_bucket(root).read_text("runs/r/lease.json"))
    assert lease["released"] is True and lease["pid"] == os.getpid()


def _foreign_lease(bucket, renewed_ago, ttl_s, host="other-node"):
    now = time.time()
    text = json.dumps({"token": "t-other", "host": host, "pid": 4242, "pid_ns": "", "since": now - 600,
                       "renewed_at": now - renewed_ago, "ttl_s": ttl_s})
    return bucket.write_if_absent("runs/r/lease.json", text)


def test_dead_holder_on_another_host_is_waited_out_saying_how_long(root, capsys):
    bucket = open_bucket(root)
    _foreign_lease(bucket, renewed_ago=1.0, ttl_s=3.0)
    started = time.monotonic()
    lease = RunLease(bucket, "runs/r", ttl_s=30, heartbeat_s=0.25)
    lease.acquire()
    try:
        waited = time.monotonic() - started
        assert 1.5 <= waited < 5
        err = capsys.readouterr().err
        assert "host other-node pid 4242" in err and "looks dead; waiting 2s for it to expire" in err
        assert json.loads(bucket.read_text("runs/r/lease.json"))["pid"] == os.getpid()
    finally:
        lease.release()


def test_live_holder_on_another_host_is_refused(root):
    bucket = open_bucket(root)
    etag = _foreign_lease(bucket, renewed_ago=0.0, ttl_s=30)
    stop = threading.Event()

    def renew():  # the other host's heartbeat
        version = etag
        while not stop.wait(0.2):
            text = json.loads(bucket.read_text("runs/r/lease.json"))
            version = bucket.write_if_match("runs/r/lease.json", json.dumps(dict(text, renewed_at=time.time())),
                                            version)

    thread = threading.Thread(target=renew, daemon=True)
    thread.start()
    try:
        with pytest.raises(LeaseHeld, match="run r is being written by host other-node pid 4242 since "):
            RunLease(bucket, "runs/r", ttl_s=30, heartbeat_s=0.5).acquire()
    finally:
        stop.set()
        thread.join()


def test_a_writer_whose_lease_was_taken_over_stops_writing(root):
    bucket = open_bucket(root)
    lease = RunLease(bucket, "runs/r", ttl_s=30, heartbeat_s=0.1)
    lease.acquire()
    try:
        _, etag = bucket.read_versioned("runs/r/lease.json")
        # what another starter does once this holder has stalled past its ttl
        bucket.write_if_match("runs/r/lease.json", json.dumps({
            "token": "t-new", "host": "node-b", "pid": 7, "since": time.time(), "renewed_at": time.time(),
            "ttl_s": 30}), etag)
        deadline = time.monotonic() + 5
        while lease.held and time.monotonic() < deadline:
            time.sleep(0.05)
        with pytest.raises(LeaseLost, match="taken over by host node-b pid 7"):
            lease.check()
    finally:
        lease.release()
    assert json.loads(bucket.read_text("runs/r/lease.json"))["host"] == "node-b"  # release left it alone


def test_exclusive_create_without_hard_links(tmp_path, monkeypatch):
    """Some filesystems (SMB, some FUSE mounts) refuse hard links; creating a lease must stay exclusive there."""
    def no_links(src, dst):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    bucket = open_bucket(tmp_path / "bucket")
    bucket.write_if_absent("runs/r/lease.json", "one")
    with pytest.raises(PreconditionFailed):
        bucket.write_if_absent("runs/r/lease.json", "two")
    assert bucket.read_text("runs/r/lease.json") == "one"
