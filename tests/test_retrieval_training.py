"""Asymmetric retrieval training end to end: sentence-transformers data with several hard negatives, a query and a
document template, and a Matryoshka loss; then `cft eval --dim` and `cft export --dim` on the adapter it made."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from mteb.types import PromptType

from cft.cli.main import main
from cft.config import load_recipe
from cft.evaluation import MTEBEncoder
from cft.modeling.embedding import truncate
from cft.modeling.encoder import TextEncoder
from cft.modeling.metadata import AdapterMetadata
from cft.training.run import train
from conftest import OBJECTS, SUBJECTS, VERBS, tiny_recipe_yaml
from test_eval_tasks import sts_pairs, write_sts

ROLES = ["model.query_template=query: {}", "model.document_template=passage: {}",
         "loss.matryoshka_dims=[32, 16, 8]", "loss.matryoshka_weights=[1, 1, 0.5]"]
TEXTS = ["a man is playing a guitar .", "the dog runs across the park .", "x", "three girls eat bread near the river ."]
TOLERANCE = 1e-4


def write_st_rows(path, count=64, seed=3):
    """sentence-transformers' columns, two hard negatives per row (the second sometimes empty)."""
    rng = random.Random(seed)
    rows = []
    for number in range(count):
        subject, obj = rng.choice(SUBJECTS), rng.choice(OBJECTS)
        others = [f"{rng.choice([s for s in SUBJECTS if s != subject])} {rng.choice(VERBS)} "
                  f"{rng.choice([o for o in OBJECTS if o != obj])} ." for _ in range(2)]
        rows.append({"anchor": f"{subject} {rng.choice(VERBS)} {obj} .", "positive": f"{subject} is near {obj} .",
                     "negative_1": others[0], "negative_2": others[1] if number % 3 else ""})
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.fixture(scope="module")
def adapter(tmp_path_factory, tiny_model_dir):
    folder = tmp_path_factory.mktemp("retrieval")
    data = write_st_rows(folder / "st.jsonl")
    recipe_path = tiny_recipe_yaml(folder / "r.yaml", tiny_model_dir, data, max_steps=6, save_steps=1000)
    result = train(load_recipe(recipe_path, ROLES), str(recipe_path), output=str(folder / "bucket"), run_id="roles")
    return result.adapter_uri


def test_the_adapter_records_both_templates_and_the_matryoshka_dims(adapter):
    metadata = AdapterMetadata.load(adapter)
    assert (metadata.model.query_template, metadata.model.document_template) == ("query: {}", "passage: {}")
    assert metadata.matryoshka_dims == [32, 16, 8]
    encoder = TextEncoder.from_adapter(adapter, device="cpu")
    queries, documents = encoder.encode(TEXTS), encoder.encode(TEXTS, role="document")
    assert not np.allclose(queries, documents, atol=1e-3)  # each role gets its own template


def test_eval_gives_queries_the_query_template_documents_the_document_one_and_sts_the_query_one(adapter):
    encoder = TextEncoder.from_adapter(adapter, device="cpu")
    queries, documents = encoder.encode(TEXTS), encoder.encode(TEXTS, role="document")
    model = MTEBEncoder(encoder, show_progress=False)
    loader = [{"text": TEXTS}]
    import mteb

    scifact, sts = mteb.get_task("SciFact").metadata, mteb.get_task("STS12").metadata
    got = {kind: model.encode(loader, task_metadata=task, hf_split="test", hf_subset="default", prompt_type=kind)
           for kind, task in ((PromptType.query, scifact), (PromptType.document, scifact), (None, sts))}
    np.testing.assert_allclose(got[PromptType.query], queries, atol=1e-6)
    np.testing.assert_allclose(got[PromptType.document], documents, atol=1e-6)
    np.testing.assert_allclose(got[None], queries, atol=1e-6)


