"""Pre-tokenized rows and the collator that makes one padded batch of anchors, positives and negatives.

Texts are tokenized once, up front, with the fast tokenizer's batch call (per-step tokenization in Python starves the
GPU). Each step then stacks anchors, positives and hard negatives into a single (rows, longest) tensor so the backbone
runs once per step, padded only to the longest sentence of that batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch.utils.data import Dataset
from tqdm.auto import tqdm

from cft.data.triplets import Triplet
from cft.losses.info_nce import split_embeddings
from cft.modeling.prompts import PromptTemplates
from cft.modeling.tokenization import pad_batch, tokenize_with_eos

# split_embeddings (the loss's view of these rows) is re-exported for benchmarks/bench_train.py until it is split.
__all__ = ["TokenizedTriplets", "TripletCollator", "split_embeddings"]


class TokenizedTriplets(Dataset):
    """Token ids (EOS appended) of every row; items are dicts of id lists.

    `anchor` and `positive` are one id list each, `negatives` a list of them (empty for a pair). `negative` (the
    first one, or None) is kept for readers written when a row had at most one (benchmarks/bench_train.py).
    Anchors take the query template and positives and negatives the document template (`prompts`), as the
    evaluation and the export do.
    """

    def __init__(self, triplets: list[Triplet], tokenizer: Any, max_length: int,
                 prompts: PromptTemplates | str | None = None, chunk_size: int = 4096,
                 show_progress: bool = True) -> None:
        prompts = prompts if isinstance(prompts, PromptTemplates) else PromptTemplates.symmetric(prompts)
        self.items: list[dict[str, Any]] = []
        for start in tqdm(range(0, len(triplets), chunk_size), desc="tokenizing", unit="chunk",
                          disable=not show_progress, leave=False):
            chunk = triplets[start:start + chunk_size]
            anchors = tokenize_with_eos(tokenizer, [t.anchor for t in chunk], max_length, prompts.query)
            positives = tokenize_with_eos(tokenizer, [t.positive for t in chunk], max_length, prompts.document)
            flat = [text for t in chunk for text in t.negatives]
            negatives = iter(tokenize_with_eos(tokenizer, flat, max_length, prompts.document) if flat else ())
            for triplet, anchor, positive in zip(chunk, anchors, positives):
                own = [next(negatives) for _ in triplet.negatives]
                self.items.append({"anchor": anchor, "positive": positive, "negatives": own,
                                   "negative": own[0] if own else None})

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.items[index]

    def token_count(self) -> int:
        return sum(len(item["anchor"]) + len(item["positive"]) + sum(map(len, item["negatives"]))
                   for item in self.items)


@dataclass
class TripletCollator:
    """Rows are [anchors..., positives..., every hard negative of every item...]; `n_anchors` and `n_negatives`
    say where each part is,
    `lengths` and `n_tokens` give the real (unpadded) token counts as plain ints."""

    pad_token_id: int

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        anchors = [item["anchor"] for item in items]
        positives = [item["positive"] for item in items]
        negatives = [ids for item in items for ids in item["negatives"]]
        rows = anchors + positives + negatives
        batch: dict[str, Any] = pad_batch(rows, self.pad_token_id)
        batch["n_anchors"] = len(anchors)
        batch["n_negatives"] = len(negatives)
        batch["lengths"] = [len(ids) for ids in rows]  # host-side, so planning never waits on the GPU
        batch["n_tokens"] = sum(batch["lengths"])
        return batch
