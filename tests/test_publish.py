"""`cft export --push-to-hub`: one commit to a local stand-in for the Hub (tests/hub_server.py) that records it.

huggingface_hub reads HF_ENDPOINT, HF_HUB_OFFLINE and HF_HUB_DISABLE_XET once, at import; these in-process tests set
the same values on `huggingface_hub.constants` instead. Xet uploads are not faked: HF_HUB_DISABLE_XET sends the
weights through the git-LFS API, which the stand-in implements.
"""

from __future__ import annotations

import json

import pytest
from huggingface_hub import ModelCard, constants

from cft.cli.main import main
from cft.config import load_recipe
from cft.training.run import train
from conftest import tiny_recipe_yaml
from hub_server import HubServer

TOKEN = "hf_test_secret_token"


@pytest.fixture(scope="module")
def adapter(tmp_path_factory, tiny_model_dir, triplets_csv):
    folder = tmp_path_factory.mktemp("publish-run")
    recipe_path = tiny_recipe_yaml(folder / "tiny.yaml", tiny_model_dir, triplets_csv, max_steps=4, save_steps=1000,
                                   logging_steps=2)
    return train(load_recipe(recipe_path), str(recipe_path), output=str(folder / "bucket"), run_id="pub").adapter_uri


@pytest.fixture
def hub(monkeypatch, tmp_path):
    with HubServer(token=TOKEN) as server:
        monkeypatch.setattr(constants, "ENDPOINT", server.endpoint)
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
        monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-saved-token"))
        monkeypatch.setenv("HF_TOKEN", TOKEN)
        yield server


def export(adapter, out, *extra):
    return main(["export", "--adapter", adapter, "--out", str(out), "--format", "both", *extra])


def test_push_is_one_commit_of_the_export_and_its_adapter(adapter, hub, tmp_path, capsys):
    out = tmp_path / "exported"
    assert export(adapter, out, "--push-to-hub", "me/tiny-cft", "--private", "--with-adapter") == 0
    printed = capsys.readouterr()
    assert TOKEN not in printed.out + printed.err
    assert "pushed to me/tiny-cft (main)" in printed.out

    assert len(hub.commits) == 1
    commit = hub.commits[0]
    assert commit["repo"] == "me/tiny-cft" and commit["revision"] == "main" and hub.repos["me/tiny-cft"]["private"]
    assert commit["summary"] == "cft export of run pub" and commit["authorization"] == f"Bearer {TOKEN}"
    # the root is the sentence-transformers folder, byte for byte; the adapter sits under adapter/
    st_files = {p.relative_to(out / "st").as_posix(): p.read_bytes() for p in (out / "st").rglob("*") if p.is_file()}
    assert {k: v for k, v in commit["files"].items() if not k.startswith("adapter/")} == st_files
    adapter_files = {k for k in commit["files"] if k.startswith("adapter/")}
    assert {"adapter/adapter_model.safetensors", "adapter/adapter_config.json", "adapter/README.md",
            "adapter/cft_metadata.json"} <= adapter_files
    assert {"model.safetensors", "adapter/adapter_model.safetensors", "training.png"} <= set(commit["lfs"])
    # the card the Hub receives is the export's own, loading from the repository, and it parses strictly
    card = ModelCard(commit["files"]["README.md"].decode(), ignore_metadata_errors=False)
    assert card.data.library_name == "sentence-transformers" and "SentenceTransformer('me/tiny-cft')" in card.text
    assert "me/tiny-cft" not in (out / "hf" / "README.md").read_text()  # not pushed: it loads from its folder
    adapter_card = commit["files"]["adapter/README.md"].decode()
    assert "PeftModel.from_pretrained(base, 'me/tiny-cft', subfolder='adapter')" in adapter_card
    config = json.loads(commit["files"]["adapter/adapter_config.json"])
    assert config["base_model_name_or_path"] == json.loads(open(adapter + "/adapter_config.json").read())[
        "base_model_name_or_path"]  # a local base stays its path (the card says so); embedded: see test_model_card


