"""`cft export`: the merged and sentence-transformers folders give cft's own embeddings, for BPE and sentencepiece."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from cft.cli.main import main
from cft.config import load_recipe
from cft.errors import CFTError
from cft.export import export_adapter
from cft.export.tokenizer import check_same_ids, eos_appending_tokenizer, long_probe
from cft.modeling.encoder import TextEncoder
from cft.modeling.metadata import AdapterMetadata
from cft.modeling.pooling import pool
from cft.modeling.tokenization import pad_batch, prepare_tokenizer, tokenize_with_eos
from cft.registry import list_runs
from cft.storage.bucket import open_bucket
from cft.training.run import train
from conftest import tiny_recipe_yaml

# Different lengths (so batches are padded), an empty text, and texts longer than max_length (32): truncation must
# keep EOS last exactly as cft does.
TEXTS = [
    "a man is playing a guitar .",
    "the dog runs across the park .",
    "",
    "three girls are eating some bread near the river while an old farmer walks along the beach .",
    " ".join(["two kids look at a red car ."] * 12),
    "x",
    " ".join(["the band is painting a small house ."] * 6),
]
TOLERANCE = 1e-4

# bpe: byte-level BPE, no BOS, no prompt. sp: sentencepiece with BOS, and a prefix prompt template.
KINDS = {"bpe": ("tiny_model_dir", []), "sp": ("tiny_sp_model_dir", ["model.prompt_template=query: {}"])}


@pytest.fixture(scope="module")
def trained(request, tmp_path_factory, triplets_csv):
    """Two tiny runs of 10 steps each, in one local bucket: {kind: adapter folder}."""
    folder = tmp_path_factory.mktemp("export-runs")
    adapters = {}
    for kind, (model_fixture, overrides) in KINDS.items():
        model_dir = request.getfixturevalue(model_fixture)
        recipe_path = tiny_recipe_yaml(folder / f"{kind}.yaml", model_dir, triplets_csv, max_steps=10, save_steps=1000)
        result = train(load_recipe(recipe_path, overrides), str(recipe_path), output=str(folder / "bucket"),
                       run_id=f"export-{kind}")
        adapters[kind] = result.adapter_uri
    return folder, adapters


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory):
    """Both formats of each adapter, exported once: {kind: (adapter, output folder)}."""
    _, adapters = trained
    out = {}
    for kind, adapter in adapters.items():
        target = tmp_path_factory.mktemp(f"exported-{kind}") / "model"
        result = export_adapter(adapter, target, fmt="both", device="cpu")
        assert result.hf_dir == target / "hf" and result.st_dir == target / "st"
        assert set(result.checks) == {"hf", "st"}  # verified at export time too
        out[kind] = (adapter, target)
    return out


def cft_embeddings(adapter: str, texts: list[str] = TEXTS) -> np.ndarray:
    return TextEncoder.from_adapter(adapter, device="cpu").encode(texts, batch_size=3)


@pytest.mark.parametrize("kind", list(KINDS))
def test_sentence_transformers_folder_gives_cft_embeddings(exported, kind):
    from sentence_transformers import SentenceTransformer

    adapter, target = exported[kind]
    expected = cft_embeddings(adapter)
    model = SentenceTransformer(str(target / "st"), device="cpu")
    for batch_size in (32, 2):  # one padded batch, and several
        got = model.encode(TEXTS, batch_size=batch_size, convert_to_numpy=True)
        assert got.dtype == np.float32 and got.shape == expected.shape
        np.testing.assert_allclose(got, expected, atol=TOLERANCE)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    # the tokenizer's own truncation keeps EOS last: a long text ends with EOS at exactly max_length tokens
    tokenizer = model.tokenizer
    ids = tokenizer(TEXTS[4], truncation=True)["input_ids"]
    assert len(ids) == 32 and ids[-1] == tokenizer.eos_token_id


def test_prompt_template_becomes_the_default_prompt(exported):
    from sentence_transformers import SentenceTransformer

    adapter, target = exported["sp"]
    assert AdapterMetadata.load(adapter).model.prompt_template == "query: {}"
    model = SentenceTransformer(str(target / "st"), device="cpu")
    assert model.default_prompt_name == "cft" and model.prompts["cft"] == "query: "
    expected = cft_embeddings(adapter)
    # cft applies the template to every text, so queries and documents both get it
    np.testing.assert_allclose(model.encode_query(TEXTS), expected, atol=TOLERANCE)
    np.testing.assert_allclose(model.encode_document(TEXTS), expected, atol=TOLERANCE)


@pytest.mark.parametrize("kind", list(KINDS))
def test_merged_folder_loads_with_automodel(exported, kind):
    from transformers import AutoModel, AutoTokenizer

    adapter, target = exported[kind]
    hf = target / "hf"
    metadata = json.loads((hf / "cft_metadata.json").read_text())
    assert metadata["merged"] is True and metadata["exported_from"] == adapter and metadata["model"]["max_length"] == 32
    assert not (hf / "adapter_config.json").exists()  # a plain model, no PEFT left

    model = AutoModel.from_pretrained(str(hf)).eval()
    tokenizer = prepare_tokenizer(AutoTokenizer.from_pretrained(str(hf)))
    template = metadata["model"]["prompt_template"]
    batch = pad_batch(tokenize_with_eos(tokenizer, TEXTS, metadata["model"]["max_length"], template), tokenizer.pad_token_id)
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    got = torch.nn.functional.normalize(pool(hidden, batch["attention_mask"], metadata["model"]["pooling"]), dim=-1).numpy()
    np.testing.assert_allclose(got, cft_embeddings(adapter), atol=TOLERANCE)
    # and through cft's own loader for base models
    encoder = TextEncoder.from_base(str(hf), pooling=metadata["model"]["pooling"], max_length=32, prompt_template=template,
                                    device="cpu")
    np.testing.assert_allclose(encoder.encode(TEXTS), cft_embeddings(adapter), atol=TOLERANCE)


def test_adapter_is_really_merged(exported, tiny_model_dir):
    """The check above would pass vacuously if training had left the adapter at zero."""
    adapter, _ = exported["bpe"]
    base = TextEncoder.from_base(str(tiny_model_dir), max_length=32, device="cpu").encode(TEXTS)
    assert not np.allclose(base, cft_embeddings(adapter), atol=1e-3)


def test_trained_runs_list_as_succeeded(trained):
    """Manifests written by a real run pass the registry's schema checks."""
    folder, adapters = trained
    records = {r.run_id: r for r in list_runs(open_bucket(folder / "bucket"))}
    assert {run_id: r.status for run_id, r in records.items()} == {"export-bpe": "succeeded", "export-sp": "succeeded"}
    assert records["export-bpe"].adapter == adapters["bpe"] and records["export-bpe"].score.label == "final_loss"


