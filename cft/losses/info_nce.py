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
        anchors (batch, dim), positives (batch, dim), negatives (n_neg, dim) or None. `n_neg` is any number: rows
        with several hard negatives add several, pairs add none; every negative is a candidate for every anchor.

    Returns:
        the mean loss over this process's anchors (a scalar).

    Example:
        >>> import torch
        >>> loss_fn = InfoNCELoss(temperature=0.05)
        >>> anchors, positives, negatives = torch.randn(4, 8), torch.randn(4, 8), torch.randn(6, 8)
        >>> loss = loss_fn(anchors, positives, negatives)  # 6 hard negatives: some rows have two, some none
        >>> loss.shape
        torch.Size([])
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
        # Gathered once, before any normalization, so a subclass that scores several views of the same rows
        # (Matryoshka prefixes) still sends each row across processes once and gets its gradient back once.
        all_positives, offset = gather_with_grad(positives.float())  # (global_batch, dim)
        all_negatives = gather_with_grad(negatives.float())[0] if negatives is not None else None  # (global_neg, dim)
        return self.loss_from_gathered(anchors.float(), all_positives, all_negatives, offset)

    def loss_from_gathered(self, anchors: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor | None,
                           offset: int) -> torch.Tensor:
        """The loss of this process's anchors (batch, dim) against every process's positives and negatives; the
        positive of anchor i is row `offset + i`."""
        anchors = F.normalize(anchors, dim=-1)
        candidates = [F.normalize(positives, dim=-1)]
        if negatives is not None:
            candidates.append(F.normalize(negatives, dim=-1))
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