def test_existing_main_is_refused_before_exporting_then_replaced_with_force(adapter, hub, tmp_path, capsys):
    head = hub.add_repo("me/taken", {"README.md": b"# someone's model\n", "old-weights.bin": b"x"})
    out = tmp_path / "exported"
    assert export(adapter, out, "--push-to-hub", "me/taken") == 2
    err = capsys.readouterr().err
    assert err.startswith("cft: error: --push-to-hub me/taken: the repository exists and its main branch holds 2 files")
    assert "--force" in err and "--revision" in err and len(err.strip().splitlines()) == 1
    assert hub.commits == [] and not out.exists()  # refused before any export work

    assert export(adapter, out, "--push-to-hub", "me/taken", "--force") == 0
    assert "1 old files deleted" in capsys.readouterr().out
    (commit,) = hub.commits
    assert commit["parent"] == head and commit["deleted"] == ["old-weights.bin"]  # README.md is replaced
    files = hub.files("me/taken")
    assert "old-weights.bin" not in files and files["README.md"] != b"# someone's model\n"
    assert ".gitattributes" in files


def test_revision_pushes_to_a_branch_and_leaves_main_alone(adapter, hub, tmp_path):
    hub.add_repo("me/model", {"README.md": b"# v1\n"})
    main_before = hub.files("me/model")
    assert export(adapter, tmp_path / "exported", "--format", "hf", "--push-to-hub", "me/model",
                  "--revision", "cft-pub") == 0
    (commit,) = hub.commits
    assert commit["revision"] == "cft-pub" and hub.files("me/model") == main_before
    card = ModelCard(hub.files("me/model", "cft-pub")["README.md"].decode(), ignore_metadata_errors=False)
    assert card.data.library_name == "transformers"


@pytest.mark.parametrize("args, env, message", [
    (["--push-to-hub", "not a repo"], {}, "--push-to-hub 'not a repo': give OWNER/NAME"),
    (["--push-to-hub", "me/x"], {"HF_TOKEN": None}, "--push-to-hub needs a Hub token"),
    (["--private"], {}, "--private goes with --push-to-hub OWNER/NAME"),
    (["--push-to-hub", "me/x"], {"HF_TOKEN": "hf_wrong"}, "the Hub refused the token (HTTP 401"),
])
def test_refusals_are_one_line(adapter, hub, tmp_path, capsys, monkeypatch, args, env, message):
    for key, value in env.items():
        if value is None:
            monkeypatch.delenv(key, raising=False)
        else:
            monkeypatch.setenv(key, value)
    assert export(adapter, tmp_path / "exported", *args) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert hub.commits == []


def test_offline_mode_is_refused_in_one_line(adapter, hub, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert export(adapter, tmp_path / "exported", "--push-to-hub", "me/x") == 2
    assert "HF_HUB_OFFLINE" in capsys.readouterr().err and hub.commits == []


def test_cli_process_honours_hf_endpoint(adapter, hub, tmp_path):
    """As a user runs it: a separate process whose huggingface_hub reads HF_ENDPOINT and HF_TOKEN from the
    environment (no constants patched there)."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "HF_ENDPOINT": hub.endpoint, "HF_TOKEN": TOKEN, "HF_HUB_DISABLE_XET": "1",
           "HF_HOME": str(tmp_path / "hf-home")}
    env.pop("HF_HUB_OFFLINE", None)
    env.pop("TRANSFORMERS_OFFLINE", None)
    done = subprocess.run([sys.executable, "-m", "cft", "export", "--adapter", adapter, "--out", str(tmp_path / "e"),
                           "--format", "hf", "--no-verify", "--push-to-hub", "me/from-env"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    (commit,) = hub.commits
    assert commit["repo"] == "me/from-env" and "model.safetensors" in commit["lfs"]
    assert TOKEN not in done.stdout + done.stderr
