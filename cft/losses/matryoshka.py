"""InfoNCE on every prefix of the embedding at once (Matryoshka representation learning)."""

from __future__ import annotations

import torch

from cft.losses.info_nce import InfoNCELoss


class MatryoshkaInfoNCELoss(InfoNCELoss):
    """InfoNCE summed over truncated embeddings, so the first `d` dimensions are an embedding of their own.

    For each `d` in `dims` the embeddings are cut to their first `d` dimensions, re-normalized, and scored with
    InfoNCE; the loss is the weighted sum ``sum_d w_d * InfoNCE(a[:, :d], p[:, :d], n[:, :d])``, as
    sentence-transformers' MatryoshkaLoss sums it (Kusupati et al., 2022, arXiv 2205.13147). An embedding can then
    be truncated at inference (`cft eval --dim 256`, the export's `truncate_dim`) for smaller indexes at some loss
    of quality. With `dims` = [the full dimension] it is plain InfoNCE.

    Positives and negatives are gathered across processes once, at full width, with exact gradients
    (`cft.losses.gather`); every prefix is cut from the gathered rows.

    Args:
        temperature: as for `InfoNCELoss`.
        dims: prefix sizes, each at most the embedding's dimension (checked on the first batch).
        weights: one per dim (default: all 1).

    Inputs and returns: as `InfoNCELoss`.

    Example:
        >>> import torch
        >>> loss_fn = MatryoshkaInfoNCELoss(0.05, dims=[8, 4, 2])
        >>> loss_fn(torch.randn(4, 8), torch.randn(4, 8), torch.randn(4, 8)).shape
        torch.Size([])
    """

    def __init__(self, temperature: float = 0.05, dims: list[int] | tuple[int, ...] = (),
                 weights: list[float] | tuple[float, ...] | None = None) -> None:
        super().__init__(temperature)
        if not dims or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in dims):
            raise ValueError(f"dims must be one or more integers >= 1 (got {list(dims)})")
        weights = [1.0] * len(dims) if weights is None else list(weights)
        if len(weights) != len(dims) or any(not w > 0 for w in weights):
            raise ValueError(f"weights must be {len(dims)} numbers > 0, one per dim (got {weights})")
        self.dims, self.weights = list(dims), weights

    def loss_from_gathered(self, anchors: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor | None,
                           offset: int) -> torch.Tensor:
        width = anchors.shape[-1]
        if max(self.dims) > width:
            raise ValueError(f"matryoshka dim {max(self.dims)} is larger than the embedding ({width} dimensions)")
        total = anchors.new_zeros(())
        for dim, weight in zip(self.dims, self.weights):
            cut = None if negatives is None else negatives[:, :dim]
            total = total + weight * super().loss_from_gathered(anchors[:, :dim], positives[:, :dim], cut, offset)
        return total

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, dims={self.dims}, weights={self.weights}"
