"""Last-token pooling and EOS handling, for a sentencepiece and a byte-level BPE tokenizer."""

import pytest
import torch

from cft.config import ModelConfig
from cft.modeling.backbone import load_backbone, load_tokenizer
from cft.modeling.pooling import last_token_positions, pool
from cft.modeling.tokenization import pad_batch, tokenize_with_eos

SHORT = "a cat is sleeping near the river ."
LONGER = ["two kids walks along a red car and then the dog is eating some bread near the beach .", "the band ."]


@pytest.fixture(scope="module", params=["bpe", "sentencepiece"])
def model_and_tokenizer(request, tiny_model_dir, tiny_sp_model_dir):
    folder = tiny_model_dir if request.param == "bpe" else tiny_sp_model_dir
    config = ModelConfig(name_or_path=str(folder), attn_implementation="eager", max_length=64)
    return load_backbone(config).eval(), load_tokenizer(config)


def embed(model, tokenizer, texts, padding_side):
    ids = tokenize_with_eos(tokenizer, texts, 64)
    if padding_side == "right":
        batch = pad_batch(ids, tokenizer.pad_token_id)
    else:
        longest = max(map(len, ids))
        batch = {
            "input_ids": torch.tensor([[tokenizer.pad_token_id] * (longest - len(i)) + i for i in ids]),
            "attention_mask": torch.tensor([[0] * (longest - len(i)) + [1] * len(i) for i in ids]),
        }
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    return pool(hidden, batch["attention_mask"], "last_token"), batch


@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_sentence_embedding_does_not_depend_on_its_batch(model_and_tokenizer, padding_side):
    model, tokenizer = model_and_tokenizer
    alone, _ = embed(model, tokenizer, [SHORT], "right")
    batched, _ = embed(model, tokenizer, [SHORT, *LONGER], padding_side)
    torch.testing.assert_close(batched[0], alone[0], atol=1e-5, rtol=1e-5)


def test_last_pooled_token_is_eos(model_and_tokenizer):
    _, tokenizer = model_and_tokenizer
    for side in ("right", "left"):
        texts = [SHORT, *LONGER]
        ids = tokenize_with_eos(tokenizer, texts, 64)
        _, batch = (None, pad_batch(ids, tokenizer.pad_token_id)) if side == "right" else embed(
            model_and_tokenizer[0], tokenizer, texts, "left")
        positions = last_token_positions(batch["attention_mask"])
        pooled_ids = batch["input_ids"][torch.arange(len(texts)), positions]
        assert pooled_ids.tolist() == [tokenizer.eos_token_id] * len(texts)


def test_eos_survives_truncation(model_and_tokenizer):
    _, tokenizer = model_and_tokenizer
    ids = tokenize_with_eos(tokenizer, [" ".join([LONGER[0]] * 10)], max_length=12)[0]
    assert len(ids) == 12
    assert ids[-1] == tokenizer.eos_token_id
    assert ids.count(tokenizer.eos_token_id) == 1


def test_tokenizer_that_adds_eos_itself_gets_exactly_one(tiny_sp_model_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_sp_model_dir), add_eos_token=True)
    plain = tokenizer(SHORT)["input_ids"]
    assert plain[-1] == tokenizer.eos_token_id  # this tokenizer does append EOS
    ids = tokenize_with_eos(tokenizer, [SHORT], 64)[0]
    assert ids == plain  # and we keep exactly one


def test_missing_pad_token_is_handled(tiny_model_dir):
    tokenizer = load_tokenizer(ModelConfig(name_or_path=str(tiny_model_dir)))
    assert tokenizer.pad_token_id is not None
    assert tokenizer.padding_side == "right"


def test_mean_pooling_ignores_padding():
    hidden = torch.tensor([[[1.0, 1.0], [3.0, 3.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    assert pool(hidden, mask, "mean").tolist() == [[2.0, 2.0]]


def test_unknown_pooling_mode_lists_the_modes():
    with pytest.raises(Exception, match="last_token"):
        pool(torch.zeros(1, 1, 2), torch.ones(1, 1), "cls")
