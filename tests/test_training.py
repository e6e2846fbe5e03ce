"""Training end to end on a tiny Llama: the loss goes down, the adapter reloads, a stopped run resumes."""

import json

import numpy as np
import pytest
import torch
from transformers import TrainerCallback

from cft.config import load_recipe
from cft.modeling.encoder import TextEncoder
from cft.training.run import train
from conftest import StopAt, tiny_recipe_yaml

TEXTS = ["a man is playing a guitar .", "the dog runs across the park .", "three girls are eating some bread ."]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, tiny_model_dir, triplets_csv):
    folder = tmp_path_factory.mktemp("run")
    recipe_path = tiny_recipe_yaml(folder / "tiny.yaml", tiny_model_dir, triplets_csv, max_steps=30)
    result = train(load_recipe(recipe_path), str(recipe_path), output=str(folder / "bucket"), run_id="tiny-1")
    return folder / "bucket" / "runs" / "tiny-1", result


def test_thirty_steps_lower_the_loss(finished_run):
    run_dir, result = finished_run
    losses = [entry["loss"] for entry in json.loads(
        (run_dir / "checkpoints" / "checkpoint-30" / "trainer_state.json").read_text())["log_history"] if "loss" in entry]
    assert len(losses) == 6
    assert losses[-1] < 0.7 * losses[0]
    assert result.manifest.steps == 30


def test_run_layout_and_manifest(finished_run):
    run_dir, result = finished_run
    for name in ("config.yaml", "manifest.json", "training.png", "adapter/adapter_model.safetensors",
                 "adapter/cft_metadata.json", "adapter/tokenizer.json", "checkpoints/checkpoint-30/_COMPLETE"):
        assert (run_dir / name).exists(), name
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "succeeded"
    assert manifest["adapter"] == str(run_dir / "adapter")
    assert manifest["metrics"]["final_loss"] < manifest["metrics"]["first_loss"]
    # the resolved configuration reloads to the same recipe
    assert load_recipe(run_dir / "config.yaml").to_dict()["train"]["max_steps"] == 30


def test_log_lines_carry_throughput(finished_run):
    run_dir, _ = finished_run
    state = json.loads((run_dir / "checkpoints" / "checkpoint-30" / "trainer_state.json").read_text())
    logged = [entry for entry in state["log_history"] if "loss" in entry]
    assert all(entry["triplets_per_second"] > 0 and entry["tokens_per_second"] > 0 for entry in logged)


def test_saved_adapter_reloads_with_identical_embeddings(finished_run):
    run_dir, _ = finished_run
    first = TextEncoder.from_adapter(str(run_dir / "adapter"), device="cpu")
    second = TextEncoder.from_adapter(str(run_dir / "adapter"), device="cpu")
    np.testing.assert_array_equal(first.encode(TEXTS), second.encode(TEXTS))


def test_an_adapter_with_first_build_metadata_embeds_the_same(finished_run, tmp_path):
    """The first build spelt the model's fields out at the top of cft_metadata.json; such adapters still load."""
    import shutil

    run_dir, _ = finished_run
    saved = json.loads((run_dir / "adapter" / "cft_metadata.json").read_text())
    model = saved.pop("model")
    assert model["max_length"] == 32 and "base_model" not in saved  # this build saves the ModelConfig itself
    first_build = {**{k: v for k, v in saved.items() if k != "format_version"}, "base_model": model["name_or_path"],
                   **{k: model[k] for k in ("gguf_file", "revision", "trust_remote_code", "pooling", "max_length",
                                            "prompt_template", "dtype")}}
    old = shutil.copytree(run_dir / "adapter", tmp_path / "adapter")
    (old / "cft_metadata.json").write_text(json.dumps(first_build))
    expected = TextEncoder.from_adapter(run_dir / "adapter", device="cpu").encode(TEXTS)
    # the first build's file does not name the attention kernel (sdpa then, the recipe's eager now): rounding only
    np.testing.assert_allclose(TextEncoder.from_adapter(old, device="cpu").encode(TEXTS), expected, atol=1e-5)


def test_adapter_changes_the_embeddings(finished_run, tiny_model_dir):
    run_dir, _ = finished_run
    adapted = TextEncoder.from_adapter(str(run_dir / "adapter"), device="cpu")
    base = TextEncoder.from_base(str(tiny_model_dir), device="cpu")
    assert not np.allclose(adapted.encode(TEXTS), base.encode(TEXTS), atol=1e-3)
    # the adapter's own base view equals the plain base model
    np.testing.assert_allclose(adapted.base_encoder().encode(TEXTS), base.encode(TEXTS), atol=1e-5)
    assert adapted.revision != base.revision


