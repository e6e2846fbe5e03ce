"""The mteb adapter: texts in, float32 rows out in order, instructions in the right place, and no cache mix-ups."""

from __future__ import annotations

import mteb
import numpy as np
import pytest
import torch
from mteb.types import PromptType

from cft.errors import CFTError
from cft.evaluation import MTEBEncoder, evaluate_encoder
from cft.modeling.prompts import PromptTemplates
from test_eval_tasks import BagOfWordsEncoder, sts_pairs, write_sts

SCIFACT = mteb.get_task("SciFact").metadata
STS12 = mteb.get_task("STS12").metadata


class EchoEncoder:
    """Remembers what it was asked to encode and returns the text length in column 0 (float64, like numpy)."""

    def __init__(self, out="numpy"):
        self.name, self.revision, self.seen, self.out = "test/echo", "echo-1", [], out

    def encode(self, texts, batch_size=64, show_progress=False):
        self.seen.append(list(texts))
        rows = np.array([[len(t), 1.0] for t in texts], dtype=np.float64)
        return torch.tensor(rows, dtype=torch.bfloat16) if self.out == "torch" else rows


def _loader(texts, batch=3):
    return [{"text": texts[i:i + batch]} for i in range(0, len(texts), batch)]


@pytest.mark.parametrize("out", ["numpy", "torch"])
def test_rows_come_back_float32_in_input_order_and_each_text_is_encoded_once(out):
    encoder = EchoEncoder(out)
    texts = ["ccc", "a", "bb", "a", "dddd", "ccc", "e"]
    rows = MTEBEncoder(encoder).encode(_loader(texts), task_metadata=STS12, hf_split="test", hf_subset="default")
    assert rows.dtype == np.float32
    assert rows[:, 0].tolist() == [len(t) for t in texts]
    assert encoder.seen == [["ccc", "a", "bb", "dddd", "e"]]


def test_instructions_go_on_queries_and_documents_only():
    encoder = EchoEncoder()
    model = MTEBEncoder(encoder, query_instruction="query: ", document_instruction="passage: {} (end)")
    model.encode(_loader(["q1"]), task_metadata=SCIFACT, hf_split="test", hf_subset="default", prompt_type=PromptType.query)
    model.encode(_loader(["d1"]), task_metadata=SCIFACT, hf_split="test", hf_subset="default",
                 prompt_type=PromptType.document)
    model.encode(_loader(["s1"]), task_metadata=STS12, hf_split="test", hf_subset="default")
    assert encoder.seen == [["query: q1"], ["passage: d1 (end)"], ["s1"]]


def test_mteb_instruction_uses_the_tasks_own():
    encoder = EchoEncoder()
    model = MTEBEncoder(encoder, query_instruction="mteb")
    model.encode(_loader(["claim"]), task_metadata=SCIFACT, hf_split="test", hf_subset="default",
                 prompt_type=PromptType.query)
    assert encoder.seen == [[f"{SCIFACT.prompt['query']} claim"]]


def test_prompt_template_is_set_on_an_encoder_that_applies_its_own():
    class Templated(EchoEncoder):
        prompts = PromptTemplates()

        def encode(self, texts, batch_size=64, show_progress=False, role="query"):
            self.roles = [*getattr(self, "roles", []), role]
            return super().encode(texts, batch_size, show_progress)

    encoder = Templated()
    model = MTEBEncoder(encoder, prompt_template='This sentence : "{}" means in one word:"')
    model.encode(_loader(["hi"]), task_metadata=STS12, hf_split="test", hf_subset="default")
    assert encoder.prompts == PromptTemplates.symmetric('This sentence : "{}" means in one word:"')
    assert encoder.seen == [["hi"]] and encoder.roles == ["query"]  # the encoder applies it (as TextEncoder does)

    plain = EchoEncoder()  # no prompts attribute: the adapter applies the template
    MTEBEncoder(plain, prompt_template="<{}>").encode(_loader(["hi"]), task_metadata=STS12, hf_split="test",
                                                       hf_subset="default")
    assert plain.seen == [["<hi>"]]


def test_queries_take_the_query_template_documents_the_document_one_and_sts_the_query_one():
    """Per-role templates of an adapter: retrieval queries and documents differ; both STS sides are queries."""
    class Adapter(EchoEncoder):
        prompts = PromptTemplates("query: {}", "passage: {}")

        def encode(self, texts, batch_size=64, show_progress=False, role="query"):
            return super().encode(self.prompts.apply(role, texts), batch_size, show_progress)

    encoder = Adapter()
    model = MTEBEncoder(encoder, query_instruction="find: ")
    model.encode(_loader(["q1"]), task_metadata=SCIFACT, hf_split="test", hf_subset="default", prompt_type=PromptType.query)
    model.encode(_loader(["d1"]), task_metadata=SCIFACT, hf_split="test", hf_subset="default",
                 prompt_type=PromptType.document)
    model.encode(_loader(["s1", "s2"]), task_metadata=STS12, hf_split="test", hf_subset="default")
    assert encoder.seen == [["query: find: q1"], ["passage: d1"], ["query: s1", "query: s2"]]
    assert model.settings["document_template"] == "passage: {}"  # a per-role setup gets its own cache entry


