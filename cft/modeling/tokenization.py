"""Tokenization that ends every sentence with EOS, for any tokenizer.

Last-token pooling reads the hidden state of the final real token, so that token must be the same, meaningful token
for every sentence. Tokenizers disagree on whether they add EOS (Llama's `add_eos_token`, GPT-2-style BPE never does),
so EOS is appended here at the token-id level, after truncation to `max_length - 1`: no tokenizer file is edited.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import PreTrainedTokenizerBase

from cft.errors import CFTError
from cft.modeling.prompts import apply_template


def prepare_tokenizer(tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    """Makes a tokenizer usable for embedding: it must know EOS, and padding needs a pad token."""
    if tokenizer.eos_token_id is None:
        raise CFTError(f"tokenizer {getattr(tokenizer, 'name_or_path', '')!r} defines no EOS token; last-token pooling needs one")
    if tokenizer.pad_token_id is None:
        # Any id works: padded positions are masked out of attention and pooling.
        tokenizer.pad_token = tokenizer.eos_token
    # We pad on the right: left padding under SDPA gave NaN losses on GPU (fully masked rows), and pooling finds the
    # last real token from the attention mask, so either side gives the same embedding.
    tokenizer.padding_side = "right"
    return tokenizer


def tokenize_with_eos(
    tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], max_length: int, template: str | None = None
) -> list[list[int]]:
    """Token ids per text: the tokenizer's own special tokens (e.g. BOS), truncated, then exactly one EOS."""
    eos = tokenizer.eos_token_id
    encoded = tokenizer(
        [apply_template(template, text) for text in texts],
        add_special_tokens=True,
        truncation=True,
        max_length=max_length - 1,
        return_attention_mask=False,
    )["input_ids"]
    result = []
    for ids in encoded:
        ids = list(ids)
        if ids and ids[-1] == eos:  # tokenizers configured to add EOS themselves: keep exactly one
            ids.pop()
        ids.append(eos)
        result.append(ids)
    return result


def pad_batch(sequences: Sequence[Sequence[int]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pads to the longest sequence of this batch (dynamic padding, never to a fixed length)."""
    longest = max(len(ids) for ids in sequences)
    input_ids = torch.full((len(sequences), longest), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), longest), dtype=torch.long)
    for row, ids in enumerate(sequences):
        input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        attention_mask[row, : len(ids)] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask}
