"""Files written by the first build still read, and `cft runs` prints what the first build printed for them.

The fixtures (tests/fixtures/first_build) were written by the first build's own code: a manifest with evaluation
scores merged into `metrics` (schema version 1) and an adapter's cft_metadata.json with the model fields spelt out.
"""

import json
import logging
from pathlib import Path

import pytest

from cft.cli.main import main
from cft.modeling.metadata import AdapterMetadata
from cft.registry import list_runs
from cft.storage.bucket import open_bucket
from cft.storage.manifest import read_manifest, record_scores
from notify.manifest import SCHEMA_VERSION, Manifest

FIXTURES = Path(__file__).parent / "fixtures" / "first_build"


def first_build_bucket(root: Path, run_id: str = "r1", **changes) -> Path:
    """A bucket holding the first build's manifest (with `changes`) and adapter metadata."""
    run = root / "runs" / run_id
    (run / "adapter").mkdir(parents=True)
    data = json.loads((FIXTURES / "manifest.json").read_text().replace("ROOT", str(root)))
    (run / "manifest.json").write_text(json.dumps({**data, "run_id": run_id, **changes}, indent=2, sort_keys=True))
    (run / "adapter" / "cft_metadata.json").write_text((FIXTURES / "cft_metadata.json").read_text())
    return root


def test_runs_prints_what_the_first_build_printed(tmp_path, capsys):
    root = first_build_bucket(tmp_path)
    for args, golden in ((["runs", str(root)], "runs.txt"), (["runs", "show", "r1", str(root)], "runs-show.txt")):
        assert main(args) == 0
        assert capsys.readouterr().out == (FIXTURES / golden).read_text().replace("ROOT", str(root))


def test_a_first_build_manifest_reads_as_the_current_schema():
    manifest = Manifest.from_json((FIXTURES / "manifest.json").read_text())
    assert manifest.schema_version == SCHEMA_VERSION
    assert manifest.metrics == {"train_loss": 0.81, "final_loss": 0.52, "first_loss": 1.9}
    assert manifest.scores == {"STS12": 70.0, "STSBenchmark": 87.0, "sts_mean": 78.5}
    assert manifest.resumed_from_step == 60 and manifest.triplets == 3200
    assert Manifest.from_json(manifest.to_json()) == manifest  # and round-trips in the current one


def test_scores_added_to_a_first_build_manifest_keep_everything(tmp_path):
    root = first_build_bucket(tmp_path, note_from_a_newer_build="kept")
    adapter = str(root / "runs" / "r1" / "adapter")
    assert record_scores(adapter, {"SICK-R": 80.123, "sts_mean": 79.0}, "summary.json") is not None
    written = json.loads((root / "runs" / "r1" / "manifest.json").read_text())
    assert written["schema_version"] == SCHEMA_VERSION and written["note_from_a_newer_build"] == "kept"
    assert written["scores"] == {"STS12": 70.0, "STSBenchmark": 87.0, "SICK-R": 80.12, "sts_mean": 79.0}
    assert written["metrics"] == {"train_loss": 0.81, "final_loss": 0.52, "first_loss": 1.9}
    assert read_manifest(open_bucket(root), "r1").scores == written["scores"]


def test_a_first_build_demo_is_scored_by_its_adapter_not_its_baseline(tmp_path):
    """The first build's demo put the base model's score among the metrics; it is the baseline, not a task score."""
    metrics = {"train_loss": 2.1, "final_loss": 1.2, "first_loss": 3.0, "cft-demo-STS (base)": 35.7, "cft-demo-STS": 75.1}
    root = first_build_bucket(tmp_path, run_id="demo", metrics=metrics,
                              eval={"summary": "s", "tasks": ["cft-demo-STS"]})
    (record,) = list_runs(open_bucket(root))
    assert (record.score.label, record.score.value) == ("eval_mean", 75.1)
    assert record.metrics == dict(sorted(metrics.items()))  # `cft runs show` lists the same lines


def test_first_build_adapter_metadata_is_the_model_config():
    metadata = AdapterMetadata.load(FIXTURES)
    assert metadata.model.name_or_path == "HuggingFaceTB/SmolLM2-135M"
    assert (metadata.model.max_length, metadata.model.pooling) == (64, "last_token")
    assert metadata.model.prompt_template == 'This sentence : "{}" means in one word:"'
    assert (metadata.recipe, metadata.run_id, metadata.append_eos, metadata.normalize) == ("smollm2-135m", "r1", True, True)


def test_metadata_round_trips_and_unknown_keys_warn(tmp_path, caplog):
    metadata = AdapterMetadata.load(FIXTURES)
    metadata.save(tmp_path)
    assert AdapterMetadata.load(tmp_path).to_dict() == metadata.to_dict()
    saved = json.loads((tmp_path / "cft_metadata.json").read_text())
    assert saved["model"]["max_length"] == 64 and "base_model" not in saved  # the config, not a copy of its fields
    saved["pooling_head"] = "x"
    saved["model"]["rope_scaling"] = 2
    (tmp_path / "cft_metadata.json").write_text(json.dumps(saved))
    with caplog.at_level(logging.WARNING, logger="cft"):
        assert AdapterMetadata.load(tmp_path).to_dict() == metadata.to_dict()
    assert "ignoring unknown keys model.rope_scaling, pooling_head" in caplog.text


def test_bad_metadata_is_one_clear_error(tmp_path):
    from cft.errors import CFTError

    (tmp_path / "cft_metadata.json").write_text(json.dumps({"model": {"name_or_path": "m", "pooling": "max"}}))
    with pytest.raises(CFTError, match=r"cft_metadata.json: model.pooling must be one of"):
        AdapterMetadata.load(tmp_path)


def test_first_build_keywords_build_the_model_config_and_never_mix_with_it():
    """benchmarks/bench_eval.py still builds metadata with the first build's keywords."""
    from cft.config import ModelConfig

    metadata = AdapterMetadata(base_model="m", max_length=16, dtype="float32")
    assert metadata.model == ModelConfig(name_or_path="m", max_length=16, dtype="float32")
    with pytest.raises(TypeError, match="give the model's fields in `model`"):
        AdapterMetadata(ModelConfig(name_or_path="m"), dtype="float32")  # would silently keep the model's dtype
