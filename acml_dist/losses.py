"""Contrastive losses with negatives gathered across ranks (open_clip "local loss" + gather-with-grad).

Each rank builds its local rows against the embeddings all-gathered from every rank (gradients flow back
through the gather: torch.distributed.nn.functional.all_gather), labels offset by rank. Missing modalities
are masked: a masked sample contributes no row and no column on any rank.

Scaling: each rank returns `world * (sum of its rows' losses) / (2 * valid rows on all ranks)`, so the mean
over ranks (what DDP / DeepSpeed gradient averaging computes) is exactly the global-batch loss and its
gradient, even when ranks hold different numbers of valid samples.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import Tensor

# The autograd all_gather is deprecated in favour of a private API; it is the public one that works on gloo.
warnings.filterwarnings("ignore", message="torch.distributed.nn.functional.all_gather is deprecated")

# Finite fill for masked logits: -inf would turn 0 * log(0) into NaN gradients in the soft-target loss.
_MASKED = -1e9


def _world() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def gather_with_grad(x: Tensor) -> Tensor:
    """Concatenate `x` from every rank along dim 0; the gradient of every rank's use flows back to `x`."""
    _, world = _world()
    if world == 1:
        return x
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(x.contiguous()), dim=0)


def gather_no_grad(x: Tensor) -> Tensor:
    _, world = _world()
    if world == 1:
        return x
    import torch.distributed as dist

    parts = [torch.empty_like(x) for _ in range(world)]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts, dim=0)


def _pad_rows(x: Tensor, rows: int) -> Tensor:
    return x if x.size(0) == rows else torch.cat([x, x.new_zeros(rows - x.size(0), *x.shape[1:])], dim=0)


class ContrastiveLoss(torch.nn.Module):
    """`kind`: "clip" (L2-normalised InfoNCE, both directions) or "acml_soft" (the ACML authors'
    soft-target CLIP: targets = softmax((GG^T + MM^T)/2 * T), logits = GM^T / T, no normalisation).
    `gather`: use negatives from every rank (False: each rank's batch alone)."""

    def __init__(self, kind: str = "clip", gather: bool = True) -> None:
        super().__init__()
        if kind not in ("clip", "acml_soft"):
            raise ValueError(f"loss.kind must be clip or acml_soft, got {kind!r}")
        self.kind, self.gather = kind, gather

    def forward(self, g: Tensor, t: Tensor, mask: Tensor | None, scale: Tensor) -> Tensor:
        """g: graph projections (B, P); t: teacher projections (B, P); mask (B,) bool, True where the
        modality exists; scale: logit scale (1 / temperature). Returns this rank's share of the loss."""
        g, t, scale = g.float(), t.float(), scale.float()
        rank, world = _world() if self.gather else (0, 1)
        # The all-valid shortcut is taken where checking the mask costs no device sync (on a GPU, reading
        # mask.all() back would stall the host once per step and teacher).
        all_valid = mask is None or (mask.device.type == "cpu" and bool(mask.all()))
        if world == 1 and self.kind == "clip" and all_valid:
            return self._clip_all_valid(g, t, scale)
        mask = torch.ones(g.size(0), dtype=torch.bool, device=g.device) if mask is None else mask.bool()
        if world > 1:
            # Ranks may hold different batch sizes (a last, smaller batch): pad to the largest, masked.
            sizes = gather_no_grad(torch.tensor([g.size(0)], device=g.device))
            rows = int(sizes.max())
            g, t, mask = _pad_rows(g, rows), _pad_rows(t, rows), _pad_rows(mask, rows)
        if self.kind == "clip":
            g, t = F.normalize(g, dim=-1), F.normalize(t, dim=-1)
        gather = gather_with_grad if world > 1 else (lambda x: x)
        g_all, t_all = gather(g), gather(t)
        # gloo gathers bytes, not bools, reliably
        mask_all = gather_no_grad(mask.to(torch.uint8)).bool() if world > 1 else mask
        # No host sync on this path (no boolean indexing, no `if` on a device value): rows are weighted
        # by the mask, and with nothing valid the loss is an exact 0 that keeps every head in the graph.
        n_valid = mask_all.sum().clamp(min=1)
        weight = mask.to(g.dtype)
        labels = torch.arange(g.size(0), device=g.device) + rank * g.size(0)
        cols = mask_all.unsqueeze(0)
        logits_g = (scale * g @ t_all.T).masked_fill(~cols, _MASKED)
        logits_t = (scale * t @ g_all.T).masked_fill(~cols, _MASKED)
        if self.kind == "clip":
            per_row = F.cross_entropy(logits_g, labels, reduction="none") + F.cross_entropy(
                logits_t, labels, reduction="none"
            )
            total = (per_row * weight).sum()
        else:
            total = self._soft_targets(g, t, g_all, t_all, weight, cols, scale, logits_g, logits_t, gather)
        return total * world / (2 * n_valid)

    @staticmethod
    def _clip_all_valid(g: Tensor, t: Tensor, scale: Tensor) -> Tensor:
        """One rank, every sample valid: the same loss without mask fills and row selection (~1 ms less
        per teacher on a CPU step of 128)."""
        g, t = F.normalize(g, dim=-1), F.normalize(t, dim=-1)
        logits = scale * g @ t.T
        labels = torch.arange(g.size(0), device=g.device)
        return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2

    @staticmethod
    def _soft_targets(g, t, g_all, t_all, weight, cols, scale, logits_g, logits_t, gather) -> Tensor:
        # Symmetric similarity S = (GG^T + MM^T)/2; targets = row-softmax(S * T) with T = 1 / scale.
        target_logits = ((g @ g_all.T + t @ t_all.T) / 2 / scale).masked_fill(~cols, _MASKED)
        log_targets = F.log_softmax(target_logits, dim=1)
        loss_g = -(log_targets.exp() * F.log_softmax(logits_g, dim=1)).sum(1)
        # The other direction uses targets^T: column i of the row-softmax needs every row's normaliser,
        # so each rank gathers (with grad) the log-normalisers of its rows.
        log_norm_all = gather(torch.logsumexp(target_logits, dim=1))
        log_targets_t = (target_logits - log_norm_all.unsqueeze(0)).masked_fill(~cols, _MASKED)
        loss_t = -(log_targets_t.exp() * F.log_softmax(logits_t, dim=1)).sum(1)
        return ((loss_g + loss_t) * weight).sum()
