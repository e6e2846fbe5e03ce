"""InfoNCE against an independent reference computation."""

import math

import numpy as np
import pytest
import torch

from cft.losses import InfoNCELoss, MatryoshkaInfoNCELoss


def reference_info_nce(anchors, positives, negatives, temperature):
    """Plain-Python InfoNCE: for anchor i, softmax over all positives and negatives, target positive i."""
    def unit(v):
        return v / np.linalg.norm(v)

    candidates = [unit(p) for p in positives] + [unit(n) for n in (negatives if negatives is not None else [])]
    total = 0.0
    for i, anchor in enumerate(anchors):
        a = unit(anchor)
        logits = [float(a @ c) / temperature for c in candidates]
        top = max(logits)
        log_sum = top + math.log(sum(math.exp(x - top) for x in logits))
        total += log_sum - logits[i]
    return total / len(anchors)


@pytest.mark.parametrize("with_negatives", [True, False])
@pytest.mark.parametrize("temperature", [0.05, 1.0])
def test_loss_matches_reference(with_negatives, temperature):
    generator = torch.Generator().manual_seed(0)
    anchors, positives, negatives = (torch.randn(6, 16, generator=generator, dtype=torch.float64) for _ in range(3))
    expected = reference_info_nce(anchors.numpy(), positives.numpy(), negatives.numpy() if with_negatives else None,
                                  temperature)
    loss = InfoNCELoss(temperature)(anchors, positives, negatives if with_negatives else None)
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_pairs_without_negatives_mix_with_triplets():
    generator = torch.Generator().manual_seed(1)
    anchors, positives = torch.randn(4, 8, generator=generator), torch.randn(4, 8, generator=generator)
    negatives = torch.randn(2, 8, generator=generator)  # only two rows had a hard negative
    expected = reference_info_nce(anchors.double().numpy(), positives.double().numpy(), negatives.double().numpy(), 0.1)
    assert InfoNCELoss(0.1)(anchors, positives, negatives).item() == pytest.approx(expected, rel=1e-4)


def test_loss_is_fp32_for_bf16_inputs():
    generator = torch.Generator().manual_seed(2)
    anchors, positives = torch.randn(4, 8, generator=generator), torch.randn(4, 8, generator=generator)
    full = InfoNCELoss(0.05)(anchors, positives)
    half = InfoNCELoss(0.05)(anchors.bfloat16(), positives.bfloat16())
    assert half.dtype == torch.float32
    assert half.item() == pytest.approx(full.item(), rel=0.05)


def test_perfect_match_gives_low_loss():
    embeddings = torch.eye(5)
    assert InfoNCELoss(0.05)(embeddings, embeddings).item() < 1e-6


def test_temperature_must_be_positive():
    with pytest.raises(ValueError, match="temperature must be > 0"):
        InfoNCELoss(0.0)


def test_several_negatives_per_row_are_all_candidates():
    """Three hard negatives for each of four anchors: twelve negatives, each a candidate of every anchor."""
    generator = torch.Generator().manual_seed(3)
    anchors, positives = (torch.randn(4, 8, generator=generator, dtype=torch.float64) for _ in range(2))
    negatives = torch.randn(12, 8, generator=generator, dtype=torch.float64)
    expected = reference_info_nce(anchors.numpy(), positives.numpy(), negatives.numpy(), 0.05)
    assert InfoNCELoss(0.05)(anchors, positives, negatives).item() == pytest.approx(expected, rel=1e-5)
    assert InfoNCELoss(0.05)(anchors, positives, negatives[:4]).item() != pytest.approx(expected, rel=1e-3)


def test_matryoshka_with_only_the_full_dimension_is_plain_info_nce():
    generator = torch.Generator().manual_seed(4)
    inputs = [torch.randn(6, 16, generator=generator, requires_grad=True) for _ in range(3)]
    plain = InfoNCELoss(0.05)(*inputs)
    plain_grads = torch.autograd.grad(plain, inputs)
    matryoshka = MatryoshkaInfoNCELoss(0.05, dims=[16])(*inputs)
    matryoshka_grads = torch.autograd.grad(matryoshka, inputs)
    assert matryoshka.item() == pytest.approx(plain.item(), rel=1e-6)
    for want, got in zip(plain_grads, matryoshka_grads):
        torch.testing.assert_close(got, want)


def test_matryoshka_is_the_weighted_sum_over_prefixes():
    generator = torch.Generator().manual_seed(5)
    anchors, positives, negatives = (torch.randn(5, 16, generator=generator, dtype=torch.float64) for _ in range(3))
    dims, weights = [16, 8, 2], [1.0, 0.5, 2.0]
    expected = sum(w * reference_info_nce(anchors[:, :d].numpy(), positives[:, :d].numpy(), negatives[:, :d].numpy(), 0.1)
                   for d, w in zip(dims, weights))
    loss = MatryoshkaInfoNCELoss(0.1, dims=dims, weights=weights)(anchors, positives, negatives)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="matryoshka dim 32 is larger than the embedding"):
        MatryoshkaInfoNCELoss(0.1, dims=[32])(anchors, positives, negatives)
