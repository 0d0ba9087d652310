"""Single-process checks of the contrastive losses against straightforward reference formulas."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

pytestmark = pytest.mark.unit


def clip_reference(g, t, scale):
    g, t = F.normalize(g, dim=-1), F.normalize(t, dim=-1)
    logits = scale * g @ t.T
    labels = torch.arange(len(g))
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


def acml_reference(g, t, temperature):
    """The authors' code (simple-CLIP style): soft targets, no normalisation."""
    logits = g @ t.T / temperature
    targets = F.softmax((g @ g.T + t @ t.T) / 2 * temperature, dim=-1)
    g_loss = (-targets * F.log_softmax(logits, dim=-1)).sum(1)
    t_loss = (-targets.T * F.log_softmax(logits.T, dim=-1)).sum(1)
    return ((g_loss + t_loss) / 2).mean()


def test_clip_matches_reference_and_masks_drop_rows_and_columns():
    from acml_dist.losses import ContrastiveLoss

    torch.manual_seed(0)
    g, t = torch.randn(6, 5), torch.randn(6, 5)
    loss = ContrastiveLoss("clip")
    torch.testing.assert_close(loss(g, t, None, torch.tensor(10.0)), clip_reference(g, t, 10.0))
    mask = torch.tensor([True, False, True, True, False, True])
    torch.testing.assert_close(loss(g, t, mask, torch.tensor(10.0)), clip_reference(g[mask], t[mask], 10.0))


def test_acml_soft_matches_authors_formula_with_masks():
    from acml_dist.losses import ContrastiveLoss

    torch.manual_seed(1)
    g, t = torch.randn(7, 4), torch.randn(7, 4)
    loss = ContrastiveLoss("acml_soft")
    torch.testing.assert_close(loss(g, t, None, torch.tensor(1.0)), acml_reference(g, t, 1.0))
    torch.testing.assert_close(loss(g, t, None, torch.tensor(2.0)), acml_reference(g, t, 0.5))
    mask = torch.tensor([True, True, False, True, False, True, True])
    torch.testing.assert_close(loss(g, t, mask, torch.tensor(1.0)), acml_reference(g[mask], t[mask], 1.0))


@pytest.mark.parametrize("kind", ["clip", "acml_soft"])
def test_masked_samples_get_no_gradient_and_all_missing_is_zero(kind):
    from acml_dist.losses import ContrastiveLoss

    g = torch.randn(5, 4, requires_grad=True)
    t = torch.randn(5, 4, requires_grad=True)
    mask = torch.tensor([True, False, True, True, False])
    ContrastiveLoss(kind)(g, t, mask, torch.tensor(5.0)).backward()
    assert torch.isfinite(g.grad).all() and torch.isfinite(t.grad).all()
    assert g.grad[~mask].abs().sum() == 0 and t.grad[~mask].abs().sum() == 0
    assert g.grad[mask].abs().sum() > 0
    none = ContrastiveLoss(kind)(g, t, torch.zeros(5, dtype=torch.bool), torch.tensor(5.0))
    assert none.item() == 0.0


def test_unknown_kind_rejected():
    from acml_dist.losses import ContrastiveLoss

    with pytest.raises(ValueError, match="clip or acml_soft"):
        ContrastiveLoss("triplet")
