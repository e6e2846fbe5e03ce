"""InfoNCE over in-batch and hard negatives, shared across all processes."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cft.losses.gather import gather_with_grad


class InfoNCELoss(nn.Module):
    """Contrastive loss that pulls each anchor to its positive and away from every other candidate.

    For anchor *i* the candidates are all positives and all hard negatives of the (global) batch; the positive of
    *i* is the target. With normalized embeddings and ``scale = 1 / temperature``:

        loss_i = -log( exp(s * cos(a_i, p_i)) / sum_c exp(s * cos(a_i, c)) )

    This is SimCSE's supervised objective (Gao et al., 2021, arXiv 2104.08821) as used by LM-STS-CFT
    (arXiv 2408.00690). Similarities and cross-entropy are computed in fp32 whatever the model dtype, since bf16
    logits divided by a temperature of 0.05 lose most of their precision.

    Under torch.distributed, positives and negatives of all processes are gathered with exact gradients
    (`cft.losses.gather`), so every anchor sees the global batch; with one plain process nothing is gathered.

    Args:
        temperature: softmax temperature; smaller is sharper (the paper: 0.05).

    Inputs:
        anchors (batch, dim), positives (batch, dim), negatives (n_neg, dim) or None. `n_neg` may be smaller than
        `batch` when some rows are pairs without a hard negative.

    Returns:
        the mean loss over this process's anchors (a scalar).
    """

    def __init__(self, temperature: float = 0.05) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0 (got {temperature})")
        self.temperature = temperature

    @property
    def scale(self) -> float:
        return 1.0 / self.temperature

    def forward(self, anchors: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor | None = None) -> torch.Tensor:
        anchors = F.normalize(anchors.float(), dim=-1)  # (batch, dim)
        positives = F.normalize(positives.float(), dim=-1)  # (batch, dim)
        all_positives, offset = gather_with_grad(positives)  # (global_batch, dim)
        candidates = [all_positives]
        if negatives is not None:
            negatives = F.normalize(negatives.float(), dim=-1)
            all_negatives, _ = gather_with_grad(negatives)  # (global_negatives, dim)
            candidates.append(all_negatives)
        scores = anchors @ torch.cat(candidates).T * self.scale  # (batch, global_batch + global_negatives)
        labels = torch.arange(anchors.shape[0], device=anchors.device) + offset
        return F.cross_entropy(scores, labels)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"


def split_embeddings(embeddings: torch.Tensor, n_anchors: int,
                     n_negatives: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The loss's three inputs from one pass over the collator's rows [anchors..., positives..., negatives...]:
    (rows, dim) -> anchors (n, dim), positives (n, dim), negatives (n_negatives, dim)."""
    anchors = embeddings[:n_anchors]
    positives = embeddings[n_anchors:2 * n_anchors]
    negatives = embeddings[2 * n_anchors:2 * n_anchors + n_negatives]
    return anchors, positives, negatives
