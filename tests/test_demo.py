"""`cft demo` end to end on a tiny model: the path a newcomer runs (the full SmolLM2 demo is for people)."""

import json
import subprocess
import sys

from cft.demo import sample_data
from cft.demo.pipeline import NLI_SAMPLE, STS_SAMPLE


def test_shipped_sample_is_what_the_generator_writes(tmp_path, monkeypatch):
    monkeypatch.setattr(sample_data, "DATA_DIR", tmp_path)
    nli, sts = sample_data.write()
    assert nli.read_text() == NLI_SAMPLE.read_text()
    assert sts.read_text() == STS_SAMPLE.read_text()


def test_evaluation_scenes_are_not_training_anchors():
    anchors_and_positives = set()
    for line in NLI_SAMPLE.read_text().splitlines()[1:]:
        anchors_and_positives.update(line.split(",")[:2])
    first_sentences = {line.split("\t")[0] for line in STS_SAMPLE.read_text().splitlines()[1:]}
    assert len(first_sentences) > 100
    assert not anchors_and_positives & first_sentences


def test_demo_runs_end_to_end(tmp_path, tiny_model_dir):
    env_output = tmp_path / "runs"
    result = subprocess.run(
        [sys.executable, "-m", "cft", "demo", "--model", str(tiny_model_dir), "--steps", "4", "--batch-size", "4",
         "--bucket", str(env_output), "--run-id", "demo-test"],
        capture_output=True, text=True, timeout=600, env={**__import__("os").environ, "NTFY_TOPIC": ""},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "[1/4] evaluating the base model" in out and "[4/4] before / after" in out
    assert "cft-demo-STS" in out and "Spearman x100" in out
    assert "notification (set NTFY_TOPIC" in out
    assert "sky launch -c cft jobs/train.yaml" in out
    run = env_output / "runs" / "demo-test"
    for name in ("adapter/adapter_model.safetensors", "eval/summary.md", "eval/summary.json", "eval/compare.png",
                 "training.png", "manifest.json"):
        assert (run / name).exists(), name
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "succeeded"
    assert manifest["schema_version"] == 2 and set(manifest["scores"]) == {"cft-demo-STS"}
    assert set(manifest["eval"]["baseline"]) == {"cft-demo-STS"}
