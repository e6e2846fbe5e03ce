"""Evaluation during training on a tiny Llama: the dev score at the right steps, the best checkpoint kept as the
adapter, early stopping, and a resumed run that keeps its best-so-far.

The dev sets are written here from the vocabulary of `conftest`'s triplets: a pair's gold score is how many of
subject and object the two sentences share (0-2), whatever their verbs, which is what training on those triplets
teaches. The tiny model starts near 55 and climbs as it trains. Its "inverted" twin scores 2 - that, so its dev score
falls as training goes on: the best evaluation is the first one, which makes "the adapter is the best checkpoint's,
not the last" and "the best survives a resume" checks that can fail.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cft.config import load_recipe
from cft.errors import CFTError
from cft.evaluation.dev_set import load_dev_set
from cft.modeling.encoder import TextEncoder
from cft.training.run import train
from conftest import OBJECTS, REPO, SUBJECTS, VERBS, StopAt, tiny_recipe_yaml

TEXTS = ["a man is playing a guitar .", "the dog runs across the park .", "three girls are eating some bread ."]


def dev_rows(inverted: bool = False, count: int = 80, seed: int = 7) -> list[tuple[str, str, float]]:
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        subject, obj, verb = rng.choice(SUBJECTS), rng.choice(OBJECTS), rng.choice(VERBS)
        subject2 = subject if rng.random() < 0.5 else rng.choice([s for s in SUBJECTS if s != subject])
        obj2 = obj if rng.random() < 0.5 else rng.choice([o for o in OBJECTS if o != obj])
        verb2 = verb if rng.random() < 0.5 else rng.choice([v for v in VERBS if v != verb])
        shared = (subject == subject2) + (obj == obj2)
        gold = float(2 - shared if inverted else shared)
        rows.append((f"{subject} {verb} {obj} .", f"{subject2} {verb2} {obj2} .", gold))
    return rows


def write_dev_tsv(path: Path, inverted: bool = False) -> Path:
    lines = ["sentence1\tsentence2\tscore"] + [f"{a}\t{b}\t{s}" for a, b, s in dev_rows(inverted)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def run_dir(root: Path, run_id: str) -> Path:
    return root / "bucket" / "runs" / run_id


def logged_scores(state_file: Path) -> list[tuple[int, float]]:
    history = json.loads(state_file.read_text())["log_history"]
    return [(entry["step"], entry["eval_dev_score"]) for entry in history if "eval_dev_score" in entry]


def adapter_with_weights_of(adapter: Path, checkpoint: Path, folder: Path) -> Path:
    """The run's adapter folder (tokenizer, metadata) holding a checkpoint's LoRA weights."""
    shutil.copytree(adapter, folder)
    shutil.copy(checkpoint / "adapter_model.safetensors", folder / "adapter_model.safetensors")
    return folder


# --------------------------------------------------------------------------
# The recipe's fields, checked when it loads


@pytest.mark.parametrize(("sets", "message"), [
    (["train.eval_steps=5"], "train.eval_steps is set (5) but train.eval_data is not"),
    (["train.keep_best=true"], "train.keep_best is set (True) but train.eval_data is not"),
    (["train.early_stopping_patience=3"], "train.early_stopping_patience is set (3) but train.eval_data is not"),
    (["train.eval_data=dev.tsv", "train.eval_steps=0"], "train.eval_steps must be >= 1"),
    (["train.eval_data=dev.tsv", "train.early_stopping_patience=0"], "train.early_stopping_patience must be >= 1"),
    (["train.eval_data=dev.tsv", "train.eval_batch_size=0"], "train.eval_batch_size must be >= 1"),
    (["train.eval_data=dev.txt"], "train.eval_data: 'dev.txt' is not an STS file"),
    (["train.eval_data=data/dev"], "train.eval_data: 'data/dev' is not an STS file"),
    (["train.eval_data=dev.tsv", "train.keep_best=yes please"], "train.keep_best must be true or false"),
])
def test_bad_evaluation_settings_fail_when_the_recipe_loads(sets, message):
    with pytest.raises(CFTError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_recipe(REPO / "recipes" / "smollm2-135m.yaml", sets)


def test_the_dev_recipe_loads_and_names_stsb_dev_relatively():
    recipe = load_recipe(REPO / "recipes" / "smollm2-135m-dev.yaml")
    assert recipe.train.eval_data == "../shared/data/sts/stsb-dev.tsv"
    assert recipe.train.keep_best and recipe.train.early_stopping_patience == 4 and recipe.train.dev_eval_steps == 25
    assert load_recipe(REPO / "recipes" / "smollm2-135m.yaml", ["train.eval_data=d.tsv"]).train.dev_eval_steps == 100


def test_cli_refuses_a_missing_dev_file_in_one_line_before_training(tmp_path, tiny_model_dir, triplets_csv, capsys):
    from cft.cli.main import main

    recipe = tiny_recipe_yaml(tmp_path / "r.yaml", tiny_model_dir, triplets_csv, max_steps=2)
    code = main(["train", "--config", str(recipe), "--bucket", str(tmp_path / "b"), "--run-id", "x",
                 "--set", f"train.eval_data={tmp_path / 'nope.tsv'}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith("cft: error: train.eval_data: ") and "nope.tsv: file not found" in err[-1]
    assert not (tmp_path / "b" / "runs" / "x" / "checkpoints").exists()


# --------------------------------------------------------------------------
# Dev files: .tsv, .csv, .jsonl read alike; bad ones named


def test_tsv_csv_and_jsonl_dev_files_read_the_same(tmp_path):
    import csv

    rows = dev_rows()[:10] + [('he said "hi", twice', "a, b", 1.5)]
    tsv = tmp_path / "d.tsv"
    tsv.write_text("sentence1\tsentence2\tscore\n" + "".join(f"{a}\t{b}\t{s}\n" for a, b, s in rows))
    with (tmp_path / "d.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["score", "sentence1", "sentence2"])
        writer.writerows([(s, a, b) for a, b, s in rows])
    (tmp_path / "d.jsonl").write_text("".join(json.dumps({"sentence1": a, "sentence2": b, "score": s}) + "\n"
                                              for a, b, s in rows))
    sets = [load_dev_set(str(tmp_path / name)) for name in ("d.tsv", "d.csv", "d.jsonl")]
    for devset in sets:
        assert (devset.sentence1, devset.sentence2, devset.gold) == tuple(map(list, zip(*rows)))
        assert devset.name == "d"


@pytest.mark.parametrize(("name", "content", "message"), [
    ("cols.tsv", "a\tb\tscore\nx\ty\t1\n", "missing column(s) sentence1, sentence2"),
    ("score.csv", "sentence1,sentence2,score\nx,y,high\nz,w,1\n", "score.csv:2: score 'high' is not a number"),
    ("line.jsonl", '{"sentence1": "x", "sentence2": "y", "score": 1}\n[1]\n', "line.jsonl:2: each line must be"),
    ("flat.tsv", "sentence1\tsentence2\tscore\nx\ty\t1\nz\tw\t1\n", "every pair has the same score"),
])
def test_bad_dev_files_are_named(tmp_path, name, content, message):
    (tmp_path / name).write_text(content)
    with pytest.raises(CFTError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_dev_set(str(tmp_path / name))


# --------------------------------------------------------------------------
# Scored and logged at the right steps, with cft eval's score


@pytest.fixture(scope="module")
def scored_run(tmp_path_factory, tiny_model_dir, triplets_csv):
    root = tmp_path_factory.mktemp("dev-scored")
    dev = write_dev_tsv(root / "dev.tsv")
    recipe = tiny_recipe_yaml(root / "r.yaml", tiny_model_dir, triplets_csv, max_steps=14, save_steps=7,
                              eval_steps=4, eval_data=str(dev), report_to="tensorboard")
    cft_logger = logging.getLogger("cft")
    level = cft_logger.level
    cft_logger.setLevel(logging.INFO)  # as `cft train` sets it: the run's log file records INFO lines
    try:
        result = train(load_recipe(recipe), str(recipe), output=str(root / "bucket"), run_id="scored")
    finally:
        cft_logger.setLevel(level)
    return root, dev, result


def test_dev_score_is_logged_every_eval_steps_and_at_the_last_step(scored_run):
    root, _, result = scored_run
    state = json.loads((run_dir(root, "scored") / "checkpoints" / "checkpoint-14" / "trainer_state.json").read_text())
    evaluations = [entry for entry in state["log_history"] if "eval_dev_score" in entry]
    assert [entry["step"] for entry in evaluations] == [4, 8, 12, 14]
    assert all(entry["eval_dev_seconds"] > 0 for entry in evaluations)
    scores = [entry["eval_dev_score"] for entry in evaluations]
    assert scores[-1] > scores[0]  # the tiny model learns what the dev set measures
    metrics = result.manifest.metrics
    assert metrics["dev_score"] == scores[-1] and metrics["best_dev_score"] == max(scores)
    assert metrics["best_step"] == evaluations[scores.index(max(scores))]["step"] and metrics["dev_evaluations"] == 4
    assert "stopped_early_at_step" not in metrics
    log = next((run_dir(root, "scored") / "logs").glob("train-*.log")).read_text()
    assert "step 8: dev score" in log and "on dev (80 pairs" in log


def test_dev_score_reaches_tensorboard_as_eval_dev_score(scored_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    root, _, result = scored_run
    events = EventAccumulator(str(run_dir(root, "scored") / "tensorboard"))
    events.Reload()
    points = [(event.step, round(event.value, 4)) for event in events.Scalars("eval/dev_score")]
    assert points[-1] == (14, pytest.approx(result.manifest.metrics["dev_score"], abs=1e-3))
    assert [step for step, _ in points] == [4, 8, 12, 14] and "eval/dev_seconds" in events.Tags()["scalars"]


def test_dev_score_equals_mtebs_score_of_the_adapter(scored_run):
    """The score during training is what `cft eval` (MTEB's STS evaluator) gives the saved adapter on that file."""
    from cft.evaluation.local_tasks import sts_file_task
    from cft.evaluation.runner import TaskSet, evaluate_encoder

    root, dev, result = scored_run
    encoder = TextEncoder.from_adapter(run_dir(root, "scored") / "adapter", device="cpu")
    task = sts_file_task(dev, "TinyDev", "the test's dev pairs")
    run = evaluate_encoder(encoder, TaskSet([task], {}, str(dev)), use_cache=False, show_progress=False)
    assert run.summary["tasks"]["TinyDev"] == pytest.approx(result.manifest.metrics["dev_score"], abs=1e-3)


def test_training_plot_has_the_dev_panel(scored_run):
    from PIL import Image

    root, _, _ = scored_run
    width, height = Image.open(run_dir(root, "scored") / "training.png").size
    assert width > 1.5 * height  # two panels side by side: the loss alone is 960 x 540


# --------------------------------------------------------------------------
# The best checkpoint kept (never rotated away) and published; early stopping


@pytest.fixture(scope="module")
def falling_run(tmp_path_factory, tiny_model_dir, triplets_csv):
    root = tmp_path_factory.mktemp("dev-falling")
    dev = write_dev_tsv(root / "inverted.tsv", inverted=True)
    recipe = tiny_recipe_yaml(root / "r.yaml", tiny_model_dir, triplets_csv, max_steps=30, save_steps=5,
                              save_total_limit=1, eval_steps=2, eval_data=str(dev), keep_best=True,
                              early_stopping_patience=2)
    result = train(load_recipe(recipe), str(recipe), output=str(root / "bucket"), run_id="falling")
    return root, result


def test_early_stopping_stops_after_patience_evaluations_without_improvement(falling_run):
    root, result = falling_run
    metrics, steps = result.manifest.metrics, result.manifest.steps
    assert steps < 30
    assert metrics["stopped_early_at_step"] == steps == metrics["best_step"] + 2 * 2
    state = json.loads((run_dir(root, "falling") / "manifest.json").read_text())
    assert state["metrics"]["stopped_early_at_step"] == steps


def test_kept_adapter_is_the_best_checkpoints_not_the_last(falling_run, tmp_path):
    root, result = falling_run
    folder, metrics = run_dir(root, "falling"), result.manifest.metrics
    best = metrics["best_step"]
    assert best < result.manifest.steps and metrics["adapter_step"] == best  # else this test could not fail
    kept = sorted(path.name for path in (folder / "checkpoints").iterdir())
    assert f"checkpoint-{best}" in kept and (folder / "checkpoints" / f"checkpoint-{best}" / "_COMPLETE").exists()
    adapter = TextEncoder.from_adapter(folder / "adapter", device="cpu").encode(TEXTS)
    best_weights = adapter_with_weights_of(folder / "adapter", folder / "checkpoints" / f"checkpoint-{best}",
                                           tmp_path / "best")
    np.testing.assert_array_equal(adapter, TextEncoder.from_adapter(best_weights, device="cpu").encode(TEXTS))
    # and not a later one: the newest checkpoint (saved on schedule after the best) embeds differently
    newest = max((folder / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    assert newest.name != f"checkpoint-{best}"
    last = adapter_with_weights_of(folder / "adapter", newest, tmp_path / "last")
    assert not np.allclose(adapter, TextEncoder.from_adapter(last, device="cpu").encode(TEXTS))


def test_success_notification_names_the_best_step_and_score(falling_run):
    from notify.report import RunFacts, succeeded

    _, result = falling_run
    metrics = result.manifest.metrics
    note = succeeded(RunFacts(name="falling", command="cft train", run_id="falling", host="h", log="l",
                              manifest=result.manifest))
    assert f"best dev score: **{metrics['best_dev_score']:.2f}** at step {metrics['best_step']}" in note.message
    assert f"stopped early at step {metrics['stopped_early_at_step']}" in note.message
    assert note.message.count("best_step") == 0 and f"dev_score: **{metrics['dev_score']:.4g}**" in note.message


# --------------------------------------------------------------------------
# A resumed run keeps its best-so-far (and its count of evaluations without improvement)


def test_resumed_run_keeps_best_so_far_and_patience(tmp_path, tiny_model_dir, triplets_csv):
    dev = write_dev_tsv(tmp_path / "inverted.tsv", inverted=True)
    recipe = tiny_recipe_yaml(tmp_path / "r.yaml", tiny_model_dir, triplets_csv, max_steps=12, save_steps=4,
                              eval_steps=2, eval_data=str(dev), keep_best=True, early_stopping_patience=3)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(load_recipe(recipe), str(recipe), output=str(tmp_path / "bucket"), run_id="resumed",
              extra_callbacks=[StopAt(5)])
    folder = run_dir(tmp_path, "resumed")
    before = logged_scores(folder / "checkpoints" / "checkpoint-4" / "trainer_state.json")
    assert [step for step, _ in before] == [2, 4] and before[0][1] > before[1][1]  # best at 2, one miss at 4

    result = train(load_recipe(recipe), str(recipe), output=str(tmp_path / "bucket"), run_id="resumed")
    metrics = result.manifest.metrics
    assert result.manifest.resumed_from_step == 4
    # best at step 2 (before the crash), then misses at 4 (before), 6 and 8: stopped at 8, not 10
    assert (metrics["best_step"], metrics["best_dev_score"]) == (2, before[0][1])
    assert metrics["stopped_early_at_step"] == result.manifest.steps == 8
    assert metrics["adapter_step"] == 2
    best = adapter_with_weights_of(folder / "adapter", folder / "checkpoints" / "checkpoint-2", tmp_path / "best")
    np.testing.assert_array_equal(TextEncoder.from_adapter(folder / "adapter", device="cpu").encode(TEXTS),
                                  TextEncoder.from_adapter(best, device="cpu").encode(TEXTS))


# --------------------------------------------------------------------------
# Two processes: rank 0 scores, rank 1 waits for its score, both stop at the same step


def test_two_processes_score_on_rank_zero_and_stop_together(tmp_path, tiny_model_dir, triplets_csv):
    """Under torchrun (gloo on loopback): if rank 1 did not get rank 0's score, only rank 0 would stop early and
    rank 1 would wait forever in the next step's gradient all-reduce; the timeout turns that hang into a failure."""
    import os

    from s3_server import free_port

    dev = write_dev_tsv(tmp_path / "inverted.tsv", inverted=True)
    recipe = tiny_recipe_yaml(tmp_path / "r.yaml", tiny_model_dir, triplets_csv, max_steps=20, save_steps=10,
                              batch_size=4, eval_steps=2, eval_data=str(dev), keep_best=True,
                              early_stopping_patience=1)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={free_port()}",
               "-m", "cft", "train", "--config", str(recipe), "--bucket", str(tmp_path / "bucket"), "--run-id", "ddp"]
    result = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "distributed: world size 2" in result.stderr
    manifest = json.loads((run_dir(tmp_path, "ddp") / "manifest.json").read_text())
    metrics = manifest["metrics"]
    assert manifest["world_size"] == 2 and manifest["steps"] < 20
    assert metrics["stopped_early_at_step"] == manifest["steps"] == metrics["best_step"] + 2
    assert result.stderr.count(": dev score ") == metrics["dev_evaluations"]  # logged by rank 0 alone


def test_keep_best_fetches_the_best_checkpoint_from_s3_on_a_fresh_node(tmp_path, monkeypatch, tiny_model_dir,
                                                                         triplets_csv):
    """Recovered on another node, the run never had the best checkpoint locally: it is fetched from the bucket."""
    from safetensors.torch import load as load_tensors

    from s3_server import serving

    dev = write_dev_tsv(tmp_path / "inverted.tsv", inverted=True)
    recipe = tiny_recipe_yaml(tmp_path / "r.yaml", tiny_model_dir, triplets_csv, max_steps=8, save_steps=4,
                              save_total_limit=1, eval_steps=2, eval_data=str(dev), keep_best=True)
    with serving("cft-dev") as server:
        monkeypatch.setenv("CFT_WORK_DIR", str(tmp_path / "node-1"))
        with pytest.raises(RuntimeError, match="simulated crash"):
            train(load_recipe(recipe), str(recipe), output="s3://cft-dev/x", run_id="s3", extra_callbacks=[StopAt(5)])
        monkeypatch.setenv("CFT_WORK_DIR", str(tmp_path / "node-2"))
        result = train(load_recipe(recipe), str(recipe), output="s3://cft-dev/x", run_id="s3")

        def tensors(key: str) -> dict:
            return load_tensors(server.client.get_object(Bucket="cft-dev", Key=f"x/runs/s3/{key}")["Body"].read())

        best = result.manifest.metrics["best_step"]
        assert best == 2 and result.manifest.metrics["adapter_step"] == 2 and result.manifest.resumed_from_step == 4
        published, kept = tensors("adapter/adapter_model.safetensors"), tensors(
            "checkpoints/checkpoint-2/adapter_model.safetensors")
        last = tensors("checkpoints/checkpoint-8/adapter_model.safetensors")
    assert published.keys() == kept.keys()
    assert all((published[name] == kept[name]).all() for name in published)
    assert any((published[name] != last[name]).any() for name in published)


def test_an_mteb_sts_task_gives_its_evaluation_split(tmp_path):
    """What `train.eval_data=STSBenchmark` reads, with mteb's own task class (its data from a local file here, as
    `cft eval --data-dir` reads it: the hub is out of reach in tests)."""
    from cft.evaluation.dev_set import from_task
    from cft.evaluation.local_tasks import local_task
    from cft.evaluation.suites import TaskSpec

    (tmp_path / "sts").mkdir()
    write_dev_tsv(tmp_path / "sts" / "stsb-test.tsv")
    devset = from_task(local_task(TaskSpec("STSBenchmark"), tmp_path), "STSBenchmark")
    expected = load_dev_set(str(tmp_path / "sts" / "stsb-test.tsv"))
    assert devset.name == "STSBenchmark (test)"
    assert (devset.sentence1, devset.sentence2, devset.gold) == (expected.sentence1, expected.sentence2, expected.gold)
