"""siamface.losses: each vectorised loss against a slow reference loop, masking, reductions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.utils.class_weight import compute_class_weight

from siamface.errors import ConfigError, DatasetError, UnknownNameError
from siamface.losses import (
    BatchHardTripletLoss,
    ContrastiveLoss,
    FocalLoss,
    PairHingeLoss,
    WeightedBCELoss,
    balanced_class_weights,
    batch_hard_triplet_loss,
    contrastive_loss,
    distance_matrix,
    focal_loss,
    pair_distance,
    pair_hinge_loss,
    weighted_bce_loss,
)

torch.manual_seed(0)


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


# --- contrastive -------------------------------------------------------------------------
@pytest.mark.parametrize("margin", [1.0, 0.5, 2.0])
def test_contrastive_matches_reference_loop(margin):
    d = torch.rand(64, dtype=torch.float64) * 2.5
    same = torch.randint(0, 2, (64,))
    expected = []
    for di, yi in zip(d.tolist(), same.tolist()):
        expected.append(yi * di**2 + (1 - yi) * max(0.0, margin - di) ** 2)
    got = contrastive_loss(d, same, margin=margin)
    assert torch.isclose(got, torch.tensor(np.mean(expected), dtype=torch.float64))
    per = ContrastiveLoss(margin, reduction="none")(d, same)
    assert torch.allclose(per, torch.tensor(expected, dtype=torch.float64))
    assert torch.isclose(ContrastiveLoss(margin, reduction="sum")(d, same), per.sum())


def test_contrastive_known_values_and_embeddings():
    d = torch.tensor([0.0, 0.5, 0.5, 1.5])
    same = torch.tensor([1, 1, 0, 0])
    # 0, 0.25, (1-0.5)^2 = 0.25, 0 -> mean 0.125
    assert contrastive_loss(d, same).item() == pytest.approx(0.125)
    a, b = torch.randn(5, 8), torch.randn(5, 8)
    y = torch.tensor([1, 0, 1, 0, 1])
    loss = ContrastiveLoss().from_embeddings(a, b, y)
    assert torch.isclose(loss, contrastive_loss(torch.linalg.norm(a - b, dim=1), y), atol=1e-6)


def test_contrastive_validates():
    with pytest.raises(ConfigError, match="margin"):
        ContrastiveLoss(0.0)
    with pytest.raises(UnknownNameError, match="valid: mean, sum, none"):
        ContrastiveLoss(reduction="avg")
    with pytest.raises(UnknownNameError, match="euclidean"):
        ContrastiveLoss(distance="manhattan")


def test_pair_distance_gradient_finite_at_zero():
    a = torch.zeros(2, 4, requires_grad=True)
    pair_distance(a, torch.zeros(2, 4)).sum().backward()
    assert torch.isfinite(a.grad).all()


# --- weighted BCE ------------------------------------------------------------------------
def test_balanced_class_weights_match_sklearn():
    labels = np.array([0] * 70 + [1] * 30 + [-1] * 5 + [np.nan] * 3)
    known = labels[labels >= 0]
    expected = compute_class_weight("balanced", classes=np.array([0.0, 1.0]), y=known)
    assert np.allclose(balanced_class_weights(labels), expected)
    assert np.allclose(balanced_class_weights(torch.tensor([0, 0, 0, 1])), [4 / 6, 4 / 2])
    with pytest.raises(DatasetError, match="no female"):
        balanced_class_weights([0, 0, -1])
    with pytest.raises(DatasetError, match="must be 0, 1"):
        balanced_class_weights([0, 1, 2])


def test_weighted_bce_matches_reference_loop_and_masks_unknown():
    logits = torch.randn(40, dtype=torch.float64)
    labels = torch.tensor([0.0, 1.0, -1.0, float("nan")] * 10, dtype=torch.float64)
    weights = (0.6, 2.5)
    terms = []
    for z, y in zip(logits.tolist(), labels.tolist()):
        if math.isnan(y) or y < 0:
            continue
        p = _sigmoid(z)
        terms.append(-weights[int(y)] * (y * math.log(p) + (1 - y) * math.log(1 - p)))
    got = weighted_bce_loss(logits, labels, weights)
    assert got.item() == pytest.approx(np.mean(terms), rel=1e-9)
    module = WeightedBCELoss(weights, reduction="sum")
    assert module(logits, labels).item() == pytest.approx(np.sum(terms), rel=1e-6)
    per = WeightedBCELoss(weights, reduction="none")(logits, labels)
    assert (per[2::4] == 0).all() and (per[3::4] == 0).all()


def test_weighted_bce_balanced_and_all_unknown_batch():
    loss = WeightedBCELoss.balanced([0, 0, 0, 1])
    assert torch.allclose(loss.class_weights, torch.tensor([4 / 6, 2.0]))
    logits = torch.randn(3, requires_grad=True)
    out = loss(logits, torch.tensor([-1, -1, -1]))
    assert out.item() == 0.0
    out.backward()
    assert torch.equal(logits.grad, torch.zeros(3))
    unweighted = WeightedBCELoss()(logits.detach(), torch.tensor([1, 0, 1]))
    assert torch.isclose(unweighted, torch.nn.functional.binary_cross_entropy_with_logits(
        logits.detach(), torch.tensor([1.0, 0.0, 1.0])))
    with pytest.raises(ConfigError, match="two non-negative"):
        WeightedBCELoss([1.0, 2.0, 3.0])


# --- focal -------------------------------------------------------------------------------
@pytest.mark.parametrize("gamma,alpha", [(2.0, 0.25), (0.0, None), (1.5, 0.7)])
def test_focal_matches_reference_loop(gamma, alpha):
    logits = torch.randn(50, dtype=torch.float64) * 3
    labels = torch.randint(0, 2, (50,)).to(torch.float64)
    labels[::7] = -1
    terms = []
    for z, y in zip(logits.tolist(), labels.tolist()):
        if y < 0:
            continue
        p = _sigmoid(z)
        p_t = p if y == 1 else 1 - p
        a_t = 1.0 if alpha is None else (alpha if y == 1 else 1 - alpha)
        terms.append(-a_t * (1 - p_t) ** gamma * math.log(p_t))
    got = FocalLoss(gamma, alpha)(logits, labels)
    assert got.item() == pytest.approx(np.mean(terms), rel=1e-9)


def test_focal_gamma0_is_bce_and_downweights_easy_examples():
    logits = torch.tensor([4.0, -4.0, 0.1])
    labels = torch.tensor([1.0, 0.0, 1.0])
    assert torch.isclose(focal_loss(logits, labels, gamma=0.0, alpha=None),
                         torch.nn.functional.binary_cross_entropy_with_logits(logits, labels))
    per = focal_loss(logits, labels, gamma=2.0, alpha=None, reduction="none")
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels, reduction="none")
    ratio = per / bce
    assert ratio[0] < 1e-3 and ratio[2] > 0.2
    with pytest.raises(ConfigError, match="alpha"):
        FocalLoss(alpha=1.5)


# --- batch-hard triplet --------------------------------------------------------------------
def _triplet_reference(emb: torch.Tensor, labels: list[int], margin: float, soft: bool) -> float:
    n = len(labels)
    losses = []
    for i in range(n):
        pos = [torch.dist(emb[i], emb[j]).item() for j in range(n)
               if j != i and labels[j] == labels[i]]
        neg = [torch.dist(emb[i], emb[j]).item() for j in range(n) if labels[j] != labels[i]]
        if not pos or not neg:
            continue
        gap = max(pos) - min(neg)
        losses.append(math.log1p(math.exp(gap)) if soft else max(0.0, gap + margin))
    return float(np.mean(losses)) if losses else 0.0


@pytest.mark.parametrize("soft", [False, True])
def test_batch_hard_triplet_matches_reference_loop(soft):
    emb = torch.randn(24, 6, dtype=torch.float64)
    labels = [0, 0, 0, 1, 1, 1, 2, 2, 3, 3, 3, 3, 4, 5, 5, 6, 6, 6, 7, 7, 8, 8, 9, 10]
    got = BatchHardTripletLoss(margin=0.3, soft=soft)(emb, torch.tensor(labels))
    assert got.item() == pytest.approx(_triplet_reference(emb, labels, 0.3, soft), rel=1e-6)


def test_batch_hard_triplet_edge_cases_and_gradients():
    emb = torch.tensor([[0.0, 0.0], [0.0, 0.1], [5.0, 5.0], [5.0, 5.1]], requires_grad=True)
    labels = torch.tensor([0, 0, 1, 1])
    loss = batch_hard_triplet_loss(emb, labels, margin=0.2)
    assert loss.item() == 0.0  # well separated
    loss = batch_hard_triplet_loss(emb, torch.tensor([0, 1, 2, 3]))  # no positives at all
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(emb.grad).all()
    same = torch.zeros(4, 3, requires_grad=True)  # all identical: gap 0, loss = margin
    out = batch_hard_triplet_loss(same, torch.tensor([0, 0, 1, 1]), margin=0.5)
    out.backward()
    assert out.item() == pytest.approx(0.5) and torch.isfinite(same.grad).all()


def test_distance_matrix_kinds():
    x = torch.randn(5, 3, dtype=torch.float64)
    assert torch.allclose(distance_matrix(x), torch.cdist(x, x), atol=1e-6)
    assert torch.allclose(distance_matrix(x, "squared_euclidean"), torch.cdist(x, x) ** 2)
    unit = torch.nn.functional.normalize(x, dim=1)
    assert torch.allclose(distance_matrix(x, "cosine"), 1 - unit @ unit.T)


# --- pair hinge (dlib's metric loss form) ----------------------------------------------------
def _pair_hinge_reference(emb: torch.Tensor, labels: list[int], threshold: float,
                          margin: float) -> float:
    positives, negatives = [], []
    for i in range(len(labels)):
        for j in range(i + 1, len(labels)):
            d = torch.dist(emb[i], emb[j]).item()
            if labels[i] == labels[j]:
                positives.append(max(0.0, d - (threshold - margin)))
            else:
                negatives.append(max(0.0, threshold + margin - d))
    k = min(len(negatives), max(len(positives), 1))
    kept = sorted(negatives, reverse=True)[:k]
    return (sum(positives) + sum(kept)) / (len(positives) + len(kept))


def test_pair_hinge_matches_reference_loop():
    gen = torch.Generator().manual_seed(3)
    emb = torch.randn(20, 8, dtype=torch.float64, generator=gen) * 0.25
    labels = [0, 0, 0, 1, 1, 2, 2, 2, 2, 3, 4, 5, 5, 6, 7, 8, 8, 9, 10, 11]
    got = PairHingeLoss(threshold=0.6, margin=0.04)(emb, torch.tensor(labels))
    want = _pair_hinge_reference(emb, labels, 0.6, 0.04)
    assert want > 0
    assert got.item() == pytest.approx(want, rel=1e-9)


def test_pair_hinge_edge_cases_and_gradients():
    far = torch.tensor([[0.0, 0.0], [0.0, 0.1], [5.0, 5.0], [5.0, 5.1]], requires_grad=True)
    assert pair_hinge_loss(far, torch.tensor([0, 0, 1, 1])).item() == 0.0
    # no genuine pair: the single hardest impostor pair still counts
    close = torch.tensor([[0.0, 0.0], [0.0, 0.3], [3.0, 0.0]], requires_grad=True)
    loss = pair_hinge_loss(close, torch.tensor([0, 1, 2]))
    loss.backward()
    assert loss.item() == pytest.approx(0.64 - 0.3) and torch.isfinite(close.grad).all()
    one = torch.zeros(1, 4, requires_grad=True)
    assert pair_hinge_loss(one, torch.tensor([0])).item() == 0.0
    with pytest.raises(ConfigError,
                       match=r"0 <= margin < threshold, got threshold=0\.5, margin=0\.6"):
        PairHingeLoss(threshold=0.5, margin=0.6)
