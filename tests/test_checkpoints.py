"""Runs survive kills at chosen moments and damaged checkpoints, on a local folder and on S3 (moto on loopback).

Each kill stops a run at one moment of its storage traffic (see kill_points.py): in-process for speed, and once as
a real SIGKILL of a `cft train` process. The next start must resume from the newest usable checkpoint.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from cft.config import load_recipe
from cft.training.run import train
from conftest import StopAt, tiny_recipe_yaml
from kill_points import Killed, arm
from notify.testing import FakeNtfyServer
from s3_server import serving

REPO = Path(__file__).resolve().parents[1]
S3_BUCKET = "cft-survive"


@pytest.fixture(scope="module")
def s3_server():
    with serving(S3_BUCKET) as server:
        yield server


class Where:
    """A bucket root (local folder or s3:// prefix) and a way to read a run's files there."""

    def __init__(self, kind, tmp_path, server=None):
        self.kind, self.tmp_path, self.server = kind, tmp_path, server
        self.output = str(tmp_path / "bucket") if kind == "local" else f"s3://{S3_BUCKET}/{tmp_path.name}"

    def checkpoints(self, run_id):
        """Checkpoint folder -> has its marker."""
        if self.kind == "local":
            root = self.tmp_path / "bucket" / "runs" / run_id / "checkpoints"
            return {p.name: (p / "_COMPLETE").exists() for p in root.iterdir()} if root.is_dir() else {}
        prefix = f"{self.tmp_path.name}/runs/{run_id}/checkpoints/"
        found = {}
        for key in self.server.keys(S3_BUCKET, prefix):
            name, _, rest = key[len(prefix):].partition("/")
            found[name] = found.get(name, False) or rest == "_COMPLETE"
        return found


@pytest.fixture(params=["local", "s3"])
def where(request, tmp_path, monkeypatch):
    server = request.getfixturevalue("s3_server") if request.param == "s3" else None
    monkeypatch.setenv("CFT_WORK_DIR", str(tmp_path / "node-1"))
    return Where(request.param, tmp_path, server)


def _recipe(tmp_path, tiny_model_dir, triplets_csv, **train):
    return tiny_recipe_yaml(tmp_path / "tiny.yaml", tiny_model_dir, triplets_csv, **train)


def _train(recipe_path, where, run_id="r", callbacks=None):
    return train(load_recipe(recipe_path), str(recipe_path), output=where.output, run_id=run_id,
                 extra_callbacks=callbacks)


def _kill(moment, monkeypatch):
    def kill():
        raise Killed(moment)

    arm(moment, kill, patch=monkeypatch.setattr)


def test_kill_mid_download_then_resume_on_another_node(tmp_path, tiny_model_dir, triplets_csv, s3_server,
                                                       monkeypatch):
    """A kill while a checkpoint is downloaded must not leave a local copy that looks whole (marker comes last)."""
    where = Where("s3", tmp_path, s3_server)
    recipe = _recipe(tmp_path, tiny_model_dir, triplets_csv, max_steps=20)
    monkeypatch.setenv("CFT_WORK_DIR", str(tmp_path / "node-1"))
    with pytest.raises(RuntimeError):
        _train(recipe, where, callbacks=[StopAt(15)])
    monkeypatch.setenv("CFT_WORK_DIR", str(tmp_path / "node-2"))  # recovered on a fresh node
    with monkeypatch.context() as patch:
        _kill("download:3", patch)
        with pytest.raises(Killed):
            _train(recipe, where)
    result = _train(recipe, where)
    assert result.manifest.resumed_from_step == 10
    assert result.manifest.steps == 20


def test_kill_between_data_and_marker_keeps_the_previous_checkpoint(where, tiny_model_dir, triplets_csv, monkeypatch):
    """save_total_limit 1: the older checkpoint must survive until its successor has its marker."""
    recipe = _recipe(where.tmp_path, tiny_model_dir, triplets_csv, max_steps=30, save_total_limit=1)
    with monkeypatch.context() as patch:
        _kill("marker:checkpoint-20", patch)
        with pytest.raises(Killed):
            _train(recipe, where)
    assert where.checkpoints("r") == {"checkpoint-10": True, "checkpoint-20": False}
    result = _train(recipe, where)
    assert result.manifest.resumed_from_step == 10
    assert result.manifest.steps == 30
    assert where.checkpoints("r") == {"checkpoint-30": True}


@pytest.mark.parametrize("nth", [1, 2])
def test_kill_during_rotation_keeps_a_complete_checkpoint(where, nth, tiny_model_dir, triplets_csv, monkeypatch):
    """Killed while the old checkpoint is deleted (before, or between its marker and its data)."""
    recipe = _recipe(where.tmp_path, tiny_model_dir, triplets_csv, max_steps=30, save_total_limit=1)
    calls = {"n": 0}

    def kill_at_nth():
        calls["n"] += 1
        if calls["n"] == nth:
            raise Killed("rotation")

    with monkeypatch.context() as patch:
        arm("delete:checkpoint-10", kill_at_nth, patch=patch.setattr)
        with pytest.raises(Killed):
            _train(recipe, where)
    assert where.checkpoints("r")["checkpoint-20"] is True
    result = _train(recipe, where)
    assert result.manifest.resumed_from_step == 20
    assert where.checkpoints("r") == {"checkpoint-30": True}  # leftovers of the killed rotation are gone too


@pytest.fixture(scope="module")
def two_checkpoints(tmp_path_factory, tiny_model_dir, triplets_csv):
    """A local run stopped at step 25: complete checkpoints 10 and 20. Tests copy it."""
    folder = tmp_path_factory.mktemp("two")
    recipe = _recipe(folder, tiny_model_dir, triplets_csv, max_steps=30)
    where = Where("local", folder)
    with pytest.raises(RuntimeError):
        _train(recipe, where, callbacks=[StopAt(25)])
    return folder / "bucket", recipe


def _truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


DAMAGES = {
    "truncated adapter": lambda c: _truncate(c / "adapter_model.safetensors"),
    "corrupt trainer_state": lambda c: (c / "trainer_state.json").write_text('{"global_step": 2'),
    "corrupt optimizer": lambda c: (c / "optimizer.pt").write_bytes(b"\x00" * 64),
    "only the marker": lambda c: [p.unlink() for p in c.iterdir() if p.name != "_COMPLETE"],
}


@pytest.fixture
def ntfy(monkeypatch):
    with FakeNtfyServer() as server:
        monkeypatch.setenv("NTFY_TOPIC", "cft-test")
        monkeypatch.setenv("NTFY_SERVER", server.url)
        yield server


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_damaged_newest_checkpoint_falls_back_to_the_older(damage, two_checkpoints, tmp_path, ntfy, capsys):
    source, recipe = two_checkpoints
    shutil.copytree(source, tmp_path / "bucket")
    DAMAGES[damage](tmp_path / "bucket" / "runs" / "r" / "checkpoints" / "checkpoint-20")
    result = _train(recipe, Where("local", tmp_path))
    assert result.manifest.resumed_from_step == 10
    assert result.manifest.steps == 30
    err = capsys.readouterr().err
    assert "resumed from checkpoint step 10, skipping damaged (checkpoint-20" in err
    [note] = [p for p in ntfy.published if p.title == "cft: resumed"]
    assert "checkpoint-20" in note.body and "step 10" in note.body


def test_damaged_checkpoint_in_s3_falls_back(tmp_path, tiny_model_dir, triplets_csv, s3_server, monkeypatch):
    where = Where("s3", tmp_path, s3_server)
    recipe = _recipe(tmp_path, tiny_model_dir, triplets_csv, max_steps=30)
    monkeypatch.setenv("CFT_WORK_DIR", str(tmp_path / "node-1"))
    with pytest.raises(RuntimeError):
        _train(recipe, where, callbacks=[StopAt(25)])
    key = f"{tmp_path.name}/runs/r/checkpoints/checkpoint-20/adapter_model.safetensors"
    body = s3_server.client.get_object(Bucket=S3_BUCKET, Key=key)["Body"].read()
    s3_server.client.put_object(Bucket=S3_BUCKET, Key=key, Body=body[: len(body) // 2])
    result = _train(recipe, where)
    assert result.manifest.resumed_from_step == 10


def test_no_usable_checkpoint_starts_over_and_says_so(two_checkpoints, tmp_path, ntfy, capsys):
    source, recipe = two_checkpoints
    shutil.copytree(source, tmp_path / "bucket")
    for name in ("checkpoint-10", "checkpoint-20"):
        _truncate(tmp_path / "bucket" / "runs" / "r" / "checkpoints" / name / "optimizer.pt")
    result = _train(recipe, Where("local", tmp_path))
    assert result.manifest.resumed_from_step is None and result.manifest.steps == 30
    assert "no usable checkpoint" in capsys.readouterr().err
    assert [p.title for p in ntfy.published] == ["cft: starting over"]


def test_real_sigkill_mid_download(tmp_path, tiny_model_dir, triplets_csv, s3_server, monkeypatch):
    """A real SIGKILL of `cft train` mid-download (no Python cleanup runs) on a fresh node, then a restart."""
    where = Where("s3", tmp_path, s3_server)
    recipe = _recipe(tmp_path, tiny_model_dir, triplets_csv, max_steps=20)
    monkeypatch.setenv("CFT_WORK_DIR", str(tmp_path / "node-1"))
    with pytest.raises(RuntimeError):
        _train(recipe, where, callbacks=[StopAt(15)])
    monkeypatch.setenv("CFT_WORK_DIR", str(tmp_path / "node-2"))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / "tests")]))
    done = subprocess.run([sys.executable, str(REPO / "tests" / "kill_points.py"), "download:3", "train",
                           "--config", str(recipe), "--bucket", where.output, "--run-id", "r"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
    assert (tmp_path / "node-2" / "r" / "checkpoints" / ".checkpoint-10.partial").is_dir()  # what the kill left
    result = _train(recipe, where)
    assert result.manifest.resumed_from_step == 10
    assert result.manifest.steps == 20
    local = tmp_path / "node-2" / "r" / "checkpoints"
    assert sorted(p.name for p in local.iterdir()) == ["checkpoint-10", "checkpoint-20"]


def test_real_sigkill_between_data_and_marker_on_a_local_folder(tmp_path, tiny_model_dir, triplets_csv):
    """save_total_limit 1, a real SIGKILL after checkpoint-20's data and before its marker: checkpoint-10 remains."""
    where = Where("local", tmp_path)
    recipe = _recipe(tmp_path, tiny_model_dir, triplets_csv, max_steps=30, save_total_limit=1)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / "tests")]))
    done = subprocess.run([sys.executable, str(REPO / "tests" / "kill_points.py"), "marker:checkpoint-20", "train",
                           "--config", str(recipe), "--bucket", where.output, "--run-id", "r"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
    assert where.checkpoints("r") == {"checkpoint-10": True, "checkpoint-20": False}
    result = _train(recipe, where)
    assert result.manifest.resumed_from_step == 10
    assert where.checkpoints("r") == {"checkpoint-30": True}