def test_dim_keeps_a_normalized_prefix_and_refuses_more_than_the_embedding():
    class Wide(EchoEncoder):
        def encode(self, texts, batch_size=64, show_progress=False):
            return np.array([[3.0, 4.0, 12.0]] * len(texts))

    rows = MTEBEncoder(Wide(), dim=2).encode(_loader(["a"]), task_metadata=STS12, hf_split="test", hf_subset="default")
    np.testing.assert_allclose(rows, [[0.6, 0.8]], rtol=1e-6)
    assert MTEBEncoder(Wide(), dim=2).settings["dim"] == 2 and "dim" not in MTEBEncoder(Wide()).settings
    with pytest.raises(CFTError, match=r"--dim 4 is larger than the embedding \(3 dimensions\)"):
        MTEBEncoder(Wide(), dim=4).encode(_loader(["a"]), task_metadata=STS12, hf_split="test", hf_subset="default")


def test_an_instruction_with_a_placeholder_follows_the_same_rule():
    with pytest.raises(CFTError, match=r"--document-instruction must contain '\{\}' exactly once"):
        MTEBEncoder(EchoEncoder(), document_instruction="passage: {} {}")


@pytest.mark.parametrize("template", ["no placeholder", "{} and {}"])
def test_a_template_needs_exactly_one_placeholder(template):
    with pytest.raises(CFTError, match="exactly once"):
        MTEBEncoder(EchoEncoder(), prompt_template=template)


def test_wrong_shape_or_nan_is_an_error():
    class Bad(EchoEncoder):
        def encode(self, texts, batch_size=64, show_progress=False):
            return np.full((len(texts), 2), np.nan) if len(texts) > 1 else np.zeros(3)

    model = MTEBEncoder(Bad())
    with pytest.raises(RuntimeError, match="shape"):
        model.encode(_loader(["x"]), task_metadata=STS12, hf_split="test", hf_subset="default")
    with pytest.raises(RuntimeError, match="non-finite"):
        model.encode(_loader(["x", "y"]), task_metadata=STS12, hf_split="test", hf_subset="default")


@pytest.fixture
def data(tmp_path):
    write_sts(tmp_path / "data" / "sts" / "sts12.tsv", sts_pairs(40))
    return tmp_path / "data"


def _run(encoder, data, cache, **kwargs):
    return evaluate_encoder(encoder, "STS12", data_dir=data, cache_dir=cache, show_progress=False, **kwargs)


def test_two_revisions_in_one_process_get_their_own_results(data, tmp_path):
    cache = tmp_path / "cache"
    first = _run(BagOfWordsEncoder(revision="rev-a", seed=0), data, cache)
    second = _run(BagOfWordsEncoder(revision="rev-b", seed=1), data, cache)  # same name, other weights
    assert first.cached == [] and second.cached == []
    assert first.summary["tasks"]["STS12"] != second.summary["tasks"]["STS12"]

    again = _run(BagOfWordsEncoder(revision="rev-a", seed=0), data, cache)
    assert again.cached == ["STS12"] and again.texts_encoded == 0
    assert again.summary["tasks"]["STS12"] == pytest.approx(first.summary["tasks"]["STS12"], abs=1e-3)


def test_other_data_or_other_prompt_is_not_served_from_the_cache(data, tmp_path):
    cache = tmp_path / "cache"
    first = _run(BagOfWordsEncoder(), data, cache)
    prompted = _run(BagOfWordsEncoder(), data, cache, prompt_template="the {}")
    assert prompted.cached == []
    write_sts(data / "sts" / "sts12.tsv", sts_pairs(40, seed=7))
    changed = _run(BagOfWordsEncoder(), data, cache)
    assert changed.cached == []
    assert changed.results[0].dataset_revision != first.results[0].dataset_revision


def test_an_encoder_without_revision_is_never_cached(data, tmp_path):
    cache = tmp_path / "cache"
    _run(BagOfWordsEncoder(revision=None), data, cache)
    assert _run(BagOfWordsEncoder(revision=None), data, cache).cached == []


def test_text_encoder_settings_are_part_of_the_cache_key(data, tmp_path, tiny_model_dir):
    """`TextEncoder.from_base` gives every base model revision "base": pooling and length must still count."""
    from cft.modeling.encoder import TextEncoder

    cache = tmp_path / "cache"
    last = _run(TextEncoder.from_base(str(tiny_model_dir), device="cpu", dtype="float32"), data, cache)
    mean = _run(TextEncoder.from_base(str(tiny_model_dir), pooling="mean", device="cpu", dtype="float32"), data, cache)
    assert last.cached == [] and mean.cached == []
    assert last.summary["tasks"]["STS12"] != mean.summary["tasks"]["STS12"]
    assert last.settings["encoder"]["pooling"] == "last_token"
    again = _run(TextEncoder.from_base(str(tiny_model_dir), device="cpu", dtype="float32"), data, cache)
    assert again.cached == ["STS12"]