def test_finished_run_is_not_trained_again(finished_run, tiny_model_dir, triplets_csv):
    run_dir, result = finished_run
    recipe = load_recipe(run_dir / "config.yaml")
    again = train(recipe, "tiny.yaml", output=str(run_dir.parent.parent), run_id="tiny-1")
    assert again.manifest.finished_at == result.manifest.finished_at


def test_stopped_run_resumes_from_its_checkpoint(tmp_path, tiny_model_dir, triplets_csv):
    recipe_path = tiny_recipe_yaml(tmp_path / "tiny.yaml", tiny_model_dir, triplets_csv, max_steps=30)
    bucket = tmp_path / "bucket"
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(load_recipe(recipe_path), str(recipe_path), output=str(bucket), run_id="r", extra_callbacks=[StopAt(25)])
    failed = json.loads((bucket / "runs" / "r" / "manifest.json").read_text())
    assert failed["status"] == "failed" and "simulated crash" in failed["error"]

    steps_seen = []

    class Record(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            steps_seen.append(state.global_step)

    result = train(load_recipe(recipe_path), str(recipe_path), output=str(bucket), run_id="r",
                   extra_callbacks=[Record()])
    assert result.manifest.resumed_from_step == 20
    assert steps_seen[0] == 21 and steps_seen[-1] == 30
    assert result.manifest.status == "succeeded"


def test_half_written_checkpoint_is_ignored(tmp_path, tiny_model_dir, triplets_csv):
    recipe_path = tiny_recipe_yaml(tmp_path / "tiny.yaml", tiny_model_dir, triplets_csv, max_steps=20)
    bucket = tmp_path / "bucket"
    with pytest.raises(RuntimeError):
        train(load_recipe(recipe_path), str(recipe_path), output=str(bucket), run_id="r", extra_callbacks=[StopAt(15)])
    checkpoints = bucket / "runs" / "r" / "checkpoints"
    # a kill during an upload leaves a folder without its marker: it must not be used
    broken = checkpoints / "checkpoint-15"
    broken.mkdir()
    (broken / "adapter_model.safetensors").write_bytes(b"partial")
    result = train(load_recipe(recipe_path), str(recipe_path), output=str(bucket), run_id="r")
    assert result.manifest.resumed_from_step == 10


def test_non_finite_loss_stops_the_run_with_one_line(tmp_path, tiny_model_dir, triplets_csv, monkeypatch, capsys):
    from cft.losses.info_nce import InfoNCELoss

    original = InfoNCELoss.forward
    monkeypatch.setattr(InfoNCELoss, "forward", lambda self, *args: original(self, *args) * float("nan"))
    recipe_path = tiny_recipe_yaml(tmp_path / "tiny.yaml", tiny_model_dir, triplets_csv, max_steps=30)
    from cft.cli.main import main

    code = main(["train", "--config", str(recipe_path), "--bucket", str(tmp_path / "bucket"), "--run-id", "nan"])
    assert code == 2
    err = capsys.readouterr().err
    [line] = [line for line in err.splitlines() if line.startswith("cft: error:")]
    assert "Traceback" not in err and line.startswith("cft: error: non-finite training loss")
    manifest = json.loads((tmp_path / "bucket" / "runs" / "nan" / "manifest.json").read_text())
    assert manifest["status"] == "failed" and "non-finite" in manifest["error"]
    assert "adapter" not in {p.name for p in (tmp_path / "bucket" / "runs" / "nan").iterdir()}


def test_grad_cache_recipe_option_trains(tmp_path, tiny_model_dir, triplets_csv):
    recipe_path = tiny_recipe_yaml(tmp_path / "tiny.yaml", tiny_model_dir, triplets_csv, max_steps=10,
                                   grad_cache_chunk_size=5)
    result = train(load_recipe(recipe_path), str(recipe_path), output=str(tmp_path / "bucket"), run_id="gc")
    assert result.manifest.steps == 10
    assert result.manifest.metrics["final_loss"] < result.manifest.metrics["first_loss"]


def test_secret_passed_through_set_is_masked_in_config_and_manifest(tmp_path, tiny_model_dir, triplets_csv,
                                                                    monkeypatch):
    from cft.cli.main import main

    secret = "hf_set_secret_9876"
    monkeypatch.setenv("HF_TOKEN", secret)
    recipe_path = tiny_recipe_yaml(tmp_path / "tiny.yaml", tiny_model_dir, triplets_csv, max_steps=2)
    code = main(["train", "--config", str(recipe_path), "--set", f"name=tiny-{secret}",
                 "--bucket", str(tmp_path / "bucket"), "--run-id", "masked"])
    assert code == 0
    run_dir = tmp_path / "bucket" / "runs" / "masked"
    for name in ("config.yaml", "manifest.json"):
        assert "tiny-***" in (run_dir / name).read_text(), name
    for path in run_dir.rglob("*"):
        assert not path.is_file() or secret.encode() not in path.read_bytes(), path