def test_cft_eval_dim_scores_the_truncated_embedding(adapter, tmp_path, capsys):
    write_sts(tmp_path / "data" / "sts" / "biosses.tsv", sts_pairs(30))
    scores = {}
    for dim in (None, 8):
        out = tmp_path / f"out-{dim}"
        args = ["eval", "--adapter", adapter, "--tasks", "BIOSSES", "--data-dir", str(tmp_path / "data"), "--out",
                str(out), "--no-cache", "--no-progress", "--device", "cpu", *(["--dim", str(dim)] if dim else [])]
        assert main(args) == 0
        summary = json.loads((out / "summary.json").read_text())
        assert summary["models"]["adapter"]["settings"].get("dim") == dim
        scores[dim] = summary["tasks"]["BIOSSES"]
    assert scores[None] != scores[8]  # really another embedding
    assert main(["eval", "--adapter", adapter, "--tasks", "BIOSSES", "--data-dir", str(tmp_path / "data"), "--out",
                 str(tmp_path / "o"), "--no-cache", "--no-progress", "--device", "cpu", "--dim", "64"]) == 2
    assert "--dim 64 is larger than the embedding (32 dimensions)" in capsys.readouterr().err


def test_export_writes_prompts_per_role_and_truncate_dim(adapter, tmp_path):
    from sentence_transformers import SentenceTransformer

    out = tmp_path / "st"
    assert main(["export", "--adapter", adapter, "--out", str(out), "--format", "st", "--dim", "16"]) == 0
    config = json.loads((out / "config_sentence_transformers.json").read_text())
    assert config["truncate_dim"] == 16 and config["default_prompt_name"] == "query"
    assert config["prompts"] == {"query": "query: ", "document": "passage: "}
    card = (out / "README.md").read_text()  # the model card tells users both prompts and the truncation
    assert "Queries are prefixed with 'query: '" in card and "documents with 'passage: '" in card
    assert "first 16 dimensions (`truncate_dim`" in card
    model = SentenceTransformer(str(out), device="cpu")
    encoder = TextEncoder.from_adapter(adapter, device="cpu")
    for role, encode in (("query", model.encode_query), ("document", model.encode_document)):
        got = encode(TEXTS, convert_to_numpy=True, normalize_embeddings=True)
        assert got.shape == (len(TEXTS), 16)
        np.testing.assert_allclose(got, truncate(encoder.encode(TEXTS, role=role), 16), atol=TOLERANCE)


def test_export_refuses_a_template_that_is_more_than_a_prefix(adapter, tmp_path):
    """One rule everywhere: training and eval take any one-{} template; a sentence-transformers prompt can only be a
    prefix, so the export names the template and the way out."""
    from cft.errors import CFTError
    from cft.export import export_adapter
    import shutil

    copy = tmp_path / "adapter"
    shutil.copytree(adapter, copy)
    metadata = json.loads((copy / "cft_metadata.json").read_text())
    metadata["model"]["document_template"] = 'passage: "{}" in one word:'
    (copy / "cft_metadata.json").write_text(json.dumps(metadata))
    with pytest.raises(CFTError, match=r"model.document_template 'passage: \"\{\}\" in one word:' puts text after"):
        export_adapter(str(copy), tmp_path / "out", fmt="st", device="cpu")
    metadata["model"]["document_template"] = "{} and {}"
    (copy / "cft_metadata.json").write_text(json.dumps(metadata))
    with pytest.raises(CFTError, match=r"model.document_template must contain '\{\}' exactly once"):
        export_adapter(str(copy), tmp_path / "out", fmt="st", device="cpu")


def test_the_retrieval_recipe_uses_prompts_per_role_and_matryoshka_and_reads_its_data_unmapped():
    from pathlib import Path

    from cft.data.triplets import resolve_columns
    from cft.export.st_model import st_prompts

    recipe = load_recipe(Path(__file__).resolve().parents[1] / "recipes" / "smollm2-135m-retrieval.yaml")
    prompts = recipe.model.prompts()
    assert not prompts.is_symmetric and max(recipe.loss.matryoshka_dims) == 576  # SmolLM2-135M's hidden size
    assert st_prompts(prompts) == {"query": "query: ", "document": "passage: "}  # exportable as it is
    row = {"query": "q", "positive": "p", "negative": "n"}  # the columns of the dataset's `triplet` config
    columns = resolve_columns(recipe.data, row, "row")
    assert (columns.anchor, columns.positive, columns.of_row(row)) == ("query", "positive", ("negative",))
