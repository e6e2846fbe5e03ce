"""Turns token hidden states into one vector per sentence.

`last_token` takes the hidden state at the last position whose attention mask is 1, found from the mask itself, so
it is right for right padding, left padding, and batches with no padding at all. With EOS appended by
`tokenize_with_eos`, that position is always EOS: in a causal LM the only token that has seen the whole sentence.
"""

from __future__ import annotations

from typing import Any

import torch

from cft.config import POOLING_MODES
from cft.errors import CFTError


def last_token_positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """Index of the last 1 in each row of the mask: (batch,)."""
    seq_len = attention_mask.shape[1]
    flipped_first_one = attention_mask.flip(dims=[1]).to(torch.long).argmax(dim=1)
    return seq_len - 1 - flipped_first_one


def pool(hidden_states: torch.Tensor, attention_mask: torch.Tensor, mode: str = "last_token") -> torch.Tensor:
    """hidden_states (batch, seq, dim), attention_mask (batch, seq) -> (batch, dim)."""
    if mode == "last_token":
        positions = last_token_positions(attention_mask)
        return hidden_states[torch.arange(hidden_states.shape[0], device=hidden_states.device), positions]
    if mode == "mean":
        mask = attention_mask.unsqueeze(-1).to(hidden_states.dtype)
        return (hidden_states * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)
    raise CFTError(f"pooling must be one of {POOLING_MODES} (got {mode!r})")


def embed_batch(model: Any, batch: dict[str, torch.Tensor], pooling: str) -> torch.Tensor:
    """One forward pass of the backbone, pooled: (batch, dim) in the model's dtype. Training and inference both
    embed through it, so the vector evaluated is the vector trained."""
    outputs = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    return pool(outputs.last_hidden_state, batch["attention_mask"], pooling)