def test_cli_single_format_and_force(trained, tmp_path, capsys):
    _, adapters = trained
    target = tmp_path / "st-only"
    target.mkdir()
    (target / "old.txt").write_text("keep me unless --force")
    assert main(["export", "--adapter", adapters["bpe"], "--out", str(target), "--format", "st"]) == 2
    err = capsys.readouterr().err
    assert "not empty" in err and "--force" in err and (target / "old.txt").exists()

    assert main(["export", "--adapter", adapters["bpe"], "--out", str(target), "--format", "st", "--force"]) == 0
    out = capsys.readouterr().out
    assert f"sentence-transformers model: {target}" in out and "matches cft" in out
    assert not (target / "old.txt").exists() and (target / "modules.json").exists() and not (target / "hf").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["st-only"]  # no staging folders left behind


def test_failed_export_leaves_nothing(trained, tmp_path, monkeypatch):
    import cft.export.st_model as st_model

    _, adapters = trained

    def explode(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(st_model, "build_st_folder", explode)
    with pytest.raises(RuntimeError, match="disk full"):
        export_adapter(adapters["bpe"], tmp_path / "out", fmt="both", device="cpu")
    assert list(tmp_path.iterdir()) == []


def test_template_with_text_after_the_sentence_is_refused(trained, tmp_path):
    _, adapters = trained
    adapter = tmp_path / "adapter"
    shutil.copytree(adapters["bpe"], adapter)
    metadata = json.loads((adapter / "cft_metadata.json").read_text())
    metadata["model"]["prompt_template"] = 'This sentence: "{}" means in one word: "'
    (adapter / "cft_metadata.json").write_text(json.dumps(metadata))
    with pytest.raises(CFTError, match="puts text after the sentence.*--format hf"):
        export_adapter(str(adapter), tmp_path / "out", fmt="st")
    assert not (tmp_path / "out").exists()
    # the merged model has no such limit: cft's metadata carries the template
    result = export_adapter(str(adapter), tmp_path / "out", fmt="hf", device="cpu", verify=False)
    assert json.loads((result.hf_dir / "cft_metadata.json").read_text())["model"]["prompt_template"].endswith('"')


def test_output_must_not_hold_the_adapter(trained):
    _, adapters = trained
    with pytest.raises(CFTError, match="holds the adapter"):
        export_adapter(adapters["bpe"], adapters["bpe"], force=True)


def test_tokenizer_that_appends_eos_itself(tiny_sp_model_dir):
    """Tokenizers configured to add EOS (Llama's add_eos_token) are truncated one token earlier, as cft does."""
    from tokenizers import processors
    from transformers import AutoTokenizer

    tokenizer = prepare_tokenizer(AutoTokenizer.from_pretrained(str(tiny_sp_model_dir)))
    tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="<s>:0 $A:0 </s>:0", pair="<s>:0 $A:0 </s>:0 $B:1 </s>:1",
        special_tokens=[("<s>", tokenizer.bos_token_id), ("</s>", tokenizer.eos_token_id)])
    eos_tokenizer, limit = eos_appending_tokenizer(tokenizer, 32)
    assert limit == 31
    check_same_ids(tokenizer, eos_tokenizer, 32, None, [*TEXTS, long_probe(32)])
    plain = prepare_tokenizer(AutoTokenizer.from_pretrained(str(tiny_sp_model_dir)))
    eos_plain, limit = eos_appending_tokenizer(plain, 32)
    assert limit == 32
    check_same_ids(plain, eos_plain, 32, "query: ", TEXTS)
    with pytest.raises(CFTError, match="does not reproduce"):
        check_same_ids(plain, plain, 32, None, TEXTS)  # the plain tokenizer never appends EOS
